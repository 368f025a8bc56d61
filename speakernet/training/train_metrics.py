"""The training's metrics file: one JSON line per logged interval in the exp dir."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from speakernet.utils.fileio import atomic_write

logger = logging.getLogger(__name__)

METRICS_NAME = "train_metrics.jsonl"
"""One JSON line per logged interval in the exp dir (see :meth:`speakernet.training.trainer.Trainer._log`)."""


def truncate_train_metrics(path: Path, step: int, keep_at_step: bool = True) -> float:
    """Drops the lines of a ``train_metrics.jsonl`` logged after ``step``, rewriting it atomically.

    Args:
        path: The metrics file (nothing happens when it does not exist).
        step: The step training resumes from (0 for a fresh start: every line goes).
        keep_at_step: Whether a line logged exactly at ``step`` stays.

    Returns:
        The ``seconds`` of the last line kept (0.0 if none), so training time adds up over resumes.
    """
    if not path.is_file():
        return 0.0
    kept: list[str] = []
    seconds = 0.0
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            record = json.loads(line)
            line_step = int(record["step"])
        except (ValueError, KeyError, TypeError):  # e.g. a line cut short when the run was killed
            logger.warning("%s:%d: dropping unreadable metrics line", path, number)
            continue
        if line_step < step or (keep_at_step and line_step == step):
            kept.append(line + "\n")
            seconds = float(record.get("seconds") or 0.0)
    with atomic_write(path) as handle:
        handle.write("".join(kept))
    return seconds
