"""A fake Slurm for tests: ``sbatch``, ``srun`` and ``scontrol`` first on PATH that record their arguments and run
the tasks on this machine (array tasks one by one; a job's nodes as concurrent processes)."""

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
if "array" not in options:  # one job of --nodes=N nodes (FAKE_SLURM_NODELIST, all of them this machine)
    nodes = int(options.get("nodes", "1"))
    env = dict(os.environ, SLURM_JOB_ID="4243", SLURM_JOB_NUM_NODES=str(nodes),
               SLURM_JOB_NODELIST=os.environ.get("FAKE_SLURM_NODELIST", "localhost"))
    print("4243", flush=True)
    with open(options["output"], "w") as out:
        sys.exit(subprocess.call([args[-1]], env=env, cwd=options.get("chdir"), stdout=out, stderr=subprocess.STDOUT))
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

_SRUN = '''#!{python}
"""Fake srun: records its arguments, then runs --nodes=N copies of the command at once, as N nodes would."""
import json, os, subprocess, sys, time
args = sys.argv[1:]
with open(os.environ["FAKE_SRUN_RECORD"], "a") as handle:
    handle.write(json.dumps(args) + "\\n")
position = next(i for i, arg in enumerate(args) if not arg.startswith("--"))
options = dict(arg[2:].split("=", 1) if "=" in arg else (arg[2:], "") for arg in args[:position])
nodes = int(options.get("nodes", os.environ.get("SLURM_JOB_NUM_NODES", "1")))
tasks = [subprocess.Popen(args[position:], env=dict(os.environ, SLURM_NODEID=str(node), SLURM_PROCID=str(node)))
         for node in range(nodes)]
while any(task.poll() is None for task in tasks):
    failed = [task.returncode for task in tasks if task.returncode]
    if failed and "kill-on-bad-exit" in options:  # as Slurm does: one failed task ends the others
        for task in tasks:
            task.kill()
    time.sleep(0.1)
sys.exit(max(abs(task.returncode) for task in tasks))
'''

_SCONTROL = '''#!{python}
"""Fake scontrol: only 'scontrol show hostnames LIST' (a comma-separated list, one name a line)."""
import sys
assert sys.argv[1:3] == ["show", "hostnames"], sys.argv
print("\\n".join(sys.argv[3].split(",")))
'''


def install_fake_slurm(bin_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Puts the fake ``sbatch``, ``srun``, ``scontrol`` and a no-op ``scancel`` first on PATH; returns sbatch's record.

    Each call of sbatch appends its argument list, as one JSON line, to the returned file (srun to
    ``srun.calls`` beside it). A job without ``--array`` gets ``FAKE_SLURM_NODELIST`` (default
    ``localhost``) as its node list; srun runs ``--nodes`` copies of its command at once.
    ``FAKE_SBATCH_REFUSE=msg`` makes it fail without running anything; ``FAKE_SBATCH_LOSE_TASK=J``
    skips task J (no status file), as a task killed by Slurm.
    """
    bin_dir.mkdir(parents=True, exist_ok=True)
    (bin_dir / "sbatch").write_text(_SBATCH.format(python=sys.executable))
    (bin_dir / "srun").write_text(_SRUN.format(python=sys.executable))
    (bin_dir / "scontrol").write_text(_SCONTROL.format(python=sys.executable))
    (bin_dir / "scancel").write_text("#!/bin/sh\nexit 0\n")
    for name in ("sbatch", "srun", "scontrol", "scancel"):
        (bin_dir / name).chmod(0o755)
    record = bin_dir / "sbatch.calls"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SLURM_RECORD", str(record))
    monkeypatch.setenv("FAKE_SRUN_RECORD", str(bin_dir / "srun.calls"))
    return record


def sbatch_calls(record: Path) -> list[list[str]]:
    """The argument lists sbatch (or, given ``srun.calls``, srun) was called with, in order."""
    if not record.is_file():
        return []
    return [json.loads(line) for line in record.read_text().splitlines()]
