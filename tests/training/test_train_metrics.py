"""The trainer's ``train_metrics.jsonl``: one line per logged interval, exact across a resume."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from speakernet.config import load_config
from speakernet.training.train_metrics import METRICS_NAME, truncate_train_metrics
from speakernet.training.trainer import train

from training_data import TINY_OVERRIDES, uninterrupted_run

KEYS = {"epoch", "progress", "step", "loss", "accuracy", "lr", "margin", "utts_per_s", "data_wait", "seconds"}
TIMING_KEYS = ("seconds", "utts_per_s", "data_wait")  # wall-clock figures, allowed to differ between runs


def _records(exp_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (exp_dir / METRICS_NAME).read_text().splitlines()]


def _without_timing(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in record.items() if k not in TIMING_KEYS} for record in records]


def test_metrics_file_has_one_line_per_logged_interval(feature_dir: Path, tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    exp = tmp_path / "exp"
    with caplog.at_level("INFO", logger="speakernet.training.trainer"):
        train(load_config(None, TINY_OVERRIDES), feature_dir, exp)  # 3 epochs of 5 steps, log every 2
    # every log line says how far the training is and when it should end; so does each epoch's end
    assert re.search(r"epoch 1 batch 2/5 step 2/15: .*, ETA (\d+ s|\d+ min \d\d s)$", caplog.text, re.M)
    assert re.search(r"epoch 2 of 3 done in \d+ s; ETA \d+ s$", caplog.text, re.M)
    records = _records(exp)
    steps = [r["step"] for r in records]
    # every 2nd step plus each epoch's last step
    assert steps == [2, 4, 5, 6, 8, 10, 12, 14, 15]
    for record in records:
        assert set(record) == KEYS
        assert math.isfinite(record["loss"]) and record["loss"] > 0
        assert 0.0 <= record["accuracy"] <= 100.0 and record["lr"] > 0
        assert record["margin"] is None or 0.0 <= record["margin"] <= 0.2
        assert record["utts_per_s"] > 0 and record["seconds"] > 0
        assert record["epoch"] == math.floor(record["progress"] - 1e-9) + 1  # 1-based, an epoch's end in it
    assert [r["progress"] for r in records][:3] == [0.4, 0.8, 1.0] and records[-1]["progress"] == 3.0
    assert all(b["seconds"] >= a["seconds"] for a, b in zip(records, records[1:]))
    assert records[-1]["margin"] == pytest.approx(0.2)  # fixed from epoch 2 on

    # a fresh (not resumed) training into the same exp dir is refused, or (overwrite) starts the file again
    with pytest.raises(ValueError, match=r"already holds a training \(epoch_001.pt.*--resume.*--overwrite"):
        train(load_config(None, TINY_OVERRIDES + ["training.max_steps=4"]), feature_dir, exp)
    assert [r["step"] for r in _records(exp)] == steps
    train(load_config(None, TINY_OVERRIDES + ["training.max_steps=4"]), feature_dir, exp, overwrite=True)
    assert sorted(p.name for p in (exp / "checkpoints").iterdir()) == ["init.pt", "latest", "step_00000004.pt"]
    assert [r["step"] for r in _records(exp)] == [2, 4]


TOTAL_STEPS = 12


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return uninterrupted_run(tmp_path_factory.mktemp("metrics"), TOTAL_STEPS)


@pytest.mark.parametrize("stop_at", [3, 4, 5])  # off the log grid, on it, end of epoch
def test_resumed_metrics_equal_uninterrupted(straight_run: tuple[Path, Path], tmp_path: Path, stop_at: int) -> None:
    total, (feature_dir, straight) = TOTAL_STEPS, straight_run
    resumed = tmp_path / "resumed"
    train(load_config(None, TINY_OVERRIDES + [f"training.max_steps={stop_at}"]), feature_dir, resumed)
    assert _records(resumed)[-1]["step"] == stop_at  # the stop logs its (partial) interval
    # what a run killed after its checkpoint leaves behind: later lines and a half-written one
    with open(resumed / METRICS_NAME, "a") as handle:
        handle.write(json.dumps({**_records(resumed)[-1], "step": stop_at + 1, "loss": 99.0}) + "\n")
        handle.write('{"epoch": 2, "progr')
    train(load_config(None, TINY_OVERRIDES + [f"training.max_steps={total}"]), feature_dir, resumed, resume="latest")

    a, b = _records(straight), _records(resumed)
    assert [r["step"] for r in a] == [2, 4, 5, 6, 8, 10, 12]
    assert _without_timing(a) == _without_timing(b)
    # training time adds up over the two runs rather than restarting from zero
    assert all(y["seconds"] >= x["seconds"] for x, y in zip(b, b[1:]))


def test_truncate_train_metrics(tmp_path: Path) -> None:
    path = tmp_path / METRICS_NAME
    assert truncate_train_metrics(path, 3) == 0.0 and not path.exists()
    path.write_text("".join(json.dumps({"step": s, "seconds": s * 1.5}) + "\n" for s in (1, 2, 3, 4)) + "{bad\n")
    assert truncate_train_metrics(path, 3, keep_at_step=False) == 3.0
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [1, 2]
    assert truncate_train_metrics(path, 0) == 0.0 and path.read_text() == ""
