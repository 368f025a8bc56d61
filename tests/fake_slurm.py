"""A fake Slurm for tests: an ``sbatch`` first on PATH that records its arguments and runs array tasks locally."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

_SBATCH = '''#!{python}
"""Fake sbatch: records its arguments, then runs the tasks of --array=A-B[%M] one by one (as --wait would)."""
import json, os, subprocess, sys
args = sys.argv[1:]
with open(os.environ["FAKE_SLURM_RECORD"], "a") as handle:
    handle.write(json.dumps(args) + "\\n")
if os.environ.get("FAKE_SBATCH_REFUSE"):
    print("sbatch: error: invalid partition specified: " + os.environ["FAKE_SBATCH_REFUSE"], file=sys.stderr)
    sys.exit(1)
options = dict(arg[2:].split("=", 1) for arg in args[:-1] if arg.startswith("--") and "=" in arg)
first, last = map(int, options["array"].split("%")[0].split("-"))
print("4242", flush=True)  # --parsable: the job id
worst = 0
for task in range(first, last + 1):
    if str(task) == os.environ.get("FAKE_SBATCH_LOSE_TASK"):  # as if Slurm killed it before it ended
        worst = max(worst, 137)
        continue
    with open(options["output"].replace("%a", str(task)), "w") as out:
        env = dict(os.environ, SLURM_ARRAY_TASK_ID=str(task), SLURM_ARRAY_JOB_ID="4242")
        worst = max(worst, subprocess.call([args[-1]], env=env, stdout=out, stderr=subprocess.STDOUT))
sys.exit(worst)
'''


def install_fake_slurm(bin_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Puts the fake ``sbatch`` (and a no-op ``scancel``) first on PATH; returns the file it records to.

    Each call of sbatch appends its argument list, as one JSON line, to the returned file.
    ``FAKE_SBATCH_REFUSE=msg`` makes it fail without running anything; ``FAKE_SBATCH_LOSE_TASK=J``
    skips task J (no status file), as a task killed by Slurm.
    """
    bin_dir.mkdir(parents=True, exist_ok=True)
    (bin_dir / "sbatch").write_text(_SBATCH.format(python=sys.executable))
    (bin_dir / "scancel").write_text("#!/bin/sh\nexit 0\n")
    for name in ("sbatch", "scancel"):
        (bin_dir / name).chmod(0o755)
    record = bin_dir / "sbatch.calls"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SLURM_RECORD", str(record))
    return record


def sbatch_calls(record: Path) -> list[list[str]]:
    """The argument lists sbatch was called with, in order."""
    if not record.is_file():
        return []
    return [json.loads(line) for line in record.read_text().splitlines()]
