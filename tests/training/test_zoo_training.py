"""Exact resume and DDP on gloo for every model architecture and every head, not only ECAPA + AAM.

Each architecture is represented by one preset (``tiny_models.FAMILY_REPRESENTATIVES``: basic and
bottleneck ResNets, RepVGG, CAM++, the TDNN x-vector, ResCNN, ECAPA); its other presets run the same
code at other depths and widths (their shapes and gradients are tested in tests/models).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from speakernet.config import load_config
from speakernet.losses import HEADS
from speakernet.models import MODELS
from speakernet.training import checkpoint as ckpt
from speakernet.training.trainer import train

from tiny_models import FAMILY_REPRESENTATIVES, TINY_MODEL_ARGS
from training_data import TINY_OVERRIDES, free_ports

PAIR_BATCHES = ["data.sampler=speaker_balanced", "data.speakers_per_batch=3", "data.utts_per_speaker=2"]


def _model_overrides(name: str) -> list[str]:
    return [f"model={name}", f"model_args={TINY_MODEL_ARGS[name]}"]


def _head_overrides(name: str) -> list[str]:
    margin = "{margin: 0.2, scale: 16}" if "Margin" in name or name.endswith(("AAMSoftmax", "AMSoftmax")) else "{}"
    extra = PAIR_BATCHES if getattr(HEADS.get(name), "needs_speaker_balanced", False) else []
    schedule = [] if margin != "{}" else ["margin_schedule.enabled=false"]
    return [f"head={name}", f"head_args={margin}", *schedule, *extra]


def _params(exp_dir: Path) -> dict[str, torch.Tensor]:
    state = ckpt.load_checkpoint(ckpt.resolve_checkpoint(exp_dir, "latest"))
    return {f"{part}.{k}": v for part in ("model", "head") for k, v in state[part].items()}


def _assert_resume_is_exact(feature_dir: Path, tmp_path: Path, overrides: list[str]) -> None:
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train(load_config(None, overrides + ["training.max_steps=4"]), feature_dir, straight)
    train(load_config(None, overrides + ["training.max_steps=2"]), feature_dir, resumed)
    train(load_config(None, overrides + ["training.max_steps=4"]), feature_dir, resumed, resume="latest")
    a, b = _params(straight), _params(resumed)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs after a resume at step 2"


def test_every_registered_model_and_head_is_covered() -> None:
    assert set(TINY_MODEL_ARGS) == set(MODELS.names())
    assert set(FAMILY_REPRESENTATIVES) <= set(MODELS.names())


@pytest.mark.parametrize("name", FAMILY_REPRESENTATIVES)
def test_resume_is_exact_for_every_architecture(name: str, feature_dir: Path, tmp_path: Path) -> None:
    _assert_resume_is_exact(feature_dir, tmp_path, TINY_OVERRIDES + _model_overrides(name))


@pytest.mark.parametrize("name", HEADS.names())
def test_resume_is_exact_for_every_head(name: str, feature_dir: Path, tmp_path: Path) -> None:
    _assert_resume_is_exact(feature_dir, tmp_path, TINY_OVERRIDES + _head_overrides(name))


def test_ddp_trains_every_model_family_and_head(feature_dir: Path, tmp_path: Path) -> None:
    import torch.multiprocessing as mp

    from ddp_zoo_worker import run_rank

    base = TINY_OVERRIDES + ["training.max_steps=2", "data.batch_size=3"]
    runs = [(f"model-{name}", base + _model_overrides(name)) for name in FAMILY_REPRESENTATIVES]
    runs += [(f"head-{name}", base + _head_overrides(name)) for name in HEADS.names()]
    ports = free_ports(len(runs))  # one per run
    mp.start_processes(run_rank, args=(2, ports, str(feature_dir), str(tmp_path), runs), nprocs=2, join=True,
                       start_method="spawn")
    for name, _ in runs:
        state = ckpt.load_checkpoint(ckpt.resolve_checkpoint(tmp_path / name, "latest"))
        assert (state["step"], state["world_size"]) == (2, 2), name
