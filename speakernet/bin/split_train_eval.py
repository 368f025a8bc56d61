"""Splits a data directory by speaker into train and eval directories (a seeded choice of eval speakers).

Both outputs are complete data directories (wav.scp, segments, features, utt2dur, spk2gender carry
over); every utterance is in exactly one. The train dir gets no trials; the eval dir keeps the
source trials that name no train utterance or speaker::

    python -m speakernet.bin.split_train_eval --data-dir data/all --train-out data/train \\
        --eval-out data/eval --eval-fraction 0.2 --seed 0
"""

from __future__ import annotations

import argparse
import sys

from speakernet.bin import run_stage
from speakernet.data.split import split_train_eval
from speakernet.utils.logging import setup_logging


def build_parser() -> argparse.ArgumentParser:
    """Returns the command-line parser."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True, help="source data directory (left unchanged)")
    parser.add_argument("--train-out", required=True, help="train data directory to write (replaced as a whole)")
    parser.add_argument("--eval-out", required=True, help="eval data directory to write (replaced as a whole)")
    size = parser.add_mutually_exclusive_group(required=True)
    size.add_argument("--eval-speakers", type=int, help="number of eval speakers (1 to speakers - 1)")
    size.add_argument("--eval-fraction", type=float,
                      help="fraction of the speakers for eval, in (0, 1), rounded; at least one on each side")
    parser.add_argument("--seed", type=int, default=0, help="seed of the choice of eval speakers (default %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Writes the two directories; returns the process exit status."""
    args = build_parser().parse_args(argv)
    setup_logging()
    return run_stage(lambda: split_train_eval(args.data_dir, args.train_out, args.eval_out,
                                              eval_speakers=args.eval_speakers, eval_fraction=args.eval_fraction,
                                              seed=args.seed))


if __name__ == "__main__":
    sys.exit(main())
