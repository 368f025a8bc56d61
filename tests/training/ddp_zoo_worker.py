"""One DDP rank of the zoo test: two training steps of each (model, head) pair, each in a fresh gloo group.

Started by ``torch.multiprocessing.start_processes`` (spawn) from
``test_zoo_training.py::test_ddp_trains_every_model_family_and_head``. Each trainer ends with its
replica check (every rank's weights must agree), which raises if a model or head breaks DDP.
"""

from __future__ import annotations

import faulthandler
import os
import sys
from pathlib import Path

WATCHDOG_SECONDS = 180  # a rank stuck in a collective dumps its stack and exits, failing the test


def run_rank(rank: int, world_size: int, ports: list[int], data_dir: str, root: str,
             runs: list[tuple[str, list[str]]]) -> None:
    """Trains each ``(name, overrides)`` of ``runs`` for its steps as DDP rank ``rank``."""
    faulthandler.dump_traceback_later(WATCHDOG_SECONDS, exit=True, file=sys.stderr)
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world_size),
                       "MASTER_ADDR": "127.0.0.1", "OMP_NUM_THREADS": "1"})
    from speakernet.config import load_config
    from speakernet.training.trainer import Trainer

    trainers = []  # kept alive: see ddp_resume_worker.py (gloo teardown can block the next rendezvous)
    for port, (name, overrides) in zip(ports, runs):
        os.environ["MASTER_PORT"] = str(port)
        trainers.append(Trainer(load_config(None, overrides), data_dir, Path(root) / name, device="cpu"))
        trainers[-1].train()
    sys.stderr.flush()
    os._exit(0)
