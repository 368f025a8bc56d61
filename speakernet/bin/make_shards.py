"""Writes a data dir's audio into tar shards for training at scale (data.source: shards): S/shard-N.tar, D/shards.list.

Example:
    python -m speakernet.bin.make_shards --data-dir data/train --shard-dir exp/shards/train --nj 4
    python -m speakernet.bin.make_shards ... --nj 40 --cmd "slurm.pl --partition cpu --time 1:00:00 --mem 4G"

A re-run rewrites only the shards whose inputs changed (or that a killed run left unfinished).
``--job J --shard-dir S`` runs one job of a stage prepared by the parent process (internal).
"""

from __future__ import annotations

import argparse
import sys

from speakernet.bin import add_job_options, run_stage
from speakernet.utils.logging import setup_logging


def build_parser() -> argparse.ArgumentParser:
    """The command-line options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", help="Kaldi data dir with wav.scp and utt2spk (optional segments)")
    parser.add_argument("--shard-dir", required=True, help="where shard-N.tar/json and log/ go")
    parser.add_argument("--utts-per-shard", type=int, default=1000,
                        help="utterances per shard at most (default: %(default)s)")
    add_job_options(parser)
    parser.add_argument("--sample-rate", type=int, default=16000,
                        help="rate of the stored audio, the training front-end's (others are resampled)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seeds the order the utterances are dealt to the shards in (so each mixes the speakers)")
    parser.add_argument("--audio-format", choices=["flac", "wav"], default="flac",
                        help="how 16-bit audio is stored (other audio is 32-bit float WAV); default: %(default)s")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs the shard stage (or one of its jobs with ``--job``) on ``argv``; returns 0, or 1 when it failed."""
    args = (parser := build_parser()).parse_args(argv)
    setup_logging()
    from speakernet.data.shards.stage import ShardingError, make_shards, run_shard_job

    if args.job is not None:
        return run_stage(lambda: run_shard_job(args.shard_dir, args.job), {ShardingError: 1})
    if args.data_dir is None:
        parser.error("--data-dir is required")
    return run_stage(lambda: make_shards(args.data_dir, args.shard_dir, args.utts_per_shard, args.nj, args.sample_rate,
                                         args.audio_format, args.cmd, args.seed), {ShardingError: 1})


if __name__ == "__main__":
    sys.exit(main())
