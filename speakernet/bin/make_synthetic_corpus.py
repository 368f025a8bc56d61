"""Generates the built-in synthetic speaker corpus (audio, train/test data dirs, test trials).

Example::

    python -m speakernet.bin.make_synthetic_corpus --out-dir corpus --nj 2
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from speakernet.bin import run_stage
from speakernet.data.synth_corpus import generate_corpus
from speakernet.utils.logging import setup_logging

logger = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    """Parses arguments and generates the corpus.

    Args:
        argv: Command-line arguments (``sys.argv[1:]`` when None).

    Returns:
        Process exit status.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", required=True, help="corpus directory (wav/, data/train, data/test)")
    parser.add_argument("--num-train-speakers", type=int, default=200)
    parser.add_argument("--num-test-speakers", type=int, default=40)
    parser.add_argument("--utts-per-speaker", type=int, default=20, help="utterances per training speaker")
    parser.add_argument("--test-utts-per-speaker", type=int, default=10, help="utterances per test speaker")
    parser.add_argument("--sessions-per-speaker", type=int, default=4, help="recording channels per speaker")
    parser.add_argument("--min-duration", type=float, default=2.0, help="shortest utterance (s)")
    parser.add_argument("--max-duration", type=float, default=4.0, help="longest utterance (s)")
    parser.add_argument("--sample-rate", type=int, default=16000)
    parser.add_argument("--trials-per-utt", type=int, default=5, help="target and non-target partners per test utt")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--nj", type=int, default=1, help="parallel processes (the output does not depend on it)")
    args = parser.parse_args(argv)
    setup_logging()

    def run() -> None:
        summary = generate_corpus(
            args.out_dir,
            num_train_speakers=args.num_train_speakers,
            num_test_speakers=args.num_test_speakers,
            utts_per_speaker=args.utts_per_speaker,
            test_utts_per_speaker=args.test_utts_per_speaker,
            sessions_per_speaker=args.sessions_per_speaker,
            duration_range_s=(args.min_duration, args.max_duration),
            sample_rate=args.sample_rate,
            trials_per_utt=args.trials_per_utt,
            seed=args.seed,
            nj=args.nj,
        )
        logger.info("corpus summary: %s", json.dumps({k: v for k, v in summary.items() if k != "args"},
                                                     sort_keys=True))

    return run_stage(run)

if __name__ == "__main__":
    sys.exit(main())
