"""Stage: average the weights of the last N end-of-epoch checkpoints (WeSpeaker-style).

    python -m speakernet.bin.average_model --exp-dir exp/ecapa --num 5   # -> checkpoints/avg5.pt

Extract with ``--checkpoint avg5`` afterwards.
"""

from __future__ import annotations

import argparse
import sys

from speakernet.bin import run_stage
from speakernet.utils.logging import setup_logging


def main(argv: list[str] | None = None) -> int:
    """Parses the command line and writes the averaged model; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp-dir", required=True, help="training output dir")
    parser.add_argument("--num", type=int, required=True, help="how many of the newest epochs to average")
    args = parser.parse_args(argv)
    setup_logging()

    from speakernet.training.checkpoint import write_average

    return run_stage(lambda: write_average(args.exp_dir, args.num))


if __name__ == "__main__":
    sys.exit(main())
