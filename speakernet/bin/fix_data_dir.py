"""Stage: make a Kaldi data directory consistent, in place (like Kaldi's utils/fix_data_dir.sh).

Keeps only utterances present in every per-utterance file, drops empty speakers, regenerates
spk2utt and sorts every file; replaced files are backed up into DATA_DIR/.backup/::

    python -m speakernet.bin.fix_data_dir data/train
"""

from __future__ import annotations

import argparse
import sys

from speakernet.bin import run_stage
from speakernet.data.datadir_ops import fix_data_dir
from speakernet.utils.logging import setup_logging


def main(argv: list[str] | None = None) -> int:
    """Parses the command line and fixes the dir; returns the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir", help="data directory, fixed in place")
    args = parser.parse_args(argv)
    setup_logging()
    return run_stage(lambda: fix_data_dir(args.data_dir))


if __name__ == "__main__":
    sys.exit(main())
