"""Stage: cosine-score a trial list, writing ``<enroll> <test> <score> <label>`` lines.

    python -m speakernet.bin.score --trials data/test/trials --enroll-scp exp/embed/test/xvector.scp \\
        --test-scp exp/embed/test/xvector.scp --mean-vec exp/embed/train/mean.vec --out exp/scores/test.score
"""

from __future__ import annotations

import argparse
import sys

from speakernet.backend.scoring import score_trials_files
from speakernet.bin import run_stage
from speakernet.utils.logging import setup_logging


def main(argv: list[str] | None = None) -> int:
    """Parses the command line and scores the trials; returns the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", required=True, help="Kaldi trial list '<enroll> <test> target|nontarget'")
    parser.add_argument("--enroll-scp", required=True, help="enrolment embeddings (xvector.scp or spk_xvector.scp)")
    parser.add_argument("--test-scp", required=True, help="test embeddings (xvector.scp)")
    parser.add_argument("--mean-vec", default=None, help="Kaldi vector subtracted before cosine (mean.vec)")
    parser.add_argument("--out", required=True, help="output score file (4 columns, written atomically)")
    args = parser.parse_args(argv)
    setup_logging()
    return run_stage(
        lambda: score_trials_files(args.trials, args.enroll_scp, args.test_scp, args.out, mean_vec=args.mean_vec)
    )


if __name__ == "__main__":
    sys.exit(main())
