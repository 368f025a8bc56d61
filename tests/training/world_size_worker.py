"""A training that records what it trains on and what it writes: for the world-size resume tests.

Run under ``torchrun`` (``python -m torch.distributed.run ... world_size_worker.py RECORD_DIR DATA EXP
[--resume latest] OVERRIDES...``) or called in-process (:func:`run`). Each rank appends, to
``RECORD_DIR/seen.RANK``, ``EPOCH INDEX`` for every utterance it trains on, and to
``RECORD_DIR/writes.RANK`` every checkpoint file it writes or removes.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import sys
from pathlib import Path
from typing import Any

WATCHDOG_SECONDS = 120  # a rank stuck in a collective dumps its stack and exits, failing the test


class RecordingDataset:
    """Delegates to the training's dataset and notes ``epoch index`` of each item it is asked for."""

    def __init__(self, dataset: Any, trainer: Any, path: Path):
        self.dataset, self.trainer, self.path = dataset, trainer, path

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, int]) -> Any:
        with open(self.path, "a") as handle:
            handle.write(f"{self.trainer.epoch} {item[0]}\n")
        return self.dataset[item]


def run(record_dir: str | Path, data_dir: str | Path, exp_dir: str | Path, overrides: list[str],
        resume: str | None = None) -> None:
    """Trains into ``exp_dir``, recording the utterances trained on and the checkpoint files written."""
    from speakernet.config import load_config
    from speakernet.training import checkpoint as ckpt
    from speakernet.training.trainer import Trainer

    rank = os.environ.get("RANK", "0")
    writes = Path(record_dir) / f"writes.{rank}"
    original_write, original_prune = ckpt.atomic_write, ckpt.prune_checkpoints

    def recorded_write(path: Any, *args: Any, **kwargs: Any) -> Any:
        with open(writes, "a") as handle:
            handle.write(f"{path}\n")
        return original_write(path, *args, **kwargs)

    def recorded_prune(exp: Any, *args: Any, **kwargs: Any) -> Any:
        with open(writes, "a") as handle:
            handle.write(f"prune {exp}\n")
        return original_prune(exp, *args, **kwargs)

    ckpt.atomic_write, ckpt.prune_checkpoints = recorded_write, recorded_prune
    try:
        trainer = Trainer(load_config(None, overrides), data_dir, exp_dir, resume=resume, device="cpu")
        trainer.dataset = RecordingDataset(trainer.dataset, trainer, Path(record_dir) / f"seen.{rank}")
        trainer.train()
    finally:
        ckpt.atomic_write, ckpt.prune_checkpoints = original_write, original_prune


if __name__ == "__main__":
    faulthandler.dump_traceback_later(WATCHDOG_SECONDS, exit=True, file=sys.stderr)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    record, data, exp, *rest = sys.argv[1:]
    resume_from = None
    if rest[:1] == ["--resume"]:
        resume_from, rest = rest[1], rest[2:]
    run(record, data, exp, rest, resume_from)
    sys.stderr.flush()
    # As in ddp_resume_worker: leave without destructors (gloo's teardown can block after the group is gone).
    os._exit(0)
