"""Prepares the pooled real-speech benchmark: speaker-disjoint train/test data directories and trials."""

from __future__ import annotations

import argparse
import sys

from speakernet.bin import run_stage
from speakernet.data.prepare.pooled import prepare_pooled
from speakernet.utils.logging import setup_logging


def build_parser() -> argparse.ArgumentParser:
    """Returns the command-line parser."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--librispeech-root",
                        help="LibriSpeech subset dir (<spk>/<chapter>/<spk>-<chapter>-<utt>.flac)")
    parser.add_argument("--speech-commands-root", help="Speech Commands dir (<word>/<hash>_nohash_<n>.flac)")
    parser.add_argument("--arabic-root", help="Arabic Speech Commands dataset dir (<word>/<spk>_NO_<rep>.flac)")
    parser.add_argument("--fsdd-root", help="Free Spoken Digit recordings dir (<digit>_<name>_<idx>.wav)")
    parser.add_argument("--test-fraction", type=float, default=0.3, help="fraction of each corpus' speakers in test")
    parser.add_argument("--seed", type=int, default=0, help="seed of the speaker split and trial sampling")
    parser.add_argument("--segment-seconds", type=float, default=3.0, help="LibriSpeech segment length (s)")
    parser.add_argument("--pairs-per-utt", type=int, default=5,
                        help="per test utterance: targets, same-corpus and cross-corpus nontargets (each)")
    parser.add_argument("--min-utts-per-speaker", type=int, default=2, help="leave out speakers with fewer utts")
    parser.add_argument("--adapt-fraction", type=float, default=0.0,
                        help="fraction of each corpus' held-out speakers written to adapt/ (unlabelled in-domain "
                        "data for the back-ends) instead of test/ (default %(default)s)")
    parser.add_argument("--out-dir", required=True, help="where train/, test/ (and adapt/) are written")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs the preparation; returns the process exit status."""
    args = build_parser().parse_args(argv)
    setup_logging()
    return run_stage(lambda: prepare_pooled(
        args.out_dir,
        librispeech_root=args.librispeech_root,
        speech_commands_root=args.speech_commands_root,
        arabic_root=args.arabic_root,
        fsdd_root=args.fsdd_root,
        test_fraction=args.test_fraction,
        seed=args.seed,
        segment_seconds=args.segment_seconds,
        pairs_per_utt=args.pairs_per_utt,
        min_utts_per_speaker=args.min_utts_per_speaker,
        adapt_fraction=args.adapt_fraction,
    ))


if __name__ == "__main__":
    sys.exit(main())
