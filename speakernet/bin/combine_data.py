"""Stage: combine Kaldi data directories into one (like Kaldi's utils/combine_data.sh).

Utterance ids must be unique across the sources::

    python -m speakernet.bin.combine_data data/train_all data/vox2_dev data/vox1_dev
"""

from __future__ import annotations

import argparse
import sys

from speakernet.bin import run_stage
from speakernet.data.datadir_ops import combine_data
from speakernet.utils.logging import setup_logging


def main(argv: list[str] | None = None) -> int:
    """Parses the command line and combines the dirs; returns the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dst", help="destination data directory (replaced atomically)")
    parser.add_argument("srcs", nargs="+", help="source data directories")
    args = parser.parse_args(argv)
    setup_logging()
    return run_stage(lambda: combine_data(args.dst, args.srcs))


if __name__ == "__main__":
    sys.exit(main())
