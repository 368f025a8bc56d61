"""Stage: write a subset of a Kaldi data directory (like Kaldi's utils/subset_data_dir.sh).

--utt-list / --spk-list narrow the candidates (first field of each line); --num-utts or
--per-spk then choose among them, randomly (--seed) or the first ones in C order (--first)::

    python -m speakernet.bin.subset_data_dir data/train data/train_2k --num-utts 2000 --seed 1
    python -m speakernet.bin.subset_data_dir data/train data/train_spk --spk-list spk.list --per-spk 5 --first
"""

from __future__ import annotations

import argparse
import sys

from speakernet.bin import run_stage
from speakernet.data.datadir_ops import subset_data_dir
from speakernet.data.kaldi_dir import read_id_list
from speakernet.utils.logging import setup_logging


def main(argv: list[str] | None = None) -> int:
    """Parses the command line and writes the subset; returns the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", help="source data directory")
    parser.add_argument("dst", help="destination data directory (replaced atomically)")
    parser.add_argument("--utt-list", help="file whose first column lists the utterances to keep")
    parser.add_argument("--spk-list", help="file whose first column lists the speakers to keep")
    choose = parser.add_mutually_exclusive_group()
    choose.add_argument("--num-utts", type=int, help="number of utterances to keep")
    choose.add_argument("--per-spk", type=int, help="number of utterances to keep per speaker")
    parser.add_argument("--first", action="store_true", help="take the first utterances, not a random choice")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random choice")
    args = parser.parse_args(argv)
    setup_logging()
    return run_stage(lambda: subset_data_dir(
        args.src,
        args.dst,
        utt_list=read_id_list(args.utt_list) if args.utt_list else None,
        spk_list=read_id_list(args.spk_list) if args.spk_list else None,
        num_utts=args.num_utts,
        per_spk=args.per_spk,
        first=args.first,
        seed=args.seed,
    ))


if __name__ == "__main__":
    sys.exit(main())
