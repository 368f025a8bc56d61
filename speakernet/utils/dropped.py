"""The list of utterances a stage left out of its output, one ``utt<TAB>reason`` line each.

Every stage that can leave an utterance out (training: too few voiced frames; speaker means,
PLDA and the AS-norm speaker cohort: no embedding; calibration trials: an evaluation speaker, too
short, no duration) counts them in its summary line and writes this file beside its output,
even when it is empty, so that "nothing was dropped" can be checked as well:

- the training: ``<exp_dir>/dropped.train.tsv`` (the exp dir also holds later stages' outputs);
- a stage whose output is a dir: ``<out_dir>/dropped.tsv``;
- a stage whose output is a file: ``<output file>.dropped.tsv``.

A reason is a short token, then a detail: ``too_few_voiced_frames 37<100``, ``no_embedding``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from speakernet.data.kaldi_dir import c_sort_key
from speakernet.utils.fileio import PathLike, atomic_write

DROPPED_NAME = "dropped.tsv"
TRAIN_DROPPED_NAME = "dropped.train.tsv"


def dropped_path_for(output: PathLike) -> Path:
    """``<output>.dropped.tsv``: the list of what the stage writing the file ``output`` left out."""
    output = Path(output)
    return output.with_name(f"{output.name}.{DROPPED_NAME}")


def write_dropped(path: PathLike, dropped: Mapping[str, str]) -> Path:
    """Writes ``utt<TAB>reason`` lines, C-sorted by utterance, atomically (no lines when nothing was dropped).

    Args:
        path: The list's path.
        dropped: Utterance -> reason (a token, then a detail after a space).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    with atomic_write(path) as handle:
        for utt in sorted(dropped, key=c_sort_key):
            reason = " ".join(str(dropped[utt]).split())  # one line, and no tab inside the reason
            handle.write(f"{utt}\t{reason}\n")
    return path


def read_dropped(path: PathLike) -> dict[str, str]:
    """Reads a list written by :func:`write_dropped`: utterance -> reason, in file order."""
    table = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line:
            utt, _, reason = line.partition("\t")
            table[utt] = reason
    return table


def log_dropped(log: logging.Logger, what: str, dropped: Mapping[str, str], total: int, path: Path,
                advice: str) -> None:
    """One summary line: a WARNING with the count, the list's path and how to keep them; INFO when none.

    Args:
        log: The stage's logger.
        what: What was dropped from, e.g. ``data/train: training``.
        dropped: Utterance -> reason.
        total: Utterances there were.
        path: Where the list was written.
        advice: How to keep them, e.g. ``lower data.min_frames to keep them``.
    """
    if not dropped:
        log.info("%s: no utterance of %d left out (%s)", what, total, path, stacklevel=2)
        return
    counts: dict[str, int] = {}
    for reason in dropped.values():
        token = reason.split(" ", 1)[0]
        counts[token] = counts.get(token, 0) + 1
    reasons = ", ".join(f"{count} {token}" for token, count in sorted(counts.items()))
    log.warning("%s: %d of %d utterances left out (%s), listed in %s; %s", what, len(dropped), total, reasons, path,
                advice, stacklevel=2)
