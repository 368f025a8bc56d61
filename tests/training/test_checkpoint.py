"""Checkpoint files: content checksum, and one named error for every way a file can be damaged."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from speakernet.training import checkpoint as ckpt


def _state() -> dict:
    torch.manual_seed(0)
    return {
        "model": {"w": torch.randn(64, 32), "b": torch.zeros(32, dtype=torch.bfloat16), "n": torch.tensor(3)},
        "rng": ckpt.rng_state(), "step": 12, "config": {"training": {"epochs": 3, "lr": 0.1}, "name": None},
    }


def _tensor_offset(data: bytes, tensor: torch.Tensor) -> int:
    return data.index(tensor.numpy().tobytes()[:64])


def test_round_trip_keeps_every_value(tmp_path: Path) -> None:
    state = _state()
    ckpt.save_checkpoint(state, tmp_path / "a.pt")
    loaded = ckpt.load_checkpoint(tmp_path / "a.pt")
    assert ckpt.CHECKSUM_KEY not in loaded and loaded.keys() == state.keys()
    assert torch.equal(loaded["model"]["w"], state["model"]["w"]) and loaded["config"] == state["config"]


def test_a_flipped_byte_in_the_weights_is_an_error_not_other_scores(tmp_path: Path) -> None:
    state = _state()
    path = tmp_path / "a.pt"
    ckpt.save_checkpoint(state, path)
    data = bytearray(path.read_bytes())
    data[_tensor_offset(bytes(data), state["model"]["w"]) + 17] ^= 0x01  # one bit of one weight
    path.write_bytes(bytes(data))
    assert torch.load(path, weights_only=True)["model"]["w"].ne(state["model"]["w"]).sum() == 1  # torch loads it
    with pytest.raises(ckpt.CheckpointError, match=f"checkpoint {path} is damaged"):
        ckpt.load_checkpoint(path)


@pytest.mark.parametrize("damage", ["empty", "truncated", "not a checkpoint", "a list"])
def test_unreadable_checkpoints_name_the_file(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "a.pt"
    ckpt.save_checkpoint(_state(), path)
    data = path.read_bytes()
    path.write_bytes({"empty": b"", "truncated": data[: len(data) // 2], "not a checkpoint": b"hello\n" * 50,
                      "a list": b""}[damage])
    if damage == "a list":
        torch.save([1, 2], path)
    with pytest.raises(ckpt.CheckpointError, match=f"checkpoint {path}") as info:
        ckpt.load_checkpoint(path)
    assert "weights_only" not in str(info.value)


def test_checkpoint_without_checksum_loads_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    torch.save(_state(), tmp_path / "old.pt")
    with caplog.at_level(logging.WARNING):
        assert ckpt.load_checkpoint(tmp_path / "old.pt")["step"] == 12
    assert "has no checksum" in caplog.text


def test_empty_latest_pointer_is_named(tmp_path: Path) -> None:
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "latest").write_text("")
    with pytest.raises(FileNotFoundError, match="latest is empty"):
        ckpt.resolve_checkpoint(tmp_path, "latest")


def test_weights_that_do_not_fit_the_config_name_both(feature_dir: Path, tmp_path: Path) -> None:
    from speakernet.config import load_config
    from speakernet.training.trainer import train

    from training_data import TINY_OVERRIDES

    exp = tmp_path / "exp"
    train(load_config(None, TINY_OVERRIDES + ["training.max_steps=1"]), feature_dir, exp)
    config = (exp / "config.yaml").read_text()
    (exp / "config.yaml").write_text(config.replace("channels: 16", "channels: 24"))  # a hand edit
    with pytest.raises(ckpt.CheckpointError, match=r"weights do not fit the ECAPA_TDNN that .*config\.yaml"):
        ckpt.load_model(exp, "latest")
