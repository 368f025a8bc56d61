"""Stage: EER and minDCF (actDCF and Cllr for LLRs) of score files: a table on stdout and in ``--out``.

    python -m speakernet.bin.compute_metrics --scores exp/scores/vox1_O.score exp/scores/vox1_E.score \\
        --name vox1_O --name vox1_E --out exp/scores/results
    python -m speakernet.bin.compute_metrics --scores kaldi_scores --trials data/test/trials --out results
"""

from __future__ import annotations

import argparse
import logging
import sys

from speakernet.backend.metrics import DEFAULT_P_TARGETS
from speakernet.backend.scoring import compute_metrics_files
from speakernet.bin import run_stage
from speakernet.utils.fileio import atomic_write
from speakernet.utils.logging import setup_logging

logger = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    """Parses the command line and computes the metrics; returns the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scores", required=True, nargs="+", action="extend",
                        help="score files: 4 columns, or 3 columns with --trials (option may repeat)")
    parser.add_argument("--name", nargs="+", action="extend", default=None,
                        help="row name for each score file, in order (default: the file names; option may repeat)")
    parser.add_argument("--trials", default=None, help="trial list joined with every score file")
    parser.add_argument("--p-target", type=float, nargs="+", default=list(DEFAULT_P_TARGETS),
                        help="target priors of the minDCF columns (default: %(default)s)")
    parser.add_argument("--llr", nargs="+", action="extend", default=[], metavar="NAME",
                        help="rows whose scores are calibrated log-likelihood ratios (QMF, PLDA): the table also "
                        "shows their actDCF and Cllr (option may repeat)")
    parser.add_argument("--out", required=True,
                        help="results table (written atomically), and its rows as JSON in OUT.json")
    parser.add_argument("--threshold-out", default=None,
                        help="also write the EER threshold of one row here (the default decision threshold of "
                        "`speakernet compare`)")
    parser.add_argument("--threshold-of", default=None, metavar="NAME",
                        help="the row whose EER threshold --threshold-out writes (default: the last)")
    args = parser.parse_args(argv)
    bad = [p for p in args.p_target if not 0.0 < p < 1.0]
    if bad:
        parser.error(f"--p-target must be in (0, 1), got {bad[0]:g}")
    if len(set(args.p_target)) != len(args.p_target):
        parser.error(f"--p-target lists a prior twice: {' '.join(f'{p:g}' for p in args.p_target)}")
    if args.name and len(set(args.name)) != len(args.name):
        parser.error(f"--name gives a row name twice: {sorted(n for n in set(args.name) if args.name.count(n) > 1)[0]}")
    setup_logging()
    results: list[str] = []

    def compute() -> None:
        table, rows = compute_metrics_files(args.scores, args.out, args.name, args.trials, args.p_target, args.llr)
        if args.threshold_out is not None:
            chosen = [row for row in rows if row[0] == args.threshold_of] if args.threshold_of else rows[-1:]
            if not chosen:
                raise ValueError(f"--threshold-of {args.threshold_of} names no row "
                                 f"(rows: {', '.join(name for name, _ in rows)})")
            name, metrics = chosen[0]
            with atomic_write(args.threshold_out) as handle:
                handle.write(f"{metrics['eer_threshold']:.6f} EER threshold of {name}\n")
        results.append(table)

    status = run_stage(compute)
    if status == 0:
        logger.info("results written to %s", args.out)
        sys.stdout.write(results[0])
    return status


if __name__ == "__main__":
    sys.exit(main())
