"""Fault injection for the crash-safety tests: ``SPEAKERNET_FAULT=<point>[@<n>]`` kills the run.

Stages call :func:`fault_point` at the places where a kill is most damaging (inside an archive,
mid-epoch, inside a checkpoint save, during extraction and score writing). With the variable
unset it is one dictionary lookup. With ``SPEAKERNET_FAULT=train.step@3`` the third pass through
``train.step`` sends SIGKILL to the whole process group (the recipe's shell and every stage
process, as ``kill -9`` of a run would), so the tests can re-run the recipe and compare its
outputs with an uninterrupted run's (``tests/test_faults.py``).
"""

from __future__ import annotations

import os
import signal

ENV = "SPEAKERNET_FAULT"
POINTS = ("features.utt", "train.step", "checkpoint.save", "extract.batch", "scores.block")
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
    if _hits[name] >= int(count or 1):
        os.killpg(os.getpgid(0), signal.SIGKILL)
