"""Prepares MUSAN's three source dirs, ``musan_music``, ``musan_speech`` and ``musan_noise``.

Reads ``<root>/{music,speech,noise}/<subset>/*.wav`` (see :mod:`speakernet.data.prepare.musan`)::

    python -m speakernet.bin.prepare_musan --root /corpora/musan --out-dir data [--exclude-vocals true]
"""

from __future__ import annotations

import argparse
import sys

from speakernet.bin import parse_bool, run_stage
from speakernet.data.prepare.musan import prepare_musan
from speakernet.utils.logging import setup_logging


def build_parser() -> argparse.ArgumentParser:
    """Returns the command-line parser."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, help="MUSAN root, holding music/, speech/ and noise/")
    parser.add_argument("--out-dir", required=True, help="parent of the three data dirs (each replaced as a whole)")
    parser.add_argument("--exclude-vocals", type=parse_bool, default=False,
                        help="leave out music annotated with vocals in music/*/ANNOTATIONS (default %(default)s: "
                             "kept, as Kaldi's VoxCeleb recipe does with use_vocals=true)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs the preparation; returns the process exit status."""
    args = build_parser().parse_args(argv)
    setup_logging()
    return run_stage(lambda: prepare_musan(args.root, args.out_dir, exclude_vocals=args.exclude_vocals))


if __name__ == "__main__":
    sys.exit(main())
