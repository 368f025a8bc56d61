"""One logging format for every stage and process."""

from __future__ import annotations

import logging
import os

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
