"""Fault injection for the crash-safety tests: ``SPEAKERNET_FAULT=<point>[@<n>]`` kills the run.

Stages call :func:`fault_point` at the places where a kill is most damaging (inside an archive,
mid-epoch, inside a checkpoint save, during extraction and score writing). With the variable
unset it is one dictionary lookup. With ``SPEAKERNET_FAULT=train.step@3`` the third pass through
``train.step`` sends SIGKILL to the whole process group (the recipe's shell and every stage
process, as ``kill -9`` of a run would), so the tests can re-run the recipe and compare its
outputs with an uninterrupted run's (``tests/test_faults.py``).
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

ENV = "SPEAKERNET_FAULT"
GROUP_ENV = "SPEAKERNET_FAULT_PGID"
POINTS = ("features.utt", "shards.utt", "train.step", "checkpoint.save", "extract.batch", "scores.block")
_hits: dict[str, int] = {}


def fault_point(name: str) -> None:
    """Kills the process group here if ``SPEAKERNET_FAULT`` names this point (and this hit)."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    point, _, count = spec.partition("@")
    if point != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] < int(count or 1):
        return
    # The run: torchrun starts its workers in sessions of their own, so the group's leader is
    # given (tools/fault_check.py exports the recipe shell's pid) and every process descended
    # from it dies too, as under `kill -9` of a whole job (Slurm's scancel, a power cut).
    leader = int(os.environ.get(GROUP_ENV) or os.getpgid(0))
    others = _descendants(leader)  # listed first: once the group is dead, its orphans are re-parented
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(leader, signal.SIGKILL)  # the leader first, so that it dies by the signal too
    for pid in others:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


def _descendants(root: int) -> list[int]:
    """Pids of every live process below ``root`` (Linux ``/proc``; empty elsewhere)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            parent = int(entry.joinpath("stat").read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child != os.getpid():
                found.append(child)
                todo.append(child)
    return found
