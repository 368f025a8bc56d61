"""Training: it learns, checkpoints are complete, resume is exact, DDP runs on gloo."""

from __future__ import annotations

import json
import logging
import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from speakernet.config import load_config
from speakernet.training import checkpoint as ckpt
from speakernet.training.train_metrics import METRICS_NAME
from speakernet.training.trainer import train

from training_data import TINY_OVERRIDES, free_ports, make_feature_dir, uninterrupted_run


def _params(exp_dir: Path, which: str = "latest") -> dict[str, torch.Tensor]:
    state = ckpt.load_checkpoint(ckpt.resolve_checkpoint(exp_dir, which))
    return {f"{part}.{k}": v for part in ("model", "head") for k, v in state[part].items()}


def test_training_reduces_loss_and_writes_full_checkpoints(feature_dir: Path, tmp_path: Path) -> None:
    config = load_config(None, TINY_OVERRIDES + ["training.epochs=12"])
    exp = tmp_path / "exp"
    can_flush = torch.set_flush_denormal(False)
    try:
        stats = train(config, feature_dir, exp)
        # the trainer flushes subnormals (precision.flush_denormals: 3x faster with pretrained weights)
        assert not can_flush or (torch.tensor([1e-39]) * 1.0).item() == 0.0
    finally:
        torch.set_flush_denormal(False)
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


RESUME_TOTAL_STEPS = 12


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return uninterrupted_run(tmp_path_factory.mktemp("resume"), RESUME_TOTAL_STEPS)


@pytest.mark.parametrize("stop_at", [3, 5, 7])  # mid-epoch, end of epoch, mid-epoch after a boundary
def test_resume_is_exact(straight_run: tuple[Path, Path], tmp_path: Path, stop_at: int) -> None:
    total, (feature_dir, straight) = RESUME_TOTAL_STEPS, straight_run
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


def test_non_finite_gradients_skip_the_update(feature_dir: Path, tmp_path: Path, monkeypatch, caplog) -> None:
    from speakernet.training.trainer import Trainer

    trainer = Trainer(load_config(None, TINY_OVERRIDES + ["training.max_steps=3"]), feature_dir, tmp_path / "exp")

    def weights() -> dict[str, torch.Tensor]:
        return {k: v.clone() for k, v in trainer.module.model.state_dict().items()
                if v.is_floating_point() and "running" not in k}

    snapshots = []  # the weights each forward pass sees
    original = trainer.ddp_module.forward

    def poisoned(feats, labels):
        snapshots.append(weights())
        loss, logits = original(feats, labels)
        return (loss * float("nan") if len(snapshots) == 1 else loss), logits  # only the first step is bad

    monkeypatch.setattr(trainer.ddp_module, "forward", poisoned)
    with caplog.at_level(logging.WARNING, logger="speakernet.training.trainer"):
        trainer.train()
    assert trainer.step == 3 and len(snapshots) == 3  # every step ran, the bad one included
    skipped = [r.getMessage() for r in caplog.records if "non-finite gradient norm" in r.getMessage()]
    assert skipped == ["step 0: non-finite gradient norm, the update is skipped"]
    before, after = snapshots[0], weights()
    for key, value in before.items():
        assert torch.equal(value, snapshots[1][key]), f"{key} changed by a NaN step"
        assert torch.isfinite(after[key]).all(), key
    # the good steps after it do train
    assert any(not torch.equal(snapshots[1][k], snapshots[2][k]) for k in before)
    assert any(not torch.equal(before[k], after[k]) for k in before)


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


def test_resume_restores_every_rng_state(feature_dir: Path, tmp_path: Path) -> None:
    from speakernet.training.trainer import Trainer

    exp = tmp_path / "exp"
    trainer = Trainer(load_config(None, TINY_OVERRIDES + ["training.max_steps=3"]), feature_dir, exp)
    # other RNG states than the trainer's own seeding gives, as a component drawing numbers would leave
    torch.manual_seed(7)
    np.random.seed(99)
    random.seed(1234)
    trainer.train()
    saved = ckpt.load_checkpoint(ckpt.resolve_checkpoint(exp, "latest"))["rng"]
    expected = (torch.get_rng_state(), np.random.get_state(), random.getstate())
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)

    Trainer(load_config(None, TINY_OVERRIDES + ["training.max_steps=6"]), feature_dir, exp, resume="latest")
    assert torch.equal(torch.get_rng_state(), expected[0]) and torch.equal(saved["torch"], expected[0])
    name, keys, *rest = np.random.get_state()
    assert name == expected[1][0] and np.array_equal(keys, expected[1][1]) and tuple(rest) == expected[1][2:]
    assert random.getstate() == expected[2]


class DropoutEcapa(nn.Module):
    """ECAPA-TDNN behind input dropout: training draws from the global torch RNG at every step."""

    def __init__(self, feat_dim: int, dropout: float = 0.3, **ecapa_args):
        super().__init__()
        from speakernet.models import build_model

        self.ecapa = build_model("ECAPA_TDNN", feat_dim=feat_dim, **ecapa_args)
        self.dropout = nn.Dropout(dropout)
        self.embed_dim = self.ecapa.embed_dim

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.ecapa(self.dropout(feats))


@pytest.fixture
def dropout_model(monkeypatch) -> list[str]:
    """Registers DropoutEcapa for this test only; returns the overrides that select it."""
    from speakernet.models import MODELS

    monkeypatch.setitem(MODELS._table, "DropoutEcapa", DropoutEcapa)
    return ["model=DropoutEcapa"] + TINY_OVERRIDES  # first: a new model name resets model_args


@pytest.mark.parametrize("stop_at", [
    5,  # end of epoch 1
    3,  # mid-epoch: the resumed run builds one DataLoader more, which must not draw from the model's RNG
])
def test_resume_is_exact_when_training_draws_random_numbers(feature_dir: Path, tmp_path: Path,
                                                            dropout_model: list[str], stop_at: int) -> None:
    overrides = dropout_model
    assert load_config(None, overrides)["model_args"]["channels"] == 16  # the tiny model, behind dropout
    total = 6  # 5 steps per epoch
    straight = tmp_path / "straight"
    train(load_config(None, overrides + [f"training.max_steps={total}"]), feature_dir, straight)
    resumed = tmp_path / "resumed"
    train(load_config(None, overrides + [f"training.max_steps={stop_at}"]), feature_dir, resumed)
    train(load_config(None, overrides + [f"training.max_steps={total}"]), feature_dir, resumed, resume="latest")
    a, b = _params(straight), _params(resumed)
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs after resume at step {stop_at}"


def test_feat_dim_must_match_the_features(tmp_path: Path) -> None:
    from speakernet.features.fbank import FbankConfig
    from speakernet.features.frontend import save_frontend
    from speakernet.features.vad import VadConfig

    data = make_feature_dir(tmp_path / "corpus", num_speakers=2, utts_per_speaker=3)
    save_frontend(data, FbankConfig(num_mel_bins=24), VadConfig())
    config = load_config(None, TINY_OVERRIDES + ["training.max_steps=1"])  # data.feat_dim=20
    with pytest.raises(ValueError, match=re.escape(f"data.feat_dim=20 but the features of {data} have 24 mel bins")):
        train(config, data, tmp_path / "exp")
    assert not (tmp_path / "exp" / "checkpoints").exists()  # refused before anything was trained or saved

    # without a front-end record, the model refuses the first batch, naming both sizes
    other = make_feature_dir(tmp_path / "corpus24", num_speakers=2, utts_per_speaker=3, feat_dim=24)
    with pytest.raises(ValueError, match=r"expects feats \[batch, frames, 20\], got \[6, 50, 24\]"):
        train(config, other, tmp_path / "exp24")


def test_one_speaker_or_too_few_utterances_are_refused_with_the_fix(tmp_path: Path) -> None:
    one = make_feature_dir(tmp_path / "one", num_speakers=1, utts_per_speaker=4)
    config = load_config(None, TINY_OVERRIDES + ["training.max_steps=1", "data.batch_size=2"])
    with pytest.raises(ValueError, match=r"one/data/utt2spk: training needs at least 2 speakers, got 1"):
        train(config, one, tmp_path / "exp1")
    few = make_feature_dir(tmp_path / "few", num_speakers=2, utts_per_speaker=2)
    config = load_config(None, TINY_OVERRIDES + ["training.max_steps=1", "data.batch_size=8"])
    # the suggestion is a batch that fits (4 utterances), not the size that failed
    with pytest.raises(ValueError, match=r"4 utterances cannot fill one batch of 8 .* data.batch_size=4\)"):
        train(config, few, tmp_path / "exp2")


def test_ddp_resume_is_exact(feature_dir: Path, tmp_path: Path) -> None:
    import torch.multiprocessing as mp

    from ddp_resume_worker import run_rank

    # 30 utterances, batches of 3 on 2 processes: 5 steps per epoch; stop mid-epoch 1
    overrides = TINY_OVERRIDES + ["training.epochs=2", "data.batch_size=3"]
    ports = free_ports(3)
    mp.start_processes(run_rank, args=(2, ports, str(feature_dir), str(tmp_path), overrides, 10, 3), nprocs=2,
                       join=True, start_method="spawn")
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    sa = ckpt.load_checkpoint(ckpt.resolve_checkpoint(straight, "latest"))
    sb = ckpt.load_checkpoint(ckpt.resolve_checkpoint(resumed, "latest"))
    assert sa["world_size"] == sb["world_size"] == 2
    position = ("epoch", "batch_in_epoch", "step")
    assert [sa[k] for k in position] == [sb[k] for k in position] == [1, 5, 10]  # the end of epoch 2
    stopped = ckpt.load_checkpoint(resumed / "checkpoints" / "step_00000003.pt")  # the interrupted run's last
    assert (stopped["step"], stopped["world_size"]) == (3, 2)
    a, b = _params(straight), _params(resumed)
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs after a DDP resume at step 3"
    assert sa["optimizer"]["state"].keys() == sb["optimizer"]["state"].keys()
    for key, state in sa["optimizer"]["state"].items():
        assert torch.equal(state["momentum_buffer"], sb["optimizer"]["state"][key]["momentum_buffer"])
    # the logged losses (all-reduced over the ranks) are those of the uninterrupted run too
    records = [[{k: v for k, v in json.loads(line).items() if k not in ("seconds", "utts_per_s", "data_wait")}
                for line in (exp / METRICS_NAME).read_text().splitlines()] for exp in (straight, resumed)]
    assert [r["step"] for r in records[0]] == [2, 4, 5, 6, 8, 10]
    # The interval open at the stop is resumed from its cross-rank mean, so its loss sum is added
    # in another order: equal up to rounding, everything else exactly.
    for straight_record, resumed_record in zip(*records):
        assert resumed_record.pop("loss") == pytest.approx(straight_record.pop("loss"), rel=1e-9, abs=0)
    assert records[0] == records[1]


def test_python_random_is_seeded_like_torch_and_numpy(feature_dir: Path, tmp_path: Path) -> None:
    import random

    import numpy as np

    from speakernet.training.trainer import Trainer

    draws = []
    for run in range(2):
        random.seed(run)  # whatever the process did before
        np.random.seed(run)
        Trainer(load_config(None, TINY_OVERRIDES), feature_dir, tmp_path / f"exp{run}")
        draws.append((random.random(), float(np.random.random()), float(torch.rand(1))))
    assert draws[0] == draws[1]


def _error_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    return [line for line in captured.err.splitlines() if " ERROR " in line]


def test_cli_names_the_config_for_rejected_arguments_and_refuses_a_second_fresh_training(
    feature_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from speakernet.bin import train as train_bin
    from speakernet.utils.logging import setup_logging

    setup_logging()
    conf = tmp_path / "conf.yaml"
    conf.write_text("training: {epochs: 1}\n")
    exp = tmp_path / "exp"
    args = ["--conf", str(conf), "--data-dir", str(feature_dir), "--exp-dir", str(exp), "--device", "cpu",
            *TINY_OVERRIDES]
    assert train_bin.main(args + ["optimizer_args.lr=-1"]) == 2
    [line] = _error_lines(capsys)
    assert line.endswith(f"{conf} + command-line overrides: config key 'optimizer_args' (optimizer_args of "
                         "optimizer 'SGD' {'lr': -1}): Invalid learning rate: -1"), line
    assert train_bin.main(args + ["training.max_steps=2"]) == 0
    capsys.readouterr()
    assert train_bin.main(args + ["training.max_steps=3"]) == 1
    [line] = _error_lines(capsys)
    assert f"{exp} already holds a training (latest, step_00000002.pt): add --resume" in line, line
    assert train_bin.main(args + ["training.max_steps=3", "--resume"]) == 0
    assert ckpt.load_checkpoint(ckpt.resolve_checkpoint(exp, "latest"))["step"] == 3
    # an override right after --resume is an override, not a checkpoint name
    assert train_bin.main(args + ["--resume", "training.max_steps=4"]) == 0
    assert ckpt.load_checkpoint(ckpt.resolve_checkpoint(exp, "latest"))["step"] == 4


def test_utterances_left_out_are_counted_and_listed_in_the_exp_dir(feature_dir: Path, tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    import kaldiio

    from speakernet.data.kaldi_dir import read_scp
    from speakernet.utils.dropped import TRAIN_DROPPED_NAME, read_dropped

    voiced = {utt: int((kaldiio.load_mat(spec) > 0.5).sum()) for utt, spec in read_scp(feature_dir / "vad.scp").items()}
    short = {utt: frames for utt, frames in voiced.items() if frames < 150}
    assert 0 < len(short) < len(voiced)
    exp = tmp_path / "exp"
    with caplog.at_level(logging.INFO, logger="speakernet.training.trainer"):
        train(load_config(None, TINY_OVERRIDES + ["data.min_frames=150", "training.max_steps=1"]), feature_dir, exp)
    path = exp / TRAIN_DROPPED_NAME
    assert read_dropped(path) == {utt: f"too_few_voiced_frames {frames}<150" for utt, frames in sorted(short.items())}
    assert all(line.count("\t") == 1 for line in path.read_text().splitlines())
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "left out" in r.getMessage()]
    assert len(warnings) == 1
    assert f"{len(short)} of {len(voiced)} utterances left out ({len(short)} too_few_voiced_frames)" in warnings[0]
    assert str(path) in warnings[0] and "lower data.min_frames" in warnings[0]

    # nothing left out: the list is there, empty, and no warning
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="speakernet.training.trainer"):
        train(load_config(None, TINY_OVERRIDES + ["training.max_steps=1"]), feature_dir, exp, overwrite=True)
    assert path.read_text() == ""
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and "left out" in r.getMessage()]


def test_training_threads_take_the_config_then_omp_num_threads_then_the_cpus(monkeypatch) -> None:
    import os

    from speakernet.training.train_data import training_threads

    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert training_threads(5) == 5  # training.num_threads wins
    assert training_threads(0) == 3 and training_threads(0, world_size=2) == 3  # 0: OMP_NUM_THREADS, per process
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert training_threads(0) == max(1, os.cpu_count() or 1)
    assert training_threads(0, world_size=64) == 1
    for bad in ("0", "two"):
        monkeypatch.setenv("OMP_NUM_THREADS", bad)
        with pytest.raises(ValueError, match=f"OMP_NUM_THREADS='{bad}' is not a positive thread count"):
            training_threads(0)
