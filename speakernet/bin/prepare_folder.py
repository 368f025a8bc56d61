"""Prepares a Kaldi data directory from a speaker-per-folder tree ``<root>/<speaker>/**/<utt>.<ext>``.

Each folder directly under the root is a speaker; its audio files may sit at any depth. Utterance
ids are ``<speaker>-<path below the speaker folder, '/' -> '-', without extension>``; two files
giving one id (``a.wav`` and ``a.flac``) are an error. m4a (and any extension libsndfile does not
read) is decoded by an ffmpeg pipe in wav.scp::

    python -m speakernet.bin.prepare_folder --root /corpora/mine --out-dir data/mine --extensions wav,m4a
"""

from __future__ import annotations

import argparse
import sys

from speakernet.bin import run_stage
from speakernet.data.prepare.folder import DEFAULT_EXTENSIONS, parse_extensions, prepare_folder
from speakernet.utils.logging import setup_logging


def build_parser() -> argparse.ArgumentParser:
    """Returns the command-line parser."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, help="tree root; each folder directly under it is one speaker")
    parser.add_argument("--out-dir", required=True, help="data directory to write (replaced as a whole)")
    parser.add_argument("--extensions", default=",".join(ext.lstrip(".") for ext in DEFAULT_EXTENSIONS),
                        help="comma-separated audio extensions to take, case-insensitive (default %(default)s)")
    parser.add_argument("--sample-rate", type=int, default=16000,
                        help="rate (Hz) the ffmpeg pipes of m4a files decode to (default %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs the preparation; returns the process exit status."""
    args = build_parser().parse_args(argv)
    setup_logging()
    return run_stage(lambda: prepare_folder(args.root, args.out_dir, extensions=parse_extensions(args.extensions),
                                            sample_rate=args.sample_rate))


if __name__ == "__main__":
    sys.exit(main())
