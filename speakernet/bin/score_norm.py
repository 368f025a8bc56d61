"""Stage: AS-norm (or S-norm) of cosine scores against a cohort, with QMF's side columns.

    python -m speakernet.bin.score_norm --trials data/test/trials \\
        --enroll-scp exp/E/embeddings/latest/test/xvector.scp --test-scp exp/E/embeddings/latest/test/xvector.scp \\
        --cohort-scp exp/E/embeddings/latest/train/xvector.scp --cohort-utt2spk data/train/utt2spk \\
        --mean-vec exp/E/embeddings/latest/train/mean.vec --enroll-data data/test --test-data data/test \\
        --top-n 300 --out exp/E/scores/latest/asnorm/trials.score

The cohort is the per-speaker means of ``--cohort-scp`` when ``--cohort-utt2spk`` is given (a
labelled dir such as the training set), else its utterances (an unlabelled in-domain dir; an
utterance is never in its own cohort). ``--top-n 0`` uses the whole cohort (S-norm). The output
has 4 columns plus ``raw_score enroll_dur test_dur enroll_norm test_norm enroll_cohort_mean
test_cohort_mean`` (see docs/DESIGN.md).
"""

from __future__ import annotations

import argparse
import sys

from speakernet.backend.normalization import DEFAULT_TOP_N, as_norm_files
from speakernet.bin import run_stage
from speakernet.utils.logging import setup_logging


def main(argv: list[str] | None = None) -> int:
    """Parses the command line and normalises the scores; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="python -m speakernet.bin.score_norm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", required=True, help="Kaldi trial list '<enroll> <test> target|nontarget'")
    parser.add_argument("--enroll-scp", required=True, help="enrolment embeddings (xvector.scp or spk_xvector.scp)")
    parser.add_argument("--test-scp", required=True, help="test embeddings (xvector.scp)")
    parser.add_argument("--cohort-scp", required=True, help="utterance embeddings of the cohort data dir")
    parser.add_argument("--cohort-utt2spk", default=None,
                        help="utt2spk of the cohort dir: per-speaker mean cohort (default: utterance cohort)")
    parser.add_argument("--mean-vec", default=None, help="Kaldi vector subtracted from every embedding (mean.vec)")
    parser.add_argument("--top-n", type=int, default=DEFAULT_TOP_N,
                        help="top cohort scores per side (default %(default)s; 0: the whole cohort, S-norm)")
    parser.add_argument("--enroll-data", default=None, help="enrolment data dir, for durations (utt2num_frames)")
    parser.add_argument("--test-data", default=None, help="test data dir, for durations")
    parser.add_argument("--exact", action="store_true",
                        help="top-N cohort scores in float64 (default float32: 2x faster, ~1e-6 off)")
    parser.add_argument("--out", required=True, help="output score file (written atomically)")
    args = parser.parse_args(argv)
    if args.top_n < 0:
        parser.error(f"--top-n must be 0 (whole cohort) or positive, got {args.top_n}")
    setup_logging()
    return run_stage(lambda: as_norm_files(
        args.trials, args.enroll_scp, args.test_scp, args.cohort_scp, args.out, mean_vec=args.mean_vec,
        cohort_utt2spk=args.cohort_utt2spk, top_n=args.top_n, enroll_data=args.enroll_data,
        test_data=args.test_data, exact=args.exact,
    ))


if __name__ == "__main__":
    sys.exit(main())
