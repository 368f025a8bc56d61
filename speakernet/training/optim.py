"""Optimisers and learning-rate schedulers, registered by name for configs."""

from __future__ import annotations

import math
from typing import Any, Iterable

import torch

from speakernet.registry import Registry

OPTIMIZERS: Registry[torch.optim.Optimizer] = Registry("optimizer")
SCHEDULERS: Registry["StepScheduler"] = Registry("scheduler")


@OPTIMIZERS.register("SGD")
def sgd(
    params: Iterable[Any],
    lr: float = 0.1,
    momentum: float = 0.9,
    nesterov: bool = True,
    weight_decay: float = 1e-4,
) -> torch.optim.Optimizer:
    """SGD with (Nesterov) momentum, the reference recipes' optimiser."""
    return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)


@OPTIMIZERS.register("Adam")
def adam(
    params: Iterable[Any], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), weight_decay: float = 0.0
) -> torch.optim.Optimizer:
    """Adam (L2 weight decay added to the gradient)."""
    return torch.optim.Adam(params, lr=lr, betas=tuple(betas), weight_decay=weight_decay)


@OPTIMIZERS.register("AdamW")
def adamw(
    params: Iterable[Any], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), weight_decay: float = 1e-2
) -> torch.optim.Optimizer:
    """AdamW (decoupled weight decay)."""
    return torch.optim.AdamW(params, lr=lr, betas=tuple(betas), weight_decay=weight_decay)


class StepScheduler:
    """Base class: sets every param group's lr from the global optimiser step.

    Stepped once per optimiser step; its only state is the step count, so resuming a
    checkpoint restores the exact learning rate.
    """

    def __init__(self, optimizer: torch.optim.Optimizer):
        self.optimizer = optimizer
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]
        self.step_count = 0
        self._apply()

    def factor(self, step: int) -> float:
        """Multiplier on the base lr at ``step``."""
        raise NotImplementedError

    def _apply(self) -> None:
        factor = self.factor(self.step_count)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * factor

    def step(self) -> None:
        """Advances one optimiser step."""
        self.step_count += 1
        self._apply()

    def get_last_lr(self) -> list[float]:
        """The current lr of each param group."""
        return [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        """Step count and base lrs."""
        return {"step_count": self.step_count, "base_lrs": list(self.base_lrs)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores the step count and base lrs, and re-applies the lr."""
        self.step_count = int(state["step_count"])
        self.base_lrs = list(state["base_lrs"])
        self._apply()


@SCHEDULERS.register("WarmupExponential")
class WarmupExponential(StepScheduler):
    """Linear warm-up from 0, then exponential decay to ``final_lr`` at the last step.

    The WeSpeaker recipe's schedule (0.1 -> 5e-5 over 150 epochs, 6 warm-up epochs),
    expressed in epochs so it follows the configured training length.

    Args:
        optimizer: The optimiser; its lr is the peak lr.
        steps_per_epoch: Optimiser steps per epoch.
        total_epochs: Epochs of the whole run.
        warmup_epochs: Linear warm-up length in epochs (fractional allowed).
        final_lr: lr reached at the end of training.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        steps_per_epoch: int,
        total_epochs: int,
        warmup_epochs: float = 1.0,
        final_lr: float = 5e-5,
    ):
        self.total_steps = max(1, steps_per_epoch * total_epochs)
        self.warmup_steps = int(round(warmup_epochs * steps_per_epoch))
        self.final_lr = final_lr
        self.peak_lr = optimizer.param_groups[0]["lr"]
        if final_lr <= 0 or final_lr > self.peak_lr:
            raise ValueError(f"final_lr must be in (0, lr={self.peak_lr}], got {final_lr}")
        super().__init__(optimizer)

    def factor(self, step: int) -> float:
        """Warm-up ramp times exponential decay."""
        ratio = self.final_lr / self.peak_lr
        progress = min(step, self.total_steps) / self.total_steps
        decay = math.exp(math.log(ratio) * progress)
        warmup = min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps > 0 else 1.0
        return warmup * decay


@SCHEDULERS.register("Constant")
class Constant(StepScheduler):
    """Keeps the optimiser's lr, after an optional linear warm-up.

    Args:
        optimizer: The optimiser.
        steps_per_epoch: Optimiser steps per epoch.
        total_epochs: Epochs of the whole run (unused).
        warmup_epochs: Linear warm-up length in epochs.
    """

    def __init__(
        self, optimizer: torch.optim.Optimizer, steps_per_epoch: int, total_epochs: int, warmup_epochs: float = 0.0
    ):
        self.warmup_steps = int(round(warmup_epochs * steps_per_epoch))
        super().__init__(optimizer)

    def factor(self, step: int) -> float:
        """1, after the warm-up ramp."""
        return min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps > 0 else 1.0


@SCHEDULERS.register("MultiStep")
class MultiStep(StepScheduler):
    """Step decay: the lr is multiplied by ``gamma`` at each milestone epoch, after an optional warm-up.

    SpeakerNet's schedule (milestones 15, 25, 35 and gamma 0.1 over 40 epochs; 7, 14 and 0.5 for its
    large-margin fine-tuning). Written on :class:`StepScheduler` rather than wrapping
    ``torch.optim.lr_scheduler.MultiStepLR`` so that the only state is the step count: the lr at
    any step is a pure function of it, which keeps resume exact.

    Args:
        optimizer: The optimiser; its lr is the initial (peak) lr.
        steps_per_epoch: Optimiser steps per epoch.
        total_epochs: Epochs of the whole run (milestones past it never fire).
        milestones: Epochs (fractional allowed) after which the lr drops, increasing.
        gamma: Factor applied at each milestone, in (0, 1].
        warmup_epochs: Linear warm-up length in epochs.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        steps_per_epoch: int,
        total_epochs: int,
        milestones: Iterable[float] = (),
        gamma: float = 0.1,
        warmup_epochs: float = 0.0,
    ):
        self.milestones = [float(m) for m in milestones]
        if any(b <= a for a, b in zip(self.milestones, self.milestones[1:])) or any(m <= 0 for m in self.milestones):
            raise ValueError(f"MultiStep: milestones must be positive and increasing, got {list(milestones)}")
        if not 0.0 < gamma <= 1.0:
            raise ValueError(f"MultiStep: gamma must be in (0, 1], got {gamma}")
        self.milestone_steps = [int(round(m * steps_per_epoch)) for m in self.milestones]
        self.gamma = gamma
        self.warmup_steps = int(round(warmup_epochs * steps_per_epoch))
        super().__init__(optimizer)

    def factor(self, step: int) -> float:
        """Warm-up ramp times ``gamma ** (milestones passed)``."""
        passed = sum(step >= milestone for milestone in self.milestone_steps)
        warmup = min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps > 0 else 1.0
        return warmup * self.gamma**passed


@SCHEDULERS.register("Cyclic")
class Cyclic(StepScheduler):
    """Cyclical lr (Smith, 2017): the lr runs linearly between ``base_lr`` and the peak and back.

    With ``i`` the step and ``h`` the half-cycle in steps: ``cycle = floor(1 + i / 2h)``,
    ``x = |i / h - 2 cycle + 1|`` and ``lr = base + (peak - base) * max(0, 1 - x) * a``, where the
    amplitude factor ``a`` is 1 (``triangular``, the MindSpore ECAPA recipe: base 1e-6, peak 1e-4,
    a half-cycle of 65,000 steps) or ``0.5 ** (cycle - 1)`` (``triangular2``). Like every
    scheduler here its only state is the step count (so not ``torch.optim.lr_scheduler.CyclicLR``,
    which also cycles momentum and keeps more state).

    Args:
        optimizer: The optimiser; its lr is the peak lr.
        steps_per_epoch: Optimiser steps per epoch.
        total_epochs: Epochs of the whole run (unused).
        base_lr: The lowest lr, below the peak.
        half_cycle_epochs: Epochs from the base lr to the peak (fractional allowed).
        half_cycle_steps: The same in steps; overrides ``half_cycle_epochs`` when positive.
        mode: ``triangular`` or ``triangular2``.
    """

    MODES = ("triangular", "triangular2")

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        steps_per_epoch: int,
        total_epochs: int,
        base_lr: float = 1e-6,
        half_cycle_epochs: float = 1.0,
        half_cycle_steps: int = 0,
        mode: str = "triangular",
    ):
        self.peak_lr = optimizer.param_groups[0]["lr"]
        if not 0.0 <= base_lr < self.peak_lr:
            raise ValueError(f"Cyclic: base_lr must be in [0, lr={self.peak_lr}), got {base_lr}")
        if mode not in self.MODES:
            raise ValueError(f"Cyclic: mode must be one of {', '.join(self.MODES)}, got {mode!r}")
        self.half_cycle = half_cycle_steps if half_cycle_steps > 0 else int(round(half_cycle_epochs * steps_per_epoch))
        if self.half_cycle < 1:
            raise ValueError(f"Cyclic: the half-cycle must be at least one step (half_cycle_epochs={half_cycle_epochs}"
                             f" x {steps_per_epoch} steps per epoch)")
        self.base_lr, self.mode = base_lr, mode
        super().__init__(optimizer)

    def factor(self, step: int) -> float:
        """The cyclic lr divided by the peak lr."""
        cycle = math.floor(1 + step / (2 * self.half_cycle))
        x = abs(step / self.half_cycle - 2 * cycle + 1)
        amplitude = 1.0 if self.mode == "triangular" else 0.5 ** (cycle - 1)
        return (self.base_lr + (self.peak_lr - self.base_lr) * max(0.0, 1.0 - x) * amplitude) / self.peak_lr
