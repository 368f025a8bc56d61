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


def test_a_checkpoint_is_found_by_its_name_with_or_without_pt(tmp_path: Path) -> None:
    directory = tmp_path / "checkpoints"
    directory.mkdir()
    (directory / "epoch_002.pt").write_bytes(b"")
    assert ckpt.resolve_checkpoint(tmp_path, "epoch_002") == directory / "epoch_002.pt"
    assert ckpt.resolve_checkpoint(tmp_path, "epoch_002.pt") == directory / "epoch_002.pt"
    with pytest.raises(FileNotFoundError, match="epoch_003.pt does not exist; .* holds: epoch_002.pt"):
        ckpt.resolve_checkpoint(tmp_path, "epoch_003.pt")


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


def test_a_foreign_torch_file_is_named_with_what_it_holds(tmp_path: Path) -> None:
    torch.save({"layer": torch.nn.Linear(2, 2)}, tmp_path / "module.pt")
    with pytest.raises(ckpt.CheckpointError, match=r"module\.pt cannot be read.*pickles a torch\.nn\.modules\.linear"
                                                   r"\.Linear object\)$"):
        ckpt.load_checkpoint(tmp_path / "module.pt")
    (tmp_path / "junk.pt").write_bytes(b"hello\n" * 50)
    with pytest.raises(ckpt.CheckpointError, match=r"junk\.pt cannot be read.*\((\w+Error) ?[^)]*\)$"):
        ckpt.load_checkpoint(tmp_path / "junk.pt")


def test_a_checkpoint_without_the_needed_entries_names_them(tmp_path: Path) -> None:
    path = tmp_path / "weights.pt"
    ckpt.save_checkpoint({"weights": torch.zeros(2)}, path)
    state = ckpt.load_checkpoint(path)
    with pytest.raises(ckpt.CheckpointError, match=r"weights\.pt has no 'model', 'head', .* entries: resuming a "
                                                   r"training needs .*; use --init"):
        ckpt.require_entries(state, path, ckpt.TRAINING_ENTRIES, "resuming a training", "use --init it")
    ckpt.require_entries(state, path, ("weights",), "anything")  # present: no error
    (tmp_path / "exp" / "checkpoints").mkdir(parents=True)
    for name in ("epoch_001.pt", "epoch_002.pt"):
        ckpt.save_checkpoint({"model": {"w": torch.zeros(2)}, "step": 1}, tmp_path / "exp" / "checkpoints" / name)
    with pytest.raises(ckpt.CheckpointError, match=r"epoch_002\.pt has no 'config', 'speakers' entries: model "
                                                   "averaging needs"):
        ckpt.write_average(tmp_path / "exp", 2)
    ckpt.save_checkpoint({"model": {"w": torch.zeros(2)}, "step": 2, "config": {}, "speakers": []},
                         tmp_path / "exp" / "checkpoints" / "epoch_002.pt")
    with pytest.raises(ckpt.CheckpointError, match=r"epoch_001\.pt has no 'head' entry: model averaging"):
        ckpt.write_average(tmp_path / "exp", 2)


def test_resuming_needs_a_training_checkpoint_and_the_same_model(feature_dir: Path, tmp_path: Path) -> None:
    from speakernet.config import load_config
    from speakernet.training.trainer import train

    from training_data import TINY_OVERRIDES

    exp = tmp_path / "exp"
    train(load_config(None, TINY_OVERRIDES + ["training.max_steps=5"]), feature_dir, exp)
    average = ckpt.write_average(exp, 1)
    config = load_config(None, TINY_OVERRIDES + ["training.max_steps=6"])
    with pytest.raises(ckpt.CheckpointError, match=rf"{average} has no 'optimizer', .*use --init {average}$"):
        train(config, feature_dir, exp, resume="avg1")
    other = load_config(None, TINY_OVERRIDES + ["training.max_steps=6", "model_args.channels=24"])
    with pytest.raises(ckpt.CheckpointError, match=r"epoch_001\.pt does not fit this config \(ECAPA_TDNN .*"
                                                   r"'channels': 24.*resume with the config it was trained with"):
        train(other, feature_dir, exp, resume="latest")
    assert ckpt.resolve_checkpoint(exp, "latest").name == "epoch_001.pt"  # nothing was written
