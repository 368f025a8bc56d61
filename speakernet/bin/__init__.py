"""Stage entry points: ``python -m speakernet.bin.<stage>``, thin wrappers over the package."""

from __future__ import annotations

import argparse
import logging
from typing import Callable, Mapping

from speakernet.utils.fileio import OutputError

logger = logging.getLogger(__name__)

#: Errors every stage reports as one logged line and exit status 1: a missing or malformed
#: input (``ValueError`` covers ``DataDirError`` and ``ConfigError``) or an unwritable output.
STAGE_ERRORS: tuple[type[BaseException], ...] = (FileNotFoundError, ValueError, OutputError)

#: Exit status after an interrupt (Ctrl-C): 128 + SIGINT, what a shell reports.
INTERRUPTED_STATUS = 130


def parse_bool(text: str) -> bool:
    """An argparse ``type`` for ``true|false`` options (also ``1|0``, ``yes|no``)."""
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got '{text}'")


def add_job_options(parser: argparse.ArgumentParser) -> None:
    """The options of a stage running parallel jobs through a launcher: ``--nj``, ``--cmd``, the internal ``--job``."""
    parser.add_argument("--nj", type=int, default=1, help="number of parallel jobs")
    parser.add_argument("--cmd", default="run.pl",
                        help="what runs the jobs, as in Kaldi's cmd.sh: 'run.pl [--max-jobs-run M]' (local processes) "
                        "or 'slurm.pl [--partition P] [--time T] [--mem M] [--gpu G] [--num-threads N] "
                        "[--max-jobs-run M] [--extra-args ARGS]' (one Slurm job array); default: %(default)s")
    parser.add_argument("--job", type=int, help=argparse.SUPPRESS)


def run_stage(
    action: Callable[[], object],
    errors: Mapping[type[BaseException], int] | None = None,
    interrupted: str | None = None,
) -> int:
    """Runs a stage's work and turns bad input into an exit status instead of a traceback.

    Args:
        action: Does the stage's work (its result is ignored).
        errors: Further exception types to report the same way, each with its exit status
            (e.g. ``{FeatureExtractionError: 1}``). Checked before :data:`STAGE_ERRORS`, so a
            subclass of one of those can have a status of its own (``{ConfigError: 2}``).
        interrupted: If given, a ``KeyboardInterrupt`` logs this warning and returns
            :data:`INTERRUPTED_STATUS` (130); if None, it propagates.

    Returns:
        0 on success; after logging the error, 1 when an input is missing or malformed
        (``FileNotFoundError``, or ``ValueError``, which covers ``DataDirError`` and ``ConfigError``)
        or an output cannot be written (``OutputError``: a read-only dir, a full disk), or the
        status ``errors`` gives the exception's type.
    """
    extra = dict(errors or {})
    try:
        action()
    except KeyboardInterrupt:
        if interrupted is None:
            raise
        logger.warning("%s", interrupted)
        return INTERRUPTED_STATUS
    except tuple(extra) + STAGE_ERRORS as error:
        logger.error("%s", error)
        return next((status for kind, status in extra.items() if isinstance(error, kind)), 1)
    return 0
