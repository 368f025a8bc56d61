"""Stage: train the PLDA back-end (subtract mean -> LDA -> length norm -> two-covariance PLDA).

    python -m speakernet.bin.train_plda --scp exp/embed/train/xvector.scp --utt2spk data/train/utt2spk \\
        --out exp/embed/train/plda.npz --lda-dim 200
"""

from __future__ import annotations

import argparse
import sys

from speakernet.backend.plda import train_plda_files
from speakernet.bin import run_stage
from speakernet.utils.logging import setup_logging


def main(argv: list[str] | None = None) -> int:
    """Parses the command line and trains the back-end; returns the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scp", required=True, help="training utterance embeddings (xvector.scp)")
    parser.add_argument("--utt2spk", required=True, help="speaker of each training utterance")
    parser.add_argument("--out", required=True, help="output model (.npz, written atomically)")
    parser.add_argument("--lda-dim", type=int, default=200,
                        help="LDA output dimension, capped at num_speakers - 1; 0 for no LDA (default 200)")
    parser.add_argument("--num-iters", type=int, default=10, help="PLDA EM iterations (default 10)")
    parser.add_argument("--mean-vec", default=None,
                        help="Kaldi vector subtracted first (mean.vec); default the training set's own mean")
    args = parser.parse_args(argv)
    if args.lda_dim < 0:
        parser.error("--lda-dim must be 0 (no LDA) or positive")
    if args.num_iters < 1:
        parser.error("--num-iters must be at least 1")
    setup_logging()
    return run_stage(lambda: train_plda_files(args.scp, args.utt2spk, args.out, lda_dim=args.lda_dim or None,
                                              num_iters=args.num_iters, mean_vec=args.mean_vec))


if __name__ == "__main__":
    sys.exit(main())
