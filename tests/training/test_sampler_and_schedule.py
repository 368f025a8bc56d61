"""Batch plans and lr schedules."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from speakernet.data.sampler import BatchPlan
from speakernet.training.optim import SCHEDULERS, WarmupExponential

LABELS = np.repeat(np.arange(10), [5, 3, 8, 2, 6, 4, 7, 1, 9, 5])


def test_random_plan_is_deterministic_and_covers_without_repeats() -> None:
    plan = BatchPlan(LABELS, batch_size=8, seed=3)
    first = list(plan.batches(epoch=0))
    assert len(first) == len(plan) == 50 // 8 and all(len(batch) == 8 for batch in first)
    assert first == list(BatchPlan(LABELS, batch_size=8, seed=3).batches(epoch=0))
    assert first != list(plan.batches(epoch=1))
    indices = [i for batch in first for i, _ in batch]
    assert len(indices) == len(set(indices)) == len(plan) * 8 == (len(LABELS) // 8) * 8
    assert set(indices) <= set(range(len(LABELS)))
    # resuming mid-epoch yields exactly the remaining batches
    assert list(plan.batches(epoch=0, start=2)) == first[2:]
    # the remainder left out changes from epoch to epoch, so no utterance is left out for good
    used = {i for epoch in range(4) for batch in plan.batches(epoch) for i, _ in batch}
    assert used == set(range(len(LABELS)))


def test_every_crop_gets_its_own_seed_each_epoch() -> None:
    # Crop positions come from these seeds: shared seeds would crop every utterance at one place.
    plan = BatchPlan(LABELS, batch_size=8, seed=3)
    seeds = [[seed for _, seed in batch] for batch in plan.batches(epoch=0)]
    flat = [seed for batch in seeds for seed in batch]
    assert len(set(flat)) == len(flat)
    later = {seed for batch in plan.batches(epoch=1) for _, seed in batch}
    assert not later & set(flat)  # a new epoch draws new crops of the same utterances
    assert seeds == [[seed for _, seed in batch] for batch in BatchPlan(LABELS, batch_size=8, seed=3).batches(0)]


@pytest.mark.parametrize("num_utts", [48, 50])  # a multiple of batch x ranks, and 2 left over
def test_ranks_split_the_single_process_plan(num_utts: int) -> None:
    labels = LABELS[:num_utts]
    ranks = [list(BatchPlan(labels, batch_size=4, seed=0, rank=r, world_size=2).batches(0)) for r in range(2)]
    assert [len(batches) for batches in ranks] == [6, 6]  # 48 // (4 x 2) batches each
    assert all(len(batch) == 4 for batches in ranks for batch in batches)
    seen = [i for batches in ranks for batch in batches for i, _ in batch]
    assert len(seen) == len(set(seen)) == 48  # disjoint, and together they take 48 utterances
    if num_utts == 48:
        assert set(seen) == set(range(48))  # every utterance once per epoch
    # rank r takes global batches r, r + 2, ...: together exactly the batches of one process
    single = list(BatchPlan(labels, batch_size=4, seed=0).batches(0))
    assert len(single) == 12
    assert single[0::2] == ranks[0] and single[1::2] == ranks[1]
    # a rank resuming mid-epoch continues with its own remaining batches
    assert list(BatchPlan(labels, 4, seed=0, rank=1, world_size=2).batches(0, start=4)) == ranks[1][4:]


def test_another_world_size_continues_the_epoch_at_the_same_global_batch() -> None:
    labels = LABELS[:50]  # 12 global batches of 4 (2 utterances left over)
    single = list(BatchPlan(labels, batch_size=4, seed=0).batches(0))
    # 3 processes taking over after global batch 5: 7 batches left, 2 steps of 3 (1 batch left out)
    ranks = [list(BatchPlan(labels, 4, seed=0, rank=r, world_size=3).batches(0, global_start=5)) for r in range(3)]
    assert BatchPlan(labels, 4, world_size=3).steps_from(5) == 2
    assert ranks == [[single[5 + r], single[8 + r]] for r in range(3)]
    # and resuming that at its step 1 gives the rest of it
    assert list(BatchPlan(labels, 4, seed=0, rank=2, world_size=3).batches(0, start=1, global_start=5)) == [single[10]]
    # one process after 2 processes' first 3 steps: global batches 6 to 11
    assert list(BatchPlan(labels, 4, seed=0).batches(0, global_start=6)) == single[6:]
    # speaker-balanced batches keep their utterances too (their crop seeds follow the epoch's batch count)
    balanced = dict(sampler="speaker_balanced", speakers_per_batch=2, utts_per_speaker=2, seed=4)
    one = [[i for i, _ in batch] for batch in BatchPlan(labels, 4, **balanced).batches(0)]
    two = [[[i for i, _ in batch] for batch in BatchPlan(labels, 4, rank=r, world_size=5, **balanced).batches(0, 0, 3)]
           for r in range(5)]
    assert two == [[one[3 + r]] for r in range(5)]


def test_speaker_balanced_batches_have_p_distinct_speakers_k_each() -> None:
    plan = BatchPlan(LABELS, batch_size=0, sampler="speaker_balanced", speakers_per_batch=4, utts_per_speaker=3, seed=1)
    batches = list(plan.batches(epoch=0))
    assert len(batches) == len(plan) == 50 // 12
    for batch in batches:
        assert len(batch) == 12
        speakers = LABELS[[i for i, _ in batch]]
        values, counts = np.unique(speakers, return_counts=True)
        assert len(values) == 4 and set(counts) == {3}
    # speakers with fewer than K utterances are drawn with replacement, the others without
    for batch in batches:
        for speaker in np.unique(LABELS[[i for i, _ in batch]]):
            chosen = [i for i, _ in batch if LABELS[i] == speaker]
            if np.count_nonzero(LABELS == speaker) >= 3:
                assert len(set(chosen)) == 3


def test_bad_plans_are_explained() -> None:
    with pytest.raises(ValueError, match="unknown sampler"):
        BatchPlan(LABELS, 4, sampler="balanced")
    with pytest.raises(ValueError, match="cannot fill one batch"):
        BatchPlan(LABELS[:3], 4)
    with pytest.raises(ValueError, match="exceeds the 10 training speakers"):
        BatchPlan(LABELS, 4, sampler="speaker_balanced", speakers_per_batch=11)


def test_warmup_exponential_schedule() -> None:
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    scheduler = WarmupExponential(optimizer, steps_per_epoch=10, total_epochs=10, warmup_epochs=2, final_lr=1e-3)
    lrs = [scheduler.get_last_lr()[0]]
    for _ in range(100):
        scheduler.step()
        lrs.append(scheduler.get_last_lr()[0])
    assert lrs[0] == pytest.approx(0.1 * (1 / 20) * math.exp(0))  # first warm-up step
    assert all(b > a for a, b in zip(lrs[:19], lrs[1:20]))  # rising during warm-up
    assert lrs[100] == pytest.approx(1e-3)
    # after warm-up: exactly exponential between 0.1 and 1e-3
    assert lrs[50] == pytest.approx(0.1 * (1e-3 / 0.1) ** 0.5)
    state = scheduler.state_dict()
    fresh = SCHEDULERS.build("WarmupExponential", optimizer=optimizer, steps_per_epoch=10, total_epochs=10,
                             warmup_epochs=2, final_lr=1e-3)
    fresh.load_state_dict(state)
    assert fresh.get_last_lr() == scheduler.get_last_lr()
