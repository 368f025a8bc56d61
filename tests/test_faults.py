"""Fault injection: the tiny mini recipe killed (SIGKILL of its process group) inside a feature
archive, mid-epoch, inside a checkpoint save and while a score file is written, then re-run, ends
with every output byte-identical to an uninterrupted run's (``tools/fault_check.py``; run it
without ``--tiny`` for the default corpus, all five points and ``--nproc 2``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_killed_and_rerun_recipe_equals_an_uninterrupted_one(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "fault_check.py"), "--tiny", "--backends", "cosine",
         "--work", str(tmp_path), "--points", "features.utt@2", "train.step@2", "checkpoint.save", "scores.block",
         "--timeout", "600"],
        capture_output=True, text=True, timeout=1800,
    )
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    summary = result.stdout.splitlines()[-1]
    assert summary.endswith(": 0 differ") and int(summary.split()[0]) > 90, result.stdout
    for point in ("features.utt@2", "train.step@2", "checkpoint.save", "scores.block"):
        assert f"killed at {point}" in result.stdout
