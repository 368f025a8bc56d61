"""Stage: calibrate a model dir's cosine scores (log-likelihood ratios, false-accept thresholds).

    python -m speakernet.bin.calibrate --trials exp/E/calibration/trials \\
        --scp exp/E/embeddings/latest/calibration/xvector.scp --mean-vec exp/E/mean.vec \\
        --exp-dir exp/E --checkpoint latest --out exp/E/cosine_calibration.json

Scores the calibration trials by mean-subtracted cosine (as ``speakernet compare`` and ``verify``
score a pair), fits ``llr = a * score + b`` by prior-weighted logistic regression and stores it
with the sorted non-target scores (for thresholds at any false-accept rate); see
:mod:`speakernet.backend.score_calibration`.
"""

from __future__ import annotations

import argparse
import sys

from speakernet.bin import run_stage
from speakernet.utils.logging import setup_logging


def main(argv: list[str] | None = None) -> int:
    """Parses the command line and writes the calibration; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="python -m speakernet.bin.calibrate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", required=True, help="calibration trial list (from 'speakernet.bin.qmf trials')")
    parser.add_argument("--scp", required=True, help="embeddings of the calibration utterances (xvector.scp)")
    parser.add_argument("--mean-vec", required=True, help="the mean the CLI subtracts (the model dir's mean.vec)")
    parser.add_argument("--exp-dir", default=None, help="exp dir of the model that made the embeddings")
    parser.add_argument("--checkpoint", default="latest", help="its checkpoint (recorded by SHA-256)")
    parser.add_argument("--prior", type=float, default=0.5, help="effective target prior of the fit (default 0.5)")
    parser.add_argument("--out", required=True, help="calibration file (JSON), usually EXP/cosine_calibration.json")
    args = parser.parse_args(argv)
    setup_logging()

    def run() -> None:
        from speakernet.backend.score_calibration import calibrate_files
        from speakernet.training.checkpoint_files import resolve_checkpoint

        model_file = resolve_checkpoint(args.exp_dir, args.checkpoint) if args.exp_dir else None
        calibrate_files(args.trials, args.scp, args.mean_vec, args.out, args.prior, model_file)

    return run_stage(run)


if __name__ == "__main__":
    sys.exit(main())
