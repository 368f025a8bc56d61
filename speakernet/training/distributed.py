"""Process-group helpers: the same training code runs alone or under ``torchrun`` (DDP)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)


@dataclass
class DistributedContext:
    """Where this process stands in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    #: Processes of the job on this machine (torchrun's ``--nproc-per-node``).
    local_world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """True on the process that writes outputs and logs progress."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        """True when more than one process takes part."""
        return self.world_size > 1


def init_distributed(device: str | None = None) -> DistributedContext:
    """Joins the process group that ``torchrun`` describes in the environment, if any.

    Uses NCCL on CUDA and gloo on CPU, so DDP can be exercised on a CPU-only machine.

    Args:
        device: ``cpu``, ``cuda`` or None (CUDA when available).

    Returns:
        The process's rank, world size and device.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world_size = int(os.environ.get("LOCAL_WORLD_SIZE", str(world_size)))
    use_cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    if use_cuda:
        torch.cuda.set_device(local_rank)
        torch_device = torch.device("cuda", local_rank)
    else:
        torch_device = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
        logger.info("joined process group: rank %d of %d (%s)", rank, world_size, dist.get_backend())
    return DistributedContext(rank=rank, world_size=world_size, local_rank=local_rank,
                              local_world_size=local_world_size, device=torch_device)


def barrier(context: DistributedContext) -> None:
    """Waits for every process (no-op when running alone)."""
    if context.is_distributed:
        dist.barrier()


def all_reduce_mean(value: torch.Tensor, context: DistributedContext) -> torch.Tensor:
    """Mean of ``value`` over processes (the value itself when running alone)."""
    if not context.is_distributed:
        return value
    value = value.clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / context.world_size


def cleanup(context: DistributedContext) -> None:
    """Leaves the process group, once every process has come this far.

    Without the barrier a process that is done first tears its gloo group down while a peer's last
    collective is still being answered, which now and then aborted a process at exit
    ("terminate called without an active exception") and left torchrun's other agents waiting.
    """
    if context.is_distributed and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
