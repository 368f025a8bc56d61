"""Stage: PLDA-score a trial list, writing ``<enroll> <test> <llr> <label>`` lines.

    python -m speakernet.bin.score_plda --trials data/test/trials --enroll-scp exp/embed/test/xvector.scp \\
        --test-scp exp/embed/test/xvector.scp --model exp/embed/train/plda.npz --out exp/scores/test_plda.score

With speaker-averaged enrolment embeddings (``spk_xvector.scp``), ``--enroll-spk2utt`` gives the number
of utterances behind each average, as Kaldi's ``ivector-plda-scoring --num-utts`` does.
"""

from __future__ import annotations

import argparse
import sys

from speakernet.backend.plda import score_plda_files
from speakernet.bin import run_stage
from speakernet.data.kaldi_dir import read_spk2utt
from speakernet.utils.logging import setup_logging


def main(argv: list[str] | None = None) -> int:
    """Parses the command line and scores the trials; returns the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", required=True, help="Kaldi trial list '<enroll> <test> target|nontarget'")
    parser.add_argument("--enroll-scp", required=True, help="enrolment embeddings (xvector.scp or spk_xvector.scp)")
    parser.add_argument("--test-scp", required=True, help="test embeddings (xvector.scp)")
    parser.add_argument("--model", required=True, help="PLDA model written by train_plda (.npz)")
    parser.add_argument("--out", required=True, help="output score file (4 columns, written atomically)")
    parser.add_argument("--enroll-spk2utt", default=None,
                        help="spk2utt of the enrolment ids: utterances averaged per id (default 1 each)")
    args = parser.parse_args(argv)
    setup_logging()

    def score() -> None:
        counts = None
        if args.enroll_spk2utt is not None:  # Kaldi's --num-utts: the utterances behind each enrolment mean
            counts = {speaker: len(utts) for speaker, utts in read_spk2utt(args.enroll_spk2utt).items()}
        score_plda_files(args.trials, args.enroll_scp, args.test_scp, args.model, args.out, enroll_num_utts=counts,
                         num_utts_source=str(args.enroll_spk2utt))

    return run_stage(score)


if __name__ == "__main__":
    sys.exit(main())
