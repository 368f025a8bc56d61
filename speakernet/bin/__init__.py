"""Stage entry points: ``python -m speakernet.bin.<stage>``, thin wrappers over the package."""

from __future__ import annotations

import logging
from typing import Callable

from speakernet.utils.fileio import OutputError

logger = logging.getLogger(__name__)


def run_stage(action: Callable[[], object]) -> int:
    """Runs a stage's work and turns bad input into an exit status instead of a traceback.

    Args:
        action: Does the stage's work (its result is ignored).

    Returns:
        0 on success; 1 after logging the error when an input is missing or malformed
        (``FileNotFoundError``, or ``ValueError``, which covers ``DataDirError`` and ``ConfigError``)
        or an output cannot be written (``OutputError``: a read-only dir, a full disk).
    """
    try:
        action()
    except (FileNotFoundError, ValueError, OutputError) as error:
        logger.error("%s", error)
        return 1
    return 0
