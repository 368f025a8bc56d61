"""The MultiStep and Cyclic lr schedules, built from a config the way the trainer builds them."""

from __future__ import annotations

import math

import pytest
import torch

from speakernet.config import load_config
from speakernet.training.optim import OPTIMIZERS, SCHEDULERS, Cyclic, MultiStep, StepScheduler

from test_optim import _lrs


def _build(overrides: list[str], steps_per_epoch: int = 4) -> StepScheduler:
    config = load_config(None, overrides)
    optimizer = OPTIMIZERS.build(config["optimizer"], params=[torch.zeros(1, requires_grad=True)],
                                 **config["optimizer_args"])
    return SCHEDULERS.build(config["scheduler"], optimizer=optimizer, steps_per_epoch=steps_per_epoch,
                            total_epochs=config["training"]["epochs"], **config["scheduler_args"])


def test_multistep_drops_at_each_milestone_after_the_warmup() -> None:
    scheduler = _build(["optimizer_args={lr: 0.1}", "scheduler=MultiStep",
                        "scheduler_args={milestones: [1, 2.5], gamma: 0.5, warmup_epochs: 0.5}"])
    assert isinstance(scheduler, MultiStep)
    # 4 steps per epoch: milestones at steps 4 and 10; warm-up over 2 steps
    expected = [0.05, 0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.025, 0.025]
    assert _lrs(scheduler, 11) == pytest.approx(expected)


def test_multistep_rejects_bad_milestones() -> None:
    with pytest.raises(ValueError, match="increasing"):
        _build(["scheduler=MultiStep", "scheduler_args={milestones: [3, 2]}"])
    with pytest.raises(ValueError, match="gamma"):
        _build(["scheduler=MultiStep", "scheduler_args={milestones: [1], gamma: 0}"])


def _mindspore_triangular(step: int, base: float, peak: float, half: int) -> float:
    cycle = math.floor(1 + step / (2 * half))
    x = abs(step / half - 2 * cycle + 1)
    return base + (peak - base) * max(0.0, 1 - x)


def test_cyclic_triangular_is_the_mindspore_formula() -> None:
    scheduler = _build(["optimizer=Adam", "optimizer_args={lr: 1.0e-4}", "scheduler=Cyclic",
                        "scheduler_args={base_lr: 1.0e-6, half_cycle_steps: 5}"])
    assert isinstance(scheduler, Cyclic)
    lrs = _lrs(scheduler, 25)
    assert lrs == pytest.approx([_mindspore_triangular(i, 1e-6, 1e-4, 5) for i in range(26)])
    assert lrs[0] == pytest.approx(1e-6) and lrs[5] == pytest.approx(1e-4) and lrs[10] == pytest.approx(1e-6)
    assert lrs[15] == pytest.approx(1e-4)  # every cycle reaches the peak again


def test_cyclic_triangular2_halves_each_cycle_and_resumes_exactly() -> None:
    overrides = ["optimizer_args={lr: 0.2}", "scheduler=Cyclic",
                 "scheduler_args={base_lr: 0.0, half_cycle_epochs: 1, mode: triangular2}"]
    scheduler = _build(overrides)  # half-cycle 4 steps
    lrs = _lrs(scheduler, 16)
    assert [lrs[4], lrs[12]] == pytest.approx([0.2, 0.1]) and lrs[8] == pytest.approx(0.0)
    fresh = _build(overrides)
    fresh.load_state_dict(scheduler.state_dict())
    assert fresh.get_last_lr() == pytest.approx([lrs[-1]])
    with pytest.raises(ValueError, match="mode"):
        _build(["scheduler=Cyclic", "scheduler_args={mode: exp}"])
    with pytest.raises(ValueError, match="base_lr"):
        _build(["optimizer_args={lr: 0.1}", "scheduler=Cyclic", "scheduler_args={base_lr: 0.2}"])
