"""Training: it learns, checkpoints are complete, resume is exact, DDP runs on gloo."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from speakernet.config import load_config
from speakernet.training import checkpoint as ckpt
from speakernet.training.trainer import train

from training_data import TINY_OVERRIDES


def _params(exp_dir: Path, which: str = "latest") -> dict[str, torch.Tensor]:
    state = ckpt.load_checkpoint(ckpt.resolve_checkpoint(exp_dir, which))
    return {f"{part}.{k}": v for part in ("model", "head") for k, v in state[part].items()}


def test_training_reduces_loss_and_writes_full_checkpoints(feature_dir: Path, tmp_path: Path) -> None:
    config = load_config(None, TINY_OVERRIDES + ["training.epochs=12"])
    exp = tmp_path / "exp"
    stats = train(config, feature_dir, exp)
    assert (exp / "config.yaml").is_file()
    assert (exp / "spk2label").read_text().splitlines()[0] == "spk00 0"
    init = ckpt.load_checkpoint(ckpt.resolve_checkpoint(exp, "init"))
    final = ckpt.load_checkpoint(ckpt.resolve_checkpoint(exp, "latest"))
    assert init["step"] == 0 and final["step"] == 12 * 5
    for key in ("model", "head", "optimizer", "scheduler", "scaler", "rng", "epoch", "batch_in_epoch", "config"):
        assert key in final
    # six well-separated speakers: the model must fit them
    assert stats["accuracy"] > 80.0
    changed = [k for k in init["model"] if not torch.equal(init["model"][k], final["model"][k])]
    assert changed, "training did not change the weights"


@pytest.mark.parametrize("stop_at", [3, 5, 7])  # mid-epoch, end of epoch, mid-epoch after a boundary
def test_resume_is_exact(feature_dir: Path, tmp_path: Path, stop_at: int) -> None:
    total = 12
    straight = tmp_path / "straight"
    train(load_config(None, TINY_OVERRIDES + [f"training.max_steps={total}"]), feature_dir, straight)

    resumed = tmp_path / "resumed"
    train(load_config(None, TINY_OVERRIDES + [f"training.max_steps={stop_at}"]), feature_dir, resumed)
    assert ckpt.load_checkpoint(ckpt.resolve_checkpoint(resumed, "latest"))["step"] == stop_at
    train(load_config(None, TINY_OVERRIDES + [f"training.max_steps={total}"]), feature_dir, resumed, resume="latest")

    a, b = _params(straight), _params(resumed)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs after resume at step {stop_at}"
    sa = ckpt.load_checkpoint(ckpt.resolve_checkpoint(straight, "latest"))
    sb = ckpt.load_checkpoint(ckpt.resolve_checkpoint(resumed, "latest"))
    assert sa["scheduler"] == sb["scheduler"]
    assert (sa["epoch"], sa["batch_in_epoch"], sa["step"]) == (sb["epoch"], sb["batch_in_epoch"], sb["step"])


def test_resume_from_missing_checkpoint_names_it(feature_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="latest"):
        train(load_config(None, TINY_OVERRIDES), feature_dir, tmp_path / "never", resume="latest")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_ddp_on_gloo_two_processes(feature_dir: Path, tmp_path: Path) -> None:
    conf = tmp_path / "tiny.yaml"
    conf.write_text("training: {epochs: 2}\n")
    exp = tmp_path / "exp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
        f"--master_port={_free_port()}", "-m", "speakernet.bin.train", "--conf", str(conf),
        "--data-dir", str(feature_dir), "--exp-dir", str(exp), "--device", "cpu", *TINY_OVERRIDES, "training.epochs=2",
        "data.batch_size=3",
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "(1/2)" in result.stderr and "(0/2)" in result.stderr  # both ranks logged
    assert "DDP replicas in sync" in result.stderr
    final = ckpt.load_checkpoint(ckpt.resolve_checkpoint(exp, "latest"))
    assert final["world_size"] == 2
    # 30 utterances, batches of 3 per process on 2 processes: 5 steps per epoch
    assert final["step"] == 10


def test_checkpoint_names_pruning_and_averaging(feature_dir: Path, tmp_path: Path) -> None:
    exp = tmp_path / "exp"
    train(load_config(None, TINY_OVERRIDES + ["training.epochs=4", "training.keep_checkpoints=3",
                                              "training.checkpoint_interval=2"]), feature_dir, exp)
    names = sorted(p.name for p in (exp / "checkpoints").glob("*.pt"))
    # 5 steps per epoch, mid-epoch checkpoints every 2 steps: only the newest mid-epoch one stays
    assert names == ["epoch_002.pt", "epoch_003.pt", "epoch_004.pt", "init.pt", "step_00000018.pt"]
    assert (exp / "checkpoints" / "latest").read_text().strip() == "epoch_004.pt"

    path = ckpt.write_average(exp, 2)
    assert path.name == "avg2.pt"
    a = ckpt.load_checkpoint(exp / "checkpoints" / "epoch_003.pt")["model"]
    b = ckpt.load_checkpoint(exp / "checkpoints" / "epoch_004.pt")["model"]
    averaged = ckpt.load_checkpoint(path)["model"]
    for key, value in averaged.items():
        if value.is_floating_point():
            assert torch.allclose(value, (a[key] + b[key]) / 2, atol=1e-6), key
        else:
            assert torch.equal(value, b[key]), key
    model, _ = ckpt.load_model(exp, "avg2")
    assert torch.equal(model.state_dict()[next(iter(averaged))], next(iter(averaged.values())))
    with pytest.raises(ValueError, match="keeps 3 end-of-epoch checkpoints"):
        ckpt.write_average(exp, 4)


def test_non_finite_gradients_skip_the_update(feature_dir: Path, tmp_path: Path, monkeypatch) -> None:
    from speakernet.training.trainer import Trainer

    trainer = Trainer(load_config(None, TINY_OVERRIDES + ["training.max_steps=1"]), feature_dir, tmp_path / "exp")
    before = {k: v.clone() for k, v in trainer.module.model.state_dict().items()}
    original = trainer.ddp_module.forward

    def poisoned(feats, labels):
        loss, logits = original(feats, labels)
        return loss * float("nan"), logits

    monkeypatch.setattr(trainer.ddp_module, "forward", poisoned)
    trainer.train()
    after = trainer.module.model.state_dict()
    for key, value in before.items():
        if value.is_floating_point() and "running" not in key:
            assert torch.equal(value, after[key]), f"{key} changed by a NaN step"


def test_loader_workers_do_not_change_training(feature_dir: Path, tmp_path: Path) -> None:
    # crops depend only on the batch plan, so worker processes give bit-identical training
    runs = {}
    for workers in (0, 2):
        exp = tmp_path / f"workers{workers}"
        train(load_config(None, TINY_OVERRIDES + ["training.max_steps=4", f"data.num_workers={workers}"]),
              feature_dir, exp)
        runs[workers] = _params(exp)
    for key in runs[0]:
        assert torch.equal(runs[0][key], runs[2][key]), key
