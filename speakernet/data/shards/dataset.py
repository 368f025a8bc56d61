"""Training from shards: a pure plan of each epoch's batches, and the ``IterableDataset`` that follows it.

The plan of an epoch is a function of (seed, epoch, rank, world size) and the shards' indexes only:

1. the shards in an order drawn from ``(seed, epoch)``, their utterances in tar order, make one stream, cut
   into ``lanes * world_size`` runs of equal length (to one utterance): lane ``l`` of rank ``r`` is run
   ``l * world_size + r``, whole shards but for the two at its ends;
3. each lane goes through a shuffle buffer of ``buffer_size`` utterances (when full, a random slot is
   emitted and refilled), drawn from ``(seed, epoch, rank, lane)``, which also draws each item's crop seed;
4. a lane's emitted utterances, ``batch_size`` at a time, are its batches; the rank's batch ``i`` is
   batch ``i // lanes`` of lane ``i % lanes``.

Every rank and lane has the same number of batches an epoch (``utterances // (lanes * world_size) //
batch_size``; the fewer than a batch left in a lane wait for another epoch's order), so DDP ranks stay in step
and the scheduler's epoch length is fixed. With ``W`` DataLoader workers (``W`` dividing ``lanes``), worker
``w`` reads the lanes of the batches ``start + w, start + w + W, ...``, which is the order the DataLoader takes
batches from its workers: each lane is read by one worker, its shards front to back (a shard split between two
lanes, in two parts), and the batches are the same, bit for bit, with 0, 1, 2, ... workers.
A crop is :class:`~speakernet.data.audio_dataset.AudioCropper`'s of the utterance and its crop seed, so it
is also the crop :class:`~speakernet.data.audio_dataset.AudioCropDataset` gives the same audio and seed.
Resuming at batch ``start`` of an epoch skips to it: a worker reads only the shards (and members) its remaining
batches need, so a resumed epoch's batches are exactly those of an uninterrupted one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from speakernet.data.audio_dataset import SPEEDS, Augment, AudioCropper
from speakernet.data.dataset import collate_crops
from speakernet.data.kaldi_dir import DataDirError
from speakernet.data.shards.format import SHARD_LIST_NAME, AudioBytes, ShardError, ShardIndex, iter_shard, read_index, \
    read_shard_list
from speakernet.data.spec_augment import SpecAugment
from speakernet.features.fbank import FbankConfig

logger = logging.getLogger(__name__)


def shuffle_buffer_order(length: int, buffer_size: int, rng: np.random.Generator) -> np.ndarray:
    """The order in which a shuffle buffer emits a stream of ``length`` items (their positions).

    The first ``buffer_size`` items fill the buffer; each later item replaces a uniformly drawn
    slot, whose item is emitted; at the end the buffer is emitted in a random order. The ``k``-th item
    emitted has been read when item ``buffer_size + k`` is, so a reader holds ``buffer_size`` items.
    """
    order = np.empty(length, dtype=np.int64)
    draws = rng.integers(0, max(buffer_size, 1), size=length)
    buffer = list(range(min(buffer_size, length)))
    emitted = 0
    for position in range(len(buffer), length):
        slot = draws[position]
        order[emitted] = buffer[slot]
        buffer[slot] = position
        emitted += 1
    order[emitted:] = rng.permutation(np.asarray(buffer, dtype=np.int64))
    return order


class ShardPlan:
    """The batches of every epoch over shards (see the module docstring).

    Args:
        shard_sizes: Utterances each shard contributes (its entries kept for training).
        batch_size: Utterances per batch and process.
        lanes: Lanes per rank (the DataLoader's workers must divide it).
        buffer_size: Shuffle-buffer size of a lane, in utterances.
        seed: Base seed.
        rank: This process's DDP rank.
        world_size: Number of DDP processes.

    Raises:
        ValueError: when the shards cannot give each lane of each rank a batch.
    """

    def __init__(self, shard_sizes: Sequence[int], batch_size: int, lanes: int, buffer_size: int, seed: int = 0,
                 rank: int = 0, world_size: int = 1):
        self.shard_sizes = np.asarray(shard_sizes, dtype=np.int64)
        self.batch_size, self.lanes, self.buffer_size = batch_size, lanes, buffer_size
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.groups = lanes * world_size
        total = int(self.shard_sizes.sum())
        per_lane = total // self.groups  # the fewest utterances a lane gets in any epoch
        self.lane_batches = per_lane // batch_size
        if self.lane_batches == 0:
            raise ValueError(f"{total} utterances cannot give each of {lanes} lane(s) on each of {world_size} "
                             f"process(es) a batch of {batch_size}; lower data.batch_size or data.shard_lanes, or "
                             "train on more data")
        self.num_batches = self.lane_batches * lanes

    def __len__(self) -> int:
        return self.num_batches

    @property
    def epoch_batches(self) -> int:
        """Batches of an epoch over all processes."""
        return self.num_batches * self.world_size

    def steps_from(self, global_start: int) -> int:
        """Steps of an epoch entered at global batch ``global_start``: only 0 (its start) is possible.

        Shards are dealt to the processes as lanes, so an epoch cannot be continued on another number
        of processes: the trainer continues at the next epoch instead.

        Raises:
            ValueError: for a ``global_start`` other than 0.
        """
        if global_start:
            raise ValueError(f"an epoch over shards is entered at its start, not at global batch {global_start}")
        return self.num_batches

    @property
    def utts_per_epoch(self) -> int:
        """Utterances each rank trains on in an epoch."""
        return self.num_batches * self.batch_size

    def worker_batches(self, worker: int, workers: int, start: int = 0) -> range:
        """The batches of an epoch that DataLoader worker ``worker`` of ``workers`` loads, from batch ``start`` on.

        The DataLoader takes batch ``start + k`` from worker ``k % workers``; as ``workers`` divides the
        lanes, every batch of a lane falls to the same worker (:meth:`worker_lanes`).

        Raises:
            ValueError: when ``workers`` does not divide the lanes.
        """
        if self.lanes % workers:
            raise ValueError(f"data.num_workers={workers} does not divide data.shard_lanes={self.lanes}")
        return range(start + worker, self.num_batches, workers)

    def worker_lanes(self, worker: int, workers: int, start: int = 0) -> list[int]:
        """The lanes (and so the shards) that worker ``worker`` of ``workers`` reads, resuming at batch ``start``."""
        return [lane for lane in range(self.lanes) if lane % workers == (start + worker) % workers]

    def lane_segments(self, epoch: int) -> list[list[tuple[int, int, int]]]:
        """This rank's lanes in ``epoch``: each a list of ``(shard, first, stop)``, the slots ``[first, stop)`` of
        a shard's utterances (its entries kept for training), in reading order.

        The shards in the epoch's order make one stream of utterances, cut into ``lanes * world_size``
        runs of equal length (to one utterance); lane ``l`` of rank ``r`` is run ``l * world_size + r``.
        So a shard is read by one lane, or, where a run ends inside it, its two parts by two.
        """
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.shard_sizes))
        ends = np.cumsum(self.shard_sizes[order])
        starts = ends - self.shard_sizes[order]
        total = int(ends[-1])
        lanes = []
        for lane in range(self.lanes):
            group = lane * self.world_size + self.rank
            begin, end = group * total // self.groups, (group + 1) * total // self.groups
            lanes.append([(int(shard), int(max(begin, start) - start), int(min(end, stop) - start))
                          for shard, start, stop in zip(order, starts, ends) if start < end and stop > begin])
        return lanes

    def lane_batches_of(self, epoch: int, lane: int) -> np.ndarray:
        """``[lane_batches, batch_size, 2]``: each batch's (stream position, crop seed) in a lane of ``epoch``.

        A stream position counts the lane's utterances in reading order (:meth:`lane_segments`).
        """
        length = sum(stop - first for _, first, stop in self.lane_segments(epoch)[lane])
        rng = np.random.default_rng([self.seed, epoch, self.rank, lane])
        used = self.lane_batches * self.batch_size
        positions = shuffle_buffer_order(length, self.buffer_size, rng)[:used]
        seeds = rng.integers(0, 2**31 - 1, size=used)
        return np.stack([positions, seeds], axis=-1).reshape(self.lane_batches, self.batch_size, 2)


@dataclass
class _Shard:
    """A shard's entries kept for training (positions in its index) and their labels and lengths."""

    index: ShardIndex
    entries: np.ndarray
    labels: np.ndarray
    num_samples: np.ndarray


class ShardDataset(torch.utils.data.IterableDataset):
    """Batches of random crops read from a data dir's shards, as the epoch's :class:`ShardPlan` says.

    Items are whole batches (``DataLoader(batch_size=None)``): ``(feats [B, T, F], labels [B])``, crops
    as :class:`~speakernet.data.audio_dataset.AudioCropDataset` makes them. Call :meth:`set_epoch`
    before each iteration.

    Args:
        data_dir: Data dir with ``shards.list`` (utterances' speakers come from the shards).
        spk2label: Speaker -> class index.
        crop_frames, min_frames, frontend, spec_augment, augment, speed_perturb: As for ``AudioCropDataset``.
        batch_size: Utterances per batch.
        lanes: Lanes per rank (:class:`ShardPlan`).
        buffer_size: Shuffle-buffer size of a lane, in utterances (the audio a worker holds, encoded).
        seed: Base seed of the plan.
        rank: This process's DDP rank.
        world_size: Number of DDP processes.

    Attributes:
        utts, labels: The utterances kept for training and their labels.
        dropped: Utterance -> reason for those left out (``too_few_frames 37<100``).
        plan: The :class:`ShardPlan`.
    """

    def __init__(self, data_dir: str | Path, spk2label: dict[str, int], crop_frames: int = 200,
                 min_frames: int = 100, frontend: FbankConfig = FbankConfig(), spec_augment: SpecAugment | None = None,
                 augment: Augment | None = None, speed_perturb: bool = False, batch_size: int = 64, lanes: int = 4,
                 buffer_size: int = 1000, seed: int = 0, rank: int = 0, world_size: int = 1):
        data_dir = Path(data_dir)
        self.cropper = AudioCropper(crop_frames, frontend, spec_augment, augment, speed_perturb, len(spk2label))
        self.num_speakers = len(spk2label)
        self.speed_perturb = speed_perturb
        list_path = data_dir / SHARD_LIST_NAME
        self.shards: list[_Shard] = []
        self.utts: list[str] = []
        labels: list[int] = []
        self.dropped: dict[str, str] = {}
        for line, tar_path in read_shard_list(data_dir):
            try:
                index = read_index(tar_path)
            except ShardError as error:
                raise ShardError(f"{list_path}:{line}: {error}") from None
            if index.sample_rate != frontend.sample_rate:
                raise ShardError(f"{list_path}:{line}: shard {tar_path} holds audio at {index.sample_rate} Hz, the "
                                 f"front-end takes {frontend.sample_rate} Hz: make the shards with --sample-rate "
                                 f"{frontend.sample_rate} (or set data.frontend.sample_rate)")
            kept = []
            for entry, (utt, speaker, samples) in enumerate(zip(index.utts, index.speakers, index.num_samples)):
                if speaker not in spk2label:
                    raise DataDirError(tar_path, f"speaker '{speaker}' is not in the label set (the data dir's "
                                       "spk2utt); the shards are of another data dir", key=utt)
                frames = frontend.num_frames(samples)
                if frames < min_frames:
                    self.dropped[utt] = f"too_few_frames {frames}<{min_frames}"
                    continue
                kept.append(entry)
                self.utts.append(utt)
                labels.append(spk2label[speaker])
            entries = np.asarray(kept, dtype=np.int64)
            self.shards.append(_Shard(index, entries, np.asarray([spk2label[index.speakers[e]] for e in kept],
                                                                 dtype=np.int64),
                                      np.asarray([index.num_samples[e] for e in kept], dtype=np.int64)))
        self.labels = np.asarray(labels, dtype=np.int64)
        if not self.utts:
            raise DataDirError(data_dir, f"no utterance of its shards has at least {min_frames} frames")
        self.plan = ShardPlan([len(shard.entries) for shard in self.shards], batch_size, lanes, buffer_size, seed,
                              rank, world_size)
        self.epoch, self.start = 0, 0
        logger.info("%s: %d utterances of %d speakers in %d shards for training (%d with fewer than %d frames left "
                    "out); %d batches of %d an epoch per process (%d utterances) from %d lanes with shuffle buffers "
                    "of %d%s", data_dir, len(self.utts), len(set(labels)), len(self.shards), len(self.dropped),
                    min_frames, len(self.plan), batch_size, self.plan.utts_per_epoch, lanes, buffer_size,
                    "; speed perturbation 0.9/1.0/1.1" if speed_perturb else "")

    def __len__(self) -> int:
        return len(self.utts)

    @property
    def num_classes(self) -> int:
        """Classes of the labels: the speakers, three times over with speed perturbation."""
        return self.cropper.num_speakers * (len(SPEEDS) if self.speed_perturb else 1)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """The epoch the next iteration reads, from its batch ``start`` on (mid-epoch resume)."""
        self.epoch, self.start = epoch, start

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        info = torch.utils.data.get_worker_info()
        workers, worker = (1, 0) if info is None else (info.num_workers, info.id)
        lanes = self.plan.lanes
        lane_segments = self.plan.lane_segments(self.epoch)
        readers: dict[int, Iterator[tuple[torch.Tensor, torch.Tensor]]] = {}
        for batch in self.plan.worker_batches(worker, workers, self.start):
            lane = batch % lanes
            if lane not in readers:
                readers[lane] = self._lane(lane, lane_segments[lane], batch // lanes)
            yield next(readers[lane])

    def _lane(self, lane: int, segments: list[tuple[int, int, int]],
              first: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """A lane's batches from its batch ``first`` on, reading its shards front to back."""
        batches = self.plan.lane_batches_of(self.epoch, lane)[first:]
        if len(batches) == 0:
            return
        seeds = {int(position): int(seed) for position, seed in batches.reshape(-1, 2)}
        ready_at = batches[:, :, 0].max(axis=1)  # a batch is complete once its last utterance is read
        held: dict[int, tuple[_Shard, int, bytes]] = {}
        done, offset = 0, 0
        for number, begin, stop in segments:
            shard = self.shards[number]
            # stream position offset + (slot - begin) for the slots [begin, stop) of the shard
            wanted = {int(shard.entries[slot]): (slot, offset + slot - begin) for slot in range(begin, stop)
                      if offset + slot - begin in seeds}
            if wanted:
                for entry, data, _ in iter_shard(shard.index, set(wanted)):
                    slot, position = wanted[entry]
                    held[position] = (shard, slot, data)
                    while done < len(batches) and ready_at[done] <= position:
                        yield self._batch(batches[done], held)
                        done += 1
            offset += stop - begin
        if done < len(batches):  # the plan counts what the shards' indexes hold; the tars did not give it
            raise ShardError(f"lane {lane} of epoch {self.epoch}: the shards gave fewer utterances than their indexes "
                             "list; make the shards again (python -m speakernet.bin.make_shards)")

    def _batch(self, batch: np.ndarray, held: dict[int, tuple[_Shard, int, bytes]]) -> tuple[torch.Tensor,
                                                                                              torch.Tensor]:
        items = []
        for position, seed in batch:
            shard, slot, data = held.pop(int(position))
            utt = shard.index.utts[int(shard.entries[slot])]
            try:  # only the crop's window is decoded
                with AudioBytes(data) as audio:
                    items.append(self.cropper.crop(audio.read, int(shard.num_samples[slot]), int(shard.labels[slot]),
                                                   int(seed)))
            except ValueError as error:
                raise ShardError(f"shard {shard.index.path}: utterance '{utt}': {error}") from None
        return collate_crops(items)
