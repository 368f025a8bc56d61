"""Batch plans for training: which utterances (and crop seeds) go in each batch.

A plan is a pure function of (seed, epoch, rank, world size), so any step of any epoch
can be reproduced, which is what makes mid-epoch resume exact, and every DDP rank draws
disjoint batches without communication.

Every world size draws from one sequence of *global batches* per epoch (``batch_size``
utterances each, as many as the epoch's utterances fill): a step of W processes takes the
next W of them, rank r the r-th. So a run stopped after global batch G can continue at
global batch G on another number of processes (``global_start``), each utterance still
seen once in the epoch (``random`` sampler; ``speaker_balanced`` draws with replacement).
"""

from __future__ import annotations

from typing import Iterator

import numpy as np


class BatchPlan:
    """Deterministic per-epoch batches of ``(utterance index, crop seed)`` pairs.

    Args:
        labels: Speaker label of each utterance.
        batch_size: Utterances per batch and process (``random`` sampler).
        sampler: ``random`` (shuffle all utterances) or ``speaker_balanced`` (P speakers
            x K utterances per batch).
        speakers_per_batch: P, for ``speaker_balanced``.
        utts_per_speaker: K, for ``speaker_balanced`` (drawn with replacement when a
            speaker has fewer).
        seed: Base seed.
        rank: This process's DDP rank.
        world_size: Number of DDP processes; each takes every ``world_size``-th global batch.
    """

    SAMPLERS = ("random", "speaker_balanced")

    def __init__(
        self,
        labels: np.ndarray,
        batch_size: int,
        sampler: str = "random",
        speakers_per_batch: int = 16,
        utts_per_speaker: int = 4,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ):
        if sampler not in self.SAMPLERS:
            raise ValueError(f"unknown sampler '{sampler}'; choose one of: {', '.join(self.SAMPLERS)}")
        self.labels = np.asarray(labels)
        self.sampler = sampler
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.speakers = np.unique(self.labels)
        self.batch_size = speakers_per_batch * utts_per_speaker if sampler == "speaker_balanced" else batch_size
        self.speakers_per_batch = speakers_per_batch
        self.utts_per_speaker = utts_per_speaker
        if sampler == "speaker_balanced" and speakers_per_batch > len(self.speakers):
            raise ValueError(
                f"speakers_per_batch={speakers_per_batch} exceeds the {len(self.speakers)} training speakers"
            )
        #: Global batches an epoch's utterances fill, whatever the world size.
        self.epoch_batches = len(self.labels) // self.batch_size
        #: Steps (batches per process) of an epoch started by this world size.
        self.num_batches = self.epoch_batches // world_size
        if self.num_batches == 0:
            fits = max(1, len(self.labels) // world_size)
            what = ("data.speakers_per_batch / data.utts_per_speaker" if sampler == "speaker_balanced"
                    else f"data.batch_size (e.g. the override data.batch_size={fits})")
            raise ValueError(
                f"{len(self.labels)} utterances cannot fill one batch of {self.batch_size} on {world_size} "
                f"process(es); lower {what}, or train on more data"
            )

    def steps_from(self, global_start: int) -> int:
        """Steps of this world size left in an epoch whose first ``global_start`` global batches are done."""
        return max(0, self.epoch_batches - global_start) // self.world_size

    def _global_batches(self, epoch: int, total: int) -> np.ndarray:
        """The epoch's first ``total`` global batches: ``[total, batch_size, (index, seed)]``.

        The utterance indices of a batch do not depend on ``total``; nor do the crop seeds of
        the ``random`` sampler (a prefix of one draw); ``speaker_balanced`` draws its seeds
        after its rows, so they do.
        """
        rng = np.random.default_rng([self.seed, epoch])
        if self.sampler == "random":
            order = rng.permutation(len(self.labels))[: total * self.batch_size]
            indices = order.reshape(total, self.batch_size)
        else:
            by_speaker = {spk: np.flatnonzero(self.labels == spk) for spk in self.speakers}
            indices = np.empty((total, self.batch_size), dtype=np.int64)
            speaker_queue = np.empty(0, dtype=self.speakers.dtype)
            for b in range(total):
                if len(speaker_queue) < self.speakers_per_batch:
                    speaker_queue = np.concatenate([speaker_queue, rng.permutation(self.speakers)])
                    # a speaker may not appear twice in one batch across the refill seam
                chosen, speaker_queue = _take_distinct(speaker_queue, self.speakers_per_batch)
                row = []
                for spk in chosen:
                    pool = by_speaker[spk]
                    replace = len(pool) < self.utts_per_speaker
                    row.extend(rng.choice(pool, size=self.utts_per_speaker, replace=replace))
                indices[b] = row
        seeds = rng.integers(0, 2**31 - 1, size=indices.shape)
        return np.stack([indices, seeds], axis=-1)

    def batches(self, epoch: int, start: int = 0, global_start: int = 0) -> Iterator[list[tuple[int, int]]]:
        """This rank's batches of ``epoch``, from step ``start`` on.

        Args:
            epoch: Epoch number (0-based).
            start: Steps of this epoch already done by this world size (for mid-epoch resume).
            global_start: Global batches of this epoch done before this world size took over
                (a resume on another number of processes); the steps count from there.

        Yields:
            Lists of ``(utterance index, crop seed)``.
        """
        total = global_start + self.steps_from(global_start) * self.world_size
        plan = self._global_batches(epoch, total)[global_start + self.rank :: self.world_size]
        for row in plan[start:]:
            yield [(int(index), int(seed)) for index, seed in row]

    def __len__(self) -> int:
        return self.num_batches


def _take_distinct(queue: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Pops the first ``count`` distinct items of ``queue``; skipped duplicates stay queued."""
    chosen: list = []
    skipped: list = []
    position = 0
    while len(chosen) < count and position < len(queue):
        item = queue[position]
        (skipped if item in chosen else chosen).append(item)
        position += 1
    rest = np.concatenate([np.asarray(skipped, dtype=queue.dtype), queue[position:]])
    return np.asarray(chosen, dtype=queue.dtype), rest
