"""Stage: QMF calibration of AS-norm scores (calibration trials, fit, apply).

    # 1. calibration trials from the training speakers (never an evaluation speaker), and the
    #    data dir of the utterances they use (to embed in full)
    python -m speakernet.bin.qmf trials --train-data data/train --exclude-data data/test --out-dir exp/E/calibration
    # 2. (embed exp/E/calibration/data, AS-norm-score exp/E/calibration/trials with score_norm), then fit
    python -m speakernet.bin.qmf train --scores exp/E/calibration/asnorm.latest.score \\
        --out exp/E/calibration/qmf.latest.json
    # 3. calibrated log-likelihood ratios of evaluation scores (normalised with the same mean and cohort;
    #    score_norm records both in <scores>.json, and apply checks them against the model)
    python -m speakernet.bin.qmf apply --model exp/E/calibration/qmf.latest.json \\
        --scores exp/E/scores/latest/asnorm/trials.score --out exp/E/scores/latest/asnorm+qmf/trials.score
"""

from __future__ import annotations

import argparse
import sys

from speakernet.backend.calibration import apply_qmf_files, make_calibration_set, train_qmf_files
from speakernet.bin import run_stage
from speakernet.utils.logging import setup_logging


def _boundary(text: str) -> float | str:
    if text == "auto":
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds or 'auto', got '{text}'") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"the boundary must be positive, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    """Parses the command line and runs one QMF step; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="python -m speakernet.bin.qmf", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    steps = parser.add_subparsers(dest="step", required=True)
    trials = steps.add_parser("trials", help="calibration trials and their data dir")
    trials.add_argument("--train-data", required=True, help="labelled data dir (utt2spk, utt2num_frames)")
    trials.add_argument("--exclude-data", nargs="*", default=[],
                        help="evaluation data dirs whose speakers are left out")
    trials.add_argument("--out-dir", required=True, help="writes OUT/trials and OUT/data")
    trials.add_argument("--num-per-condition", type=int, default=5000,
                        help="target (and as many non-target) trials per duration condition (default %(default)s)")
    trials.add_argument("--seed", type=int, default=1024)
    trials.add_argument("--boundary", type=_boundary, default="auto",
                        help="short/long boundary in seconds, or auto (6 s, or the median) (default %(default)s)")
    trials.add_argument("--min-duration", type=float, default=0.0, help="shorter utterances are not used (s)")
    trials.add_argument("--max-utts-per-class", type=int, default=4,
                        help="utterances per speaker and duration class (default %(default)s)")
    train = steps.add_parser("train", help="fit a QMF on AS-norm scores of calibration trials")
    train.add_argument("--scores", required=True, help="AS-norm score file of the calibration trials")
    train.add_argument("--prior", type=float, default=0.5, help="effective target prior of the fit")
    train.add_argument("--out", required=True, help="model file (JSON)")
    apply = steps.add_parser("apply", help="calibrate AS-norm evaluation scores")
    apply.add_argument("--model", required=True, help="model file from 'train'")
    apply.add_argument("--scores", required=True, help="AS-norm score file with side columns")
    apply.add_argument("--out", required=True, help="calibrated score file (log-likelihood ratios)")
    args = parser.parse_args(argv)
    setup_logging()
    if args.step == "trials":
        if args.num_per_condition < 1 or args.max_utts_per_class < 1:
            parser.error("--num-per-condition and --max-utts-per-class must be positive")
        return run_stage(lambda: make_calibration_set(
            args.train_data, args.out_dir, args.exclude_data, args.num_per_condition, args.seed, args.boundary,
            args.min_duration, args.max_utts_per_class,
        ))
    if args.step == "train":
        return run_stage(lambda: train_qmf_files(args.scores, args.out, args.prior))
    return run_stage(lambda: apply_qmf_files(args.model, args.scores, args.out))


if __name__ == "__main__":
    sys.exit(main())
