"""Adam, AdamW and the Constant scheduler, built from a config the way the trainer builds them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from speakernet.config import ConfigError, load_config
from speakernet.training import checkpoint as ckpt
from speakernet.training.optim import OPTIMIZERS, SCHEDULERS, Constant, StepScheduler
from speakernet.training.trainer import Trainer, train

from training_data import TINY_OVERRIDES


def _build(overrides: list[str], params: list[torch.Tensor], steps_per_epoch: int = 4
           ) -> tuple[torch.optim.Optimizer, StepScheduler]:
    # The same calls as Trainer.__init__, on a config validated by load_config.
    config = load_config(None, overrides)
    optimizer = OPTIMIZERS.build(config["optimizer"], params=params, **config["optimizer_args"])
    scheduler = SCHEDULERS.build(config["scheduler"], optimizer=optimizer, steps_per_epoch=steps_per_epoch,
                                 total_epochs=config["training"]["epochs"], **config["scheduler_args"])
    return optimizer, scheduler


def _param(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64, requires_grad=True)


def _step_with_grad(optimizer: torch.optim.Optimizer, param: torch.Tensor, grad: torch.Tensor) -> None:
    param.grad = grad.clone()  # a zero tensor, not None: a parameter without .grad is skipped entirely
    optimizer.step()


CONSTANT = ["scheduler=Constant", "scheduler_args={}"]


@pytest.mark.parametrize("name, cls", [("Adam", torch.optim.Adam), ("AdamW", torch.optim.AdamW)])
def test_lr_betas_and_weight_decay_pass_through(name: str, cls: type) -> None:
    param = _param(1.0, -2.0)
    optimizer, _ = _build([f"optimizer={name}", "optimizer_args={lr: 0.01, betas: [0.8, 0.95], weight_decay: 0.1}"]
                          + CONSTANT, [param])
    assert type(optimizer) is cls
    group = optimizer.param_groups[0]
    assert group["lr"] == 0.01 and tuple(group["betas"]) == (0.8, 0.95) and group["weight_decay"] == 0.1
    # Behaviourally too: the same trajectory as torch's optimiser built with these values by hand.
    reference_param = _param(1.0, -2.0)
    reference = cls([reference_param], lr=0.01, betas=(0.8, 0.95), weight_decay=0.1)
    default_param = _param(1.0, -2.0)
    default, _ = _build([f"optimizer={name}", "optimizer_args={lr: 0.01}"] + CONSTANT, [default_param])
    for grad in ([0.5, -1.0], [-3.0, 0.2], [1.0, 1.0]):
        _step_with_grad(optimizer, param, torch.tensor(grad, dtype=torch.float64))
        _step_with_grad(reference, reference_param, torch.tensor(grad, dtype=torch.float64))
        _step_with_grad(default, default_param, torch.tensor(grad, dtype=torch.float64))
    assert torch.equal(param, reference_param)
    assert not torch.allclose(param, default_param), "betas/weight_decay made no difference"


def test_defaults() -> None:
    adam, _ = _build(["optimizer=Adam", "optimizer_args={}"] + CONSTANT, [_param(1.0)])
    adamw, _ = _build(["optimizer=AdamW", "optimizer_args={}"] + CONSTANT, [_param(1.0)])
    assert (adam.param_groups[0]["lr"], tuple(adam.param_groups[0]["betas"]), adam.param_groups[0]["weight_decay"]) \
        == (1e-3, (0.9, 0.999), 0.0)
    assert (adamw.param_groups[0]["lr"], adamw.param_groups[0]["weight_decay"]) == (1e-3, 1e-2)


def test_adamw_decay_is_decoupled_from_the_gradient() -> None:
    # With a zero gradient Adam's moments stay 0, so AdamW's step is the decay alone: p <- p (1 - lr wd).
    lr, decay = 0.01, 0.1
    param = _param(1.0, -2.0, 0.5)
    start = param.detach().clone()
    optimizer, _ = _build(["optimizer=AdamW", f"optimizer_args={{lr: {lr}, weight_decay: {decay}}}"] + CONSTANT,
                          [param])
    _step_with_grad(optimizer, param, torch.zeros(3, dtype=torch.float64))
    torch.testing.assert_close(param.detach(), start * (1 - lr * decay), rtol=0, atol=1e-15)
    _step_with_grad(optimizer, param, torch.zeros(3, dtype=torch.float64))
    torch.testing.assert_close(param.detach(), start * (1 - lr * decay) ** 2, rtol=0, atol=1e-15)


def test_adam_weight_decay_is_l2_through_the_adaptive_step() -> None:
    # Adam adds wd * p to the gradient, and that goes through the moment estimates: with a zero
    # gradient the first step is lr * (wd p) / (|wd p| + eps) ~ lr * sign(p), whatever wd is;
    # unlike AdamW's lr * wd * p, it does not scale with the parameter or the decay.
    lr = 0.01
    for decay in (1e-4, 0.1):
        param = _param(1.0, -2.0, 0.5)
        start = param.detach().clone()
        optimizer, _ = _build(["optimizer=Adam", f"optimizer_args={{lr: {lr}, weight_decay: {decay}}}"] + CONSTANT,
                              [param])
        _step_with_grad(optimizer, param, torch.zeros(3, dtype=torch.float64))
        torch.testing.assert_close(start - param.detach(), lr * torch.sign(start), rtol=1e-3, atol=0)
    # without weight decay a zero gradient moves nothing
    param = _param(1.0, -2.0, 0.5)
    start = param.detach().clone()
    optimizer, _ = _build(["optimizer=Adam", "optimizer_args={lr: 0.01}"] + CONSTANT, [param])
    _step_with_grad(optimizer, param, torch.zeros(3, dtype=torch.float64))
    assert torch.equal(param.detach(), start)


def _lrs(scheduler: StepScheduler, steps: int) -> list[float]:
    lrs = [scheduler.get_last_lr()[0]]
    for _ in range(steps):
        scheduler.step()
        lrs.append(scheduler.get_last_lr()[0])
    return lrs


def test_constant_keeps_the_lr() -> None:
    optimizer, scheduler = _build(["optimizer=AdamW", "optimizer_args={lr: 0.003}", "training.epochs=2"]
                                  + CONSTANT, [_param(1.0)])
    assert isinstance(scheduler, Constant)
    assert _lrs(scheduler, 20) == [0.003] * 21  # past total_epochs * steps_per_epoch too
    assert optimizer.param_groups[0]["lr"] == 0.003


def test_constant_linear_warmup_then_flat_and_resume() -> None:
    # warmup_epochs=1 at 4 steps per epoch: step s has lr * min(1, (s + 1) / 4); the first step is not 0.
    optimizer, scheduler = _build(["optimizer=Adam", "optimizer_args={lr: 0.02}", "scheduler=Constant",
                                   "scheduler_args={warmup_epochs: 1}"], [_param(1.0)], steps_per_epoch=4)
    lrs = _lrs(scheduler, 7)
    assert lrs == pytest.approx([0.005, 0.01, 0.015, 0.02, 0.02, 0.02, 0.02, 0.02])
    state = scheduler.state_dict()
    _, fresh = _build(["optimizer=Adam", "optimizer_args={lr: 0.02}", "scheduler=Constant",
                       "scheduler_args={warmup_epochs: 1}"], [_param(1.0)], steps_per_epoch=4)
    assert fresh.get_last_lr() == [pytest.approx(0.005)]
    fresh.load_state_dict(state)
    assert fresh.get_last_lr() == [pytest.approx(0.02)]
    # a fractional warm-up counts whole steps: 0.5 epochs of 4 steps = 2 steps
    _, half = _build(["optimizer=Adam", "optimizer_args={lr: 0.02}", "scheduler=Constant",
                      "scheduler_args={warmup_epochs: 0.5}"], [_param(1.0)], steps_per_epoch=4)
    assert _lrs(half, 3) == pytest.approx([0.01, 0.02, 0.02, 0.02])


def test_unknown_names_and_args_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"config key 'optimizer': unknown optimizer 'Adamw'; "
                                          r"choose one of: Adam, AdamW, SGD"):
        load_config(None, ["optimizer=Adamw"])
    with pytest.raises(ConfigError, match=r"config key 'scheduler': unknown scheduler 'constant'; "
                                          r"choose one of: Constant, Cyclic, MultiStep, WarmupExponential"):
        load_config(None, ["scheduler=constant"])
    with pytest.raises(ConfigError, match=r"unknown config key 'optimizer_args.momentum' for optimizer 'Adam'; "
                                          r"valid: betas, lr, weight_decay"):
        load_config(None, ["optimizer=Adam", "optimizer_args={momentum: 0.9}"])
    with pytest.raises(ConfigError, match=r"unknown config key 'scheduler_args.final_lr' for scheduler 'Constant'"):
        load_config(None, CONSTANT[:1] + ["scheduler_args={final_lr: 0.001}"])
    # the registries themselves (what the trainer calls) name the kind and the choices
    with pytest.raises(KeyError, match=r"unknown optimizer 'Nope'; choose one of: Adam, AdamW, SGD"):
        OPTIMIZERS.build("Nope", params=[_param(1.0)])
    with pytest.raises(KeyError, match=r"unknown scheduler 'Nope'; choose one of: Constant, Cyclic, MultiStep, "
                                       r"WarmupExponential"):
        SCHEDULERS.build("Nope", optimizer=None, steps_per_epoch=1, total_epochs=1)


def _trainer_config(extra: list[str]) -> dict[str, Any]:
    # Overrides of a mapping merge into it, so drop the WarmupExponential args rather than override them.
    tiny = [override for override in TINY_OVERRIDES if not override.startswith("scheduler_args=")]
    return load_config(None, tiny + ["optimizer=AdamW", "optimizer_args={lr: 0.004, weight_decay: 0.05}",
                                               "scheduler=Constant", "scheduler_args={}"] + extra)


def test_trainer_builds_and_trains_with_adamw_and_constant(feature_dir: Path, tmp_path: Path) -> None:
    trainer = Trainer(_trainer_config([]), feature_dir, tmp_path / "built")
    assert type(trainer.optimizer) is torch.optim.AdamW and isinstance(trainer.scheduler, Constant)
    optimised = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert optimised == {id(p) for p in trainer.module.parameters()}  # model and head
    assert trainer.optimizer.param_groups[0]["weight_decay"] == 0.05

    exp = tmp_path / "exp"
    train(_trainer_config(["training.max_steps=3"]), feature_dir, exp)
    state = ckpt.load_checkpoint(ckpt.resolve_checkpoint(exp, "latest"))
    assert state["step"] == 3 and state["scheduler"]["step_count"] == 3
    assert state["optimizer"]["param_groups"][0]["lr"] == 0.004
    assert all("exp_avg_sq" in entry for entry in state["optimizer"]["state"].values())  # Adam moments saved
