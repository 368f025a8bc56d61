"""Stage: gather the ``results.json`` of several experiment dirs into one markdown table on stdout.

    python -m speakernet.bin.gather_results exp/ecapa exp/resnet
    python -m speakernet.bin.gather_results exp/vox/ecapa exp/cn/ecapa --names vox cnceleb \\
        --metrics eer min_dcf@0.01 min_dcf@0.05 --out RESULTS.md
    python -m speakernet.bin.gather_results exp/ecapa --metrics eer act_dcf@0.01 cllr

Rows are (system, model, back-end), columns the trial lists; each cell is the metrics joined by
" / " (EER in %), "–" where a system has no row for a trial list. actDCF and Cllr are shown for
calibrated (LLR) rows only. Metrics: eer, min_dcf@P, act_dcf@P, cllr.
"""

from __future__ import annotations

import argparse
import logging
import sys

from speakernet.backend.gather import DEFAULT_METRICS, gather_markdown
from speakernet.bin import run_stage
from speakernet.utils.fileio import atomic_write
from speakernet.utils.logging import setup_logging

logger = logging.getLogger(__name__)


def _gather(args: argparse.Namespace) -> None:
    table = gather_markdown(args.exp_dirs, args.metrics, args.names)
    if args.out is not None:
        with atomic_write(args.out) as handle:
            handle.write(table)
        logger.info("table written to %s", args.out)
    sys.stdout.write(table)


def main(argv: list[str] | None = None) -> int:
    """Parses the command line and prints the gathered table; returns the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("exp_dirs", nargs="+", help="experiment dirs, each holding a results.json")
    parser.add_argument("--metrics", nargs="+", default=list(DEFAULT_METRICS),
                        help="metrics of each cell: eer, min_dcf@P, act_dcf@P, cllr (default: %(default)s)")
    parser.add_argument("--names", nargs="+", default=None,
                        help="system name of each experiment dir, in order (default: the dir names, with their "
                        "parent where two clash)")
    parser.add_argument("--out", default=None, help="also write the table here (atomically)")
    args = parser.parse_args(argv)
    setup_logging()
    return run_stage(lambda: _gather(args))


if __name__ == "__main__":
    sys.exit(main())
