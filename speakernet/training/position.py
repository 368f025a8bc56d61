"""Where a training stands in its epoch, and how a position written by another number of processes goes on.

:class:`EpochPosition` is the part of :class:`~speakernet.training.trainer.Trainer` that maps a checkpoint's
position (epoch, batch of the epoch, global batch the epoch was entered at) between world sizes and keeps the
schedules, which follow epoch progress, in step with it.
"""

from __future__ import annotations

import logging
from typing import Any

from speakernet.data.sampler import BatchPlan
from speakernet.data.shards.dataset import ShardPlan
from speakernet.training.distributed import DistributedContext

logger = logging.getLogger(__name__)


class EpochPosition:
    """The epoch-position methods of the trainer (which sets every attribute below)."""

    plan: BatchPlan | ShardPlan
    context: DistributedContext
    scheduler: Any
    epoch: int
    batch_in_epoch: int
    epoch_offset: int
    step: int

    def _map_position(self, old_world_size: int) -> None:
        """Continues a position written by ``old_world_size`` processes on this run's number of processes.

        The epoch goes on at the same global batch (each of the epoch's utterances is still
        trained on once), the optimiser step count goes on as it was, and the lr, margin and
        freezing schedules, which are functions of epoch progress, are set to this world size's
        step at that point of the epoch.
        """
        if isinstance(self.plan, ShardPlan):
            self._map_shard_position(old_world_size)
            return
        done = self.epoch_offset + self.batch_in_epoch * old_world_size  # global batches of the epoch done
        old_steps = max(0, self.plan.epoch_batches - self.epoch_offset) // old_world_size
        if self.batch_in_epoch >= old_steps:  # the epoch was complete: the next one starts afresh
            self.epoch, self.epoch_offset, self.batch_in_epoch = self.epoch + 1, 0, 0
            where = f"the end of epoch {self.epoch}: epoch {self.epoch + 1} starts at global batch 0"
        else:
            self.epoch_offset, self.batch_in_epoch = done, 0
            where = (f"global batch {done} of {self.plan.epoch_batches} of epoch {self.epoch + 1}, which goes on for "
                     f"{self._steps_this_epoch()} step(s) of {self.context.world_size} batch(es)")
            left = self.plan.epoch_batches - done - self._steps_this_epoch() * self.context.world_size
            if left:
                where += f" ({left} batch(es) too few for a step are left out)"
        self._sync_schedule()
        logger.info(
            "checkpoint was written with %d process(es), resuming with %d (batches of %d utterances per process): "
            "step %d, at %s; the lr schedule continues from its step %d of %d per epoch",
            old_world_size, self.context.world_size, self.plan.batch_size, self.step, where,
            self.scheduler.step_count, len(self.plan),
        )

    def _map_shard_position(self, old_world_size: int) -> None:
        """:meth:`_map_position` over shards: the lanes of the processes differ, so a begun epoch ends there."""
        said = (f"checkpoint was written with {old_world_size} process(es), resuming with {self.context.world_size} "
                f"from shards at step {self.step}")
        if self.batch_in_epoch == 0:
            logger.info("%s, at the start of epoch %d", said, self.epoch + 1)
        else:
            logger.warning("%s: shards are dealt to the processes as lanes, so an epoch begun on one number of "
                           "processes cannot go on on another; the rest of epoch %d (after %d batch(es) per process) "
                           "is left out and epoch %d starts", said, self.epoch + 1, self.batch_in_epoch, self.epoch + 2)
            self.epoch, self.batch_in_epoch = self.epoch + 1, 0
        self._sync_schedule()

    def _steps_this_epoch(self) -> int:
        """Steps of the current epoch on this world size (fewer when it continues another world size's)."""
        return self.plan.steps_from(self.epoch_offset)

    def _epoch_progress(self) -> float:
        """Epochs done, fractional: the current epoch counts by its global batches done."""
        if self.epoch_offset == 0:
            return self.epoch + self.batch_in_epoch / len(self.plan)
        world = self.context.world_size
        done = self.epoch_offset + self.batch_in_epoch * world
        return self.epoch + done / (self.epoch_offset + self._steps_this_epoch() * world)

    def _schedule_position(self) -> int:
        """The step the schedules stand at: this world size's steps up to the current point of the training.

        The optimiser step count itself unless the number of processes changed during the training.
        """
        return (self.epoch * len(self.plan) + round(self.epoch_offset / self.context.world_size)
                + self.batch_in_epoch)

    def _sync_schedule(self) -> None:
        """Sets the lr scheduler to :meth:`_schedule_position` (after a change of world size)."""
        self.scheduler.load_state_dict({**self.scheduler.state_dict(), "step_count": self._schedule_position()})
