"""What a recipe decides before its first stage runs (cheap: the runs here stop before any stage works)."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
POOLED = ROOT / "egs" / "pooled" / "v1" / "run.sh"


def _pooled(data: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(POOLED), "--data", str(data), "--stage", "1", "--stop-stage", "1", *args],
                          capture_output=True, text=True, timeout=60)


def test_pooled_trial_lists_are_found_without_a_plain_trials_list(tmp_path: Path) -> None:
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "trials_librispeech").write_text("a b target\n")
    result = _pooled(tmp_path)
    # past the trial lists (was: exit 2 without a word, ls under pipefail), to the shared stages' own check
    assert result.returncode == 1 and f"--train-data {tmp_path}/train is not a directory" in result.stderr
    (tmp_path / "test" / "trials_librispeech").unlink()
    result = _pooled(tmp_path)
    assert result.returncode == 1 and f"no trial list in {tmp_path}/test (trials, trials_*)" in result.stderr
