"""Training from shards (data.source: shards): the config's keys, a tiny training, and an exact resume."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from training_data import AUDIO_OVERRIDES, free_ports, make_audio_dir, make_shard_dir

from speakernet.config import ConfigError, load_config
from speakernet.data.shards.format import ShardError
from speakernet.features.frontend import load_frontend
from speakernet.training import checkpoint as ckpt
from speakernet.training.trainer import train
from speakernet.utils.dropped import TRAIN_DROPPED_NAME, read_dropped

SHARD_OVERRIDES = [o for o in AUDIO_OVERRIDES if o != "data.source=audio"] + [
    "data.source=shards", "data.shard_lanes=2", "data.shuffle_buffer=4", "data.batch_size=2"]


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_shard_dir(tmp_path_factory.mktemp("shard_training"))


def test_config_keys_of_training_from_shards() -> None:
    config = load_config(None, SHARD_OVERRIDES)
    assert config["data"]["source"] == "shards" and config["data"]["shard_lanes"] == 2
    with pytest.raises(ConfigError, match="'data.shard_lanes' is for data.source: shards"):
        load_config(None, ["data.shard_lanes=8"])
    with pytest.raises(ConfigError, match="data.use_vad: false"):
        load_config(None, ["data.source=shards"])
    with pytest.raises(ConfigError, match="set data.sampler: random"):
        load_config(None, SHARD_OVERRIDES + ["data.sampler=speaker_balanced"])
    with pytest.raises(ConfigError, match="data.num_workers=3 must divide data.shard_lanes=2"):
        load_config(None, SHARD_OVERRIDES + ["data.num_workers=3"])


def test_a_training_from_shards_runs_and_resumes_exactly(shard_dir: Path, tmp_path: Path) -> None:
    overrides = SHARD_OVERRIDES + ["data.speed_perturb=true", "data.spec_augment.probability=0.5",
                                   "training.log_interval=1"]
    total, stop_at = 10, 4  # 8 batches an epoch: the stop is mid-epoch, the end in the second epoch
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    stats = train(load_config(None, overrides + [f"training.max_steps={total}", "data.num_workers=2"]), shard_dir,
                  straight)
    assert np.isfinite(stats["loss"])
    assert load_frontend(straight)[0].num_mel_bins == 20
    assert read_dropped(straight / TRAIN_DROPPED_NAME) == {"spk00-short": "too_few_frames 18<40"}
    train(load_config(None, overrides + [f"training.max_steps={stop_at}"]), shard_dir, resumed)
    train(load_config(None, overrides + [f"training.max_steps={total}"]), shard_dir, resumed, resume="latest")
    a, b = (ckpt.load_checkpoint(ckpt.resolve_checkpoint(exp, "latest")) for exp in (straight, resumed))
    assert a["step"] == b["step"] == total and a["epoch"] == 1
    for part in ("model", "head"):
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), f"{part}.{key} differs after resume at step {stop_at}"


def test_a_training_without_shards_list_says_how_to_make_it(tmp_path: Path) -> None:
    data_dir = make_audio_dir(tmp_path, num_speakers=2, utts_per_speaker=2)
    with pytest.raises(ShardError, match=r"shards.list does not exist: .*make_shards --data-dir"):
        train(load_config(None, SHARD_OVERRIDES + ["training.max_steps=1"]), data_dir, tmp_path / "exp")


def test_a_ddp_training_from_shards_resumes_exactly(shard_dir: Path, tmp_path: Path) -> None:
    import torch.multiprocessing as mp
    from ddp_resume_worker import run_rank

    # 16 utterances over 2 ranks x 2 lanes: 2 batches of 2 a lane, 4 steps an epoch; stop mid-epoch 1
    overrides = SHARD_OVERRIDES + ["training.epochs=2"]
    ports = free_ports(3)
    mp.start_processes(run_rank, args=(2, ports, str(shard_dir), str(tmp_path), overrides, 8, 3), nprocs=2,
                       join=True, start_method="spawn")
    a, b = (ckpt.load_checkpoint(ckpt.resolve_checkpoint(tmp_path / name, "latest")) for name in ("straight",
                                                                                                "resumed"))
    assert (a["world_size"], a["epoch"], a["batch_in_epoch"], a["step"]) == (2, 1, 4, 8)
    assert ckpt.load_checkpoint(tmp_path / "resumed" / "checkpoints" / "step_00000003.pt")["step"] == 3
    for part in ("model", "head"):
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), f"{part}.{key} differs after a DDP resume at step 3"


def test_another_world_size_over_shards_goes_on_at_the_next_epoch(shard_dir: Path, tmp_path: Path, caplog) -> None:
    exp = tmp_path / "exp"
    train(load_config(None, SHARD_OVERRIDES + ["training.max_steps=3"]), shard_dir, exp)  # 8 steps an epoch
    path = ckpt.resolve_checkpoint(exp, "latest")
    ckpt.save_checkpoint({**ckpt.load_checkpoint(path), "world_size": 2}, path)  # as 2 processes wrote it
    with caplog.at_level(logging.INFO, logger="speakernet.training"):
        train(load_config(None, SHARD_OVERRIDES + ["training.max_steps=5"]), shard_dir, exp, resume="latest")
    assert any("the rest of epoch 1 (after 3 batch(es) per process) is left out and epoch 2 starts" in r.getMessage()
               for r in caplog.records)
    state = ckpt.load_checkpoint(ckpt.resolve_checkpoint(exp, "latest"))
    # epoch 2's first 2 batches, and the lr schedule at the same point: 8 + 2 steps of this world size
    assert (state["epoch"], state["batch_in_epoch"], state["step"]) == (1, 2, 5)
    assert state["scheduler"]["step_count"] == 10
