"""Stage: copy a Kaldi data dir into a recipe's own (like Kaldi's utils/copy_data_dir.sh).

The source is validated first; feature files (feats.scp, vad.scp, ...) are not copied, since the
recipe computes its own features::

    python -m speakernet.bin.copy_data_dir /their/data/dev data/dev [--trials /their/lists/dev.trials]
"""

from __future__ import annotations

import argparse
import sys

from speakernet.bin import run_stage
from speakernet.data.copy_data_dir import copy_data_dir
from speakernet.utils.logging import setup_logging


def main(argv: list[str] | None = None) -> int:
    """Parses the command line and copies the dir; returns the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", help="source data directory (never modified)")
    parser.add_argument("dst", help="the copy (replaced atomically)")
    parser.add_argument("--trials", default=None, help="a trial list to copy in as DST/trials")
    parser.add_argument("--relative-to", default=None, metavar="DIR",
                        help="make relative wav.scp paths absolute, taken from DIR (default: copy them as they are)")
    args = parser.parse_args(argv)
    setup_logging()
    return run_stage(lambda: copy_data_dir(args.src, args.dst, args.trials, args.relative_to))


if __name__ == "__main__":
    sys.exit(main())
