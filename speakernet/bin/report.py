"""Stage: write one self-contained HTML report of an experiment dir.

    python -m speakernet.bin.report --exp-dir exp/ecapa --data-dir data/test [--checkpoint latest] \\
        [--out exp/ecapa/report.html]

The page holds the results table, DET/ROC curves, score histograms, t-SNE and speaker-cosine
plots of the test embeddings, training curves, attention weights, the resolved config, training
time, hardware and throughput figures; sections whose inputs are missing are noted and skipped.
"""

from __future__ import annotations

import argparse
import sys

from speakernet.bin import run_stage
from speakernet.utils.logging import setup_logging


def main(argv: list[str] | None = None) -> int:
    """Parses the command line and writes the report; returns the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp-dir", required=True, help="experiment dir (results.json, config.yaml, ...)")
    parser.add_argument("--data-dir", default=None,
                        help="test data dir (utt2spk, feats.scp, vad.scp) for the embedding and attention plots")
    parser.add_argument("--embeddings-name", default=None,
                        help="embeddings/<checkpoint>/<NAME>/ of the test dir (default: the data dir's basename)")
    parser.add_argument("--checkpoint", default="latest",
                        help="checkpoint for the attention plot and embeddings/<checkpoint>/ (default: latest)")
    parser.add_argument("--out", default=None, help="output page (default: <exp-dir>/report.html)")
    parser.add_argument("--seed", type=int, default=0, help="seed of t-SNE and of histogram subsampling")
    args = parser.parse_args(argv)
    setup_logging()

    from speakernet.backend.report import build_report

    return run_stage(lambda: build_report(args.exp_dir, args.data_dir, args.checkpoint, args.out, seed=args.seed,
                                          embeddings_name=args.embeddings_name))


if __name__ == "__main__":
    sys.exit(main())
