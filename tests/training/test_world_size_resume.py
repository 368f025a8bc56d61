"""Resuming a training on another number of processes (torchrun, gloo): the epoch goes on where it stopped."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

from speakernet.training import checkpoint as ckpt

from training_data import TINY_OVERRIDES
from world_size_worker import run

WORKER = Path(__file__).with_name("world_size_worker.py")
# 30 utterances in batches of 3: 10 global batches an epoch, 5 steps on 2 processes, 10 on 1.
OVERRIDES = TINY_OVERRIDES + ["training.epochs=2", "data.batch_size=3"]


def _torchrun(record: Path, data: Path, exp: Path, overrides: list[str], resume: bool = False) -> str:
    """Runs the recording worker on 2 processes; returns its log (stderr)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(WORKER),
               str(record), str(data), str(exp), *(["--resume", "latest"] if resume else []), *overrides]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stderr


def _seen(record: Path) -> dict[int, Counter]:
    """Per epoch, how often each utterance index was trained on (all ranks, all runs)."""
    seen: dict[int, Counter] = {}
    for path in record.glob("seen.*"):
        for line in path.read_text().splitlines():
            epoch, index = map(int, line.split())
            seen.setdefault(epoch, Counter())[index] += 1
    return seen


def _position(exp: Path) -> tuple[int, int, int, int, int]:
    state = ckpt.load_checkpoint(ckpt.resolve_checkpoint(exp, "latest"))
    return (state["epoch"], state["batch_in_epoch"], state["step"], state["world_size"],
            state["scheduler"]["step_count"])


def _check_every_utterance_once(record: Path) -> None:
    seen = _seen(record)
    assert sorted(seen) == [0, 1]
    for epoch, counts in seen.items():
        assert sorted(counts) == list(range(30)), f"epoch {epoch} missed utterances"
        assert set(counts.values()) == {1}, f"epoch {epoch} trained on some utterances twice"


def test_two_processes_stopped_mid_epoch_resume_on_one(feature_dir: Path, tmp_path: Path, caplog) -> None:
    record, exp = tmp_path / "record", tmp_path / "exp"
    record.mkdir()
    _torchrun(record, feature_dir, exp, OVERRIDES + ["training.max_steps=2"])  # 4 of the epoch's 10 batches
    assert _position(exp) == (0, 2, 2, 2, 2)
    # checkpoints come from rank 0 only: rank 1 wrote (or removed) none
    assert not (record / "writes.1").exists()
    written = (record / "writes.0").read_text()
    assert "init.pt" in written and "step_00000002.pt" in written and "latest" in written

    with caplog.at_level(logging.INFO, logger="speakernet.training"):
        run(record, feature_dir, exp, OVERRIDES + ["training.max_steps=5"], resume="latest")  # 3 steps on
    mapped = [r.getMessage() for r in caplog.records if "resuming with 1" in r.getMessage()]
    assert len(mapped) == 1 and "global batch 4 of 10 of epoch 1" in mapped[0], mapped
    assert "goes on for 6 step(s) of 1 batch(es)" in mapped[0]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and r.name.endswith(".trainer")]
    assert _position(exp) == (0, 3, 5, 1, 7)  # 3 steps into the rest of epoch 1; the schedule at its step 7
    run(record, feature_dir, exp, OVERRIDES, resume="latest")  # the same world size: the epoch's rest
    # 2 steps on 2 processes, 6 on one to the end of epoch 1, 10 in epoch 2; the lr schedule is where a
    # one-process training's would be at the end (2 epochs of 10 steps)
    assert _position(exp) == (1, 10, 18, 1, 20)
    _check_every_utterance_once(record)


def test_one_process_stopped_mid_epoch_resumes_on_two(feature_dir: Path, tmp_path: Path) -> None:
    record, exp = tmp_path / "record", tmp_path / "exp"
    record.mkdir()
    run(record, feature_dir, exp, OVERRIDES + ["training.max_steps=4"])
    assert _position(exp) == (0, 4, 4, 1, 4)
    log = _torchrun(record, feature_dir, exp, OVERRIDES, resume=True)
    assert "resuming with 2" in log and "global batch 4 of 10 of epoch 1, which goes on for 3 step(s)" in log
    assert "DDP replicas in sync" in log
    # 4 steps on one process, 3 on two to the end of epoch 1, 5 in epoch 2; the schedule ends at 2 x 5 steps
    assert _position(exp) == (1, 5, 12, 2, 10)
    assert not (record / "writes.1").exists()
    _check_every_utterance_once(record)


def test_a_finished_epoch_resumes_at_the_next_one(feature_dir: Path, tmp_path: Path, caplog) -> None:
    record, exp = tmp_path / "record", tmp_path / "exp"
    record.mkdir()
    run(record, feature_dir, exp, OVERRIDES + ["training.max_steps=5"])
    # What 2 processes write at the end of their epoch 1 (5 steps of 2 batches): this checkpoint, but for
    # its world size, which is all that the position mapping reads.
    path = ckpt.resolve_checkpoint(exp, "latest")
    state = ckpt.load_checkpoint(path)
    ckpt.save_checkpoint({**state, "world_size": 2}, path)
    for seen in record.glob("seen.*"):  # the 5 steps of 1 process saw half of epoch 1: forget them
        seen.unlink()
    with caplog.at_level(logging.INFO, logger="speakernet.training"):
        run(record, feature_dir, exp, OVERRIDES, resume="latest")
    assert any("at the end of epoch 1: epoch 2 starts at global batch 0" in r.getMessage() for r in caplog.records)
    assert _position(exp) == (1, 10, 15, 1, 20)
    assert sorted(_seen(record)) == [1] and sorted(_seen(record)[1].elements()) == list(range(30))
