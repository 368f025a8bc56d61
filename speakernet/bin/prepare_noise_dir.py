"""Prepares a source dir from any folder of noise files (wav/flac at any depth).

A file's category is its first sub-folder, or ``--name`` (default: the folder's name) for files
directly in the folder (see :mod:`speakernet.data.prepare.noise_dir`)::

    python -m speakernet.bin.prepare_noise_dir --root /audio/background --out-dir data/noise_background
"""

from __future__ import annotations

import argparse
import sys

from speakernet.bin import run_stage
from speakernet.data.prepare.folder import parse_extensions
from speakernet.data.prepare.noise_dir import prepare_noise_dir
from speakernet.utils.logging import setup_logging


def build_parser() -> argparse.ArgumentParser:
    """Returns the command-line parser."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, help="folder of noise files")
    parser.add_argument("--out-dir", required=True, help="data directory to write (replaced as a whole)")
    parser.add_argument("--name", default=None, help="category of the files directly under --root "
                                                     "(default: the folder's name)")
    parser.add_argument("--extensions", default="wav,flac",
                        help="comma-separated audio extensions (default %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs the preparation; returns the process exit status."""
    args = build_parser().parse_args(argv)
    setup_logging()
    return run_stage(lambda: prepare_noise_dir(args.root, args.out_dir, name=args.name,
                                               extensions=parse_extensions(args.extensions)))


if __name__ == "__main__":
    sys.exit(main())
