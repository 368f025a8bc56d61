"""Samples a Kaldi trial list ``<enroll> <test> target|nontarget`` from a data directory's utt2spk.

Targets are pairs of different utterances of one speaker, non-targets pairs of different speakers;
no self-pairs, each unordered pair once, C-sorted; the same data and seed give the same file::

    python -m speakernet.bin.make_trials --data-dir data/eval --out data/eval/trials --num-targets 20000
"""

from __future__ import annotations

import argparse
import sys

from speakernet.bin import run_stage
from speakernet.data.trials import make_trials_file
from speakernet.utils.logging import setup_logging


def _count_or_all(text: str) -> int | None:
    if text == "all":
        return None
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'all', got '{text}'") from None
    if count < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {count}")
    return count


def _count(text: str) -> int:
    count = _count_or_all(text)
    if count is None:
        raise argparse.ArgumentTypeError("expected a number")
    return count


def build_parser() -> argparse.ArgumentParser:
    """Returns the command-line parser."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True, help="data directory whose utt2spk (and spk2gender) is read")
    parser.add_argument("--out", required=True, help="trial file to write (atomically)")
    targets = parser.add_mutually_exclusive_group()
    targets.add_argument("--num-targets", type=_count_or_all, default=None, metavar="N|all",
                         help="target trials: N drawn without replacement, or all same-speaker pairs "
                         "(default all); more than exist is an error")
    targets.add_argument("--max-targets", type=_count, default=None, metavar="N",
                         help="at most N target trials: N drawn, or all of them when there are no more")
    parser.add_argument("--num-nontargets", type=_count, default=None, metavar="N",
                        help="non-target trials drawn without replacement (default: as many as the targets, "
                        "i.e. balanced, like VoxCeleb1-O; capped with a warning at the pairs that exist); "
                        "an explicit N larger than exist is an error")
    parser.add_argument("--same-gender", action="store_true",
                        help="non-targets only between speakers of one gender (needs DATA_DIR/spk2gender)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the draws (default %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Writes the trial list; returns the process exit status."""
    args = build_parser().parse_args(argv)
    setup_logging()
    return run_stage(lambda: make_trials_file(args.data_dir, args.out, num_targets=args.num_targets,
                                              num_nontargets=args.num_nontargets, same_gender=args.same_gender,
                                              seed=args.seed, max_targets=args.max_targets))


if __name__ == "__main__":
    sys.exit(main())
