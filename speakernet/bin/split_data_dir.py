"""Stage: split a Kaldi data directory into NJ parts DATA_DIR/splitNJ/{1..NJ} (like Kaldi's split_data.sh).

Parts are balanced by utterance count; --by-speaker keeps each speaker in one part. An
up-to-date split is not rewritten::

    python -m speakernet.bin.split_data_dir data/train 4
"""

from __future__ import annotations

import argparse
import sys

from speakernet.bin import run_stage
from speakernet.data.datadir_ops import split_data_dir
from speakernet.utils.logging import setup_logging


def main(argv: list[str] | None = None) -> int:
    """Parses the command line and splits the dir; returns the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir", help="data directory")
    parser.add_argument("nj", type=int, help="number of parts")
    parser.add_argument("--by-speaker", action="store_true", help="keep each speaker's utterances in one part")
    args = parser.parse_args(argv)
    setup_logging()
    return run_stage(lambda: split_data_dir(args.data_dir, args.nj, by_speaker=args.by_speaker))


if __name__ == "__main__":
    sys.exit(main())
