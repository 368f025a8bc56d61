"""One logging format for every stage and process."""

from __future__ import annotations

import logging
import os
import sys
import time

from tqdm import tqdm

LOG_FORMAT = "%(asctime)s %(levelname)s [%(filename)s:%(lineno)d] ({rank}/{world}) %(message)s"


def setup_logging(level: int | str = logging.INFO) -> None:
    """Configures the root logger with the toolkit's format, tagged with the DDP rank.

    Args:
        level: Logging level for the root logger.
    """
    rank = os.environ.get("RANK", "0")
    world = os.environ.get("WORLD_SIZE", "1")
    logging.basicConfig(
        level=level,
        format=LOG_FORMAT.format(rank=rank, world=world),
        datefmt="%Y-%m-%d %H:%M:%S",
        force=True,
    )


class Progress:
    """Progress of a long loop: a tqdm bar on a terminal, else a log line with rate and ETA.

    Recipes usually run with stderr going to a log file, where a bar would be noise; there a
    line every ``interval_s`` seconds says how far the stage is and when it should end.

    Args:
        total: Items to process.
        what: What is being processed, e.g. ``extracting data/test``.
        unit: Name of an item, e.g. ``utts``.
        interval_s: Seconds between log lines (off a terminal).
        log: Logger of the calling module.
    """

    def __init__(self, total: int, what: str, unit: str = "items", interval_s: float = 30.0,
                 log: logging.Logger | None = None) -> None:
        self.total, self.what, self.unit, self.interval_s = total, what, unit, interval_s
        self.log = log or logging.getLogger(__name__)
        self.done = 0
        self.start = self.last = time.perf_counter()
        self.bar = tqdm(total=total, desc=what, unit=f" {unit}", leave=False) if sys.stderr.isatty() else None

    def update(self, count: int) -> None:
        """Marks ``count`` more items done."""
        self.done += count
        if self.bar is not None:
            self.bar.update(count)
            return
        now = time.perf_counter()
        if now - self.last < self.interval_s or self.done >= self.total:
            return
        self.last = now
        rate = self.done / max(now - self.start, 1e-9)
        eta = (self.total - self.done) / max(rate, 1e-9)
        # stacklevel 2: the line is attributed to the stage that reports progress, not to this file
        self.log.info("%s: %d of %d %s (%.0f%%), %.1f %s/s, ETA %s", self.what, self.done, self.total, self.unit,
                      100.0 * self.done / max(self.total, 1), rate, self.unit, format_duration(eta), stacklevel=2)

    def close(self) -> None:
        """Removes the bar (the caller logs its own summary line)."""
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def format_duration(seconds: float) -> str:
    """``1 h 02 min``, ``3 min 05 s`` or ``42 s``."""
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    if seconds >= 60:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds} s"
