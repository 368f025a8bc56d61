"""One DDP rank of the resume test: an uninterrupted run, then a run stopped early and resumed.

Started by ``torch.multiprocessing.start_processes`` (spawn) from
``test_trainer.py::test_ddp_resume_is_exact``; each phase joins a fresh gloo process group
on its own port (the trainer leaves the group at the end of each run).
"""

from __future__ import annotations

import faulthandler
import os
import sys
from pathlib import Path

WATCHDOG_SECONDS = 120  # a rank stuck in a collective dumps its stack and exits, failing the test


def run_rank(rank: int, world_size: int, ports: list[int], data_dir: str, root: str, overrides: list[str],
             total_steps: int, stop_at: int) -> None:
    """Runs the three trainings of the resume test as DDP rank ``rank`` of ``world_size``."""
    faulthandler.dump_traceback_later(WATCHDOG_SECONDS, exit=True, file=sys.stderr)
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world_size),
                       "MASTER_ADDR": "127.0.0.1", "OMP_NUM_THREADS": "1"})
    from speakernet.config import load_config
    from speakernet.training.trainer import Trainer

    phases = [("straight", total_steps, None), ("resumed", stop_at, None), ("resumed", total_steps, "latest")]
    # Freeing a DDP trainer after its process group was destroyed can block in gloo's teardown
    # while the other rank already waits in the next phase's rendezvous (seen with torch 2.13),
    # so every trainer stays alive and the process leaves without running destructors.
    trainers = []
    for port, (name, max_steps, resume) in zip(ports, phases):
        os.environ["MASTER_PORT"] = str(port)
        config = load_config(None, overrides + [f"training.max_steps={max_steps}"])
        trainers.append(Trainer(config, data_dir, Path(root) / name, resume=resume, device="cpu"))
        trainers[-1].train()
    sys.stderr.flush()
    os._exit(0)
