"""Score files: writing and reading ``<enroll> <test> <score> <label> [<side> ...]``.

Score files have WeSpeaker's four columns ``<enroll> <test> <score> <target|nontarget>``;
:func:`read_scores` also accepts Kaldi's three columns ``<enroll> <test> <score>`` joined with
the trial list by ``(enroll, test)`` pair, as Kaldi's ``sid/compute_min_dcf.py`` does. Score
files of score normalisation carry numeric side information (quality measures) in further
columns after the label, as WeSpeaker's ``score_norm.py`` appends them; readers of the first
four columns ignore them and :func:`read_scored_trials` returns them.
"""

from __future__ import annotations

import array
import logging
import math
import time
from collections.abc import Callable, Sequence
from operator import itemgetter
from pathlib import Path
from typing import NamedTuple

import numpy as np

from speakernet.data.kaldi_dir import TRIAL_LABELS, DataDirError, read_trials
from speakernet.utils.faults import fault_point
from speakernet.utils.fileio import PathLike, atomic_write

logger = logging.getLogger(__name__)

Trial = tuple[str, str, str]


def trial_labels(trials: Sequence[Trial]) -> np.ndarray:
    """Boolean target mask of a trial list (``True`` for ``target``)."""
    return np.array(list(map("target".__eq__, map(itemgetter(2), trials))), dtype=bool)


class IndexedColumn(NamedTuple):
    """A side column given per table row: trial ``i`` has the value ``values[index[i]]``.

    Most side columns are a property of one embedding (its duration, norm, cohort mean), so
    :func:`write_scores` formats each row's value once and repeats the text, instead of
    formatting one number per trial (550 k trials over 140 k embeddings: 3.5x fewer numbers).
    """

    values: np.ndarray
    index: np.ndarray


SideColumns = np.ndarray | Sequence[np.ndarray | IndexedColumn]


def write_scores(
    path: PathLike, trials: Sequence[Trial], scores: np.ndarray | Sequence[float], extra: SideColumns | None = None
) -> None:
    """Writes a score file ``<enroll> <test> <score %.5f> <label> [<side> ...]`` atomically.

    Args:
        path: Destination file.
        trials: ``(enroll, test, label)`` tuples.
        scores: One score per trial.
        extra: Optional side columns (e.g. AS-norm's quality measures), written after the label
            with 6 significant digits (NaN as ``nan``): a ``[num_trials, k]`` matrix, or a
            sequence of columns, each ``[num_trials]`` or an :class:`IndexedColumn`.

    Raises:
        ValueError: on a length mismatch, a non-finite score or a label that is not
            ``target``/``nontarget``.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if scores.shape[0] != len(trials):
        raise ValueError(f"got {scores.shape[0]} scores for {len(trials)} trials")
    columns = _side_columns(extra, len(trials))
    bad = np.flatnonzero(~np.isfinite(scores))
    if bad.size:
        raise ValueError(f"score of trial {bad[0] + 1} ({trials[bad[0]][0]} {trials[bad[0]][1]}) is not finite")
    block = 100_000
    with atomic_write(path) as handle:
        for begin in range(0, len(trials), block):
            lines = []
            block_scores = scores[begin:begin + block].tolist()
            if not columns:
                block_extra = [""] * len(block_scores)
            else:  # formatted column by column: several times faster than row by row
                texts = [column(begin, begin + block) for column in columns]
                block_extra = [" " + " ".join(values) for values in zip(*texts)]
            for (enroll, test, label), score, side in zip(trials[begin:begin + block], block_scores, block_extra):
                if label not in TRIAL_LABELS:
                    raise ValueError(f"trial label must be one of {TRIAL_LABELS}, got '{label}' for {enroll} {test}")
                lines.append(f"{enroll} {test} {score:.5f} {label}{side}\n")
            handle.write("".join(lines))
            fault_point("scores.block")
    logger.info("Wrote %d scores to %s", len(trials), path)


def _format_side(values: np.ndarray) -> list[str]:
    return list(map("{:.6g}".format, np.asarray(values, dtype=np.float64).tolist()))


def _side_columns(extra: SideColumns | None, num_trials: int) -> list[Callable[[int, int], list[str]]]:
    """Each side column as a function ``(begin, end) -> texts of those trials``."""
    if extra is None:
        return []
    if isinstance(extra, np.ndarray):
        if extra.ndim != 2 or extra.shape[0] != num_trials:
            raise ValueError(f"side columns must be [num_trials, k], got shape {extra.shape} for {num_trials} trials")
        extra = list(extra.T)
    columns = []
    formatted: dict[int, np.ndarray] = {}  # id(values) -> texts: a table shared by two columns is formatted once
    for number, column in enumerate(extra):
        if isinstance(column, IndexedColumn):
            index = np.asarray(column.index, dtype=np.int64).reshape(-1)
            if index.shape[0] != num_trials or (index.size and not 0 <= index.min() <= index.max()
                                                < len(column.values)):
                raise ValueError(f"side column {number}: index must give one row of its {len(column.values)} "
                                 f"values per trial ({num_trials})")
            if id(column.values) not in formatted:
                formatted[id(column.values)] = np.array(_format_side(column.values), dtype=object)
            texts = formatted[id(column.values)]
            columns.append(lambda begin, end, texts=texts, index=index: texts[index[begin:end]].tolist())
        else:
            values = np.asarray(column, dtype=np.float64).reshape(-1)
            if values.shape[0] != num_trials:
                raise ValueError(f"side column {number} has {values.shape[0]} values for {num_trials} trials")
            columns.append(lambda begin, end, values=values: _format_side(values[begin:end]))
    return columns


def _read_score_lines(path: Path) -> tuple[int, list[tuple], np.ndarray, np.ndarray, np.ndarray]:
    """Parses a score file of 3, 4 or more columns (numbers after the label).

    Returns ``(columns, trials, scores, line_numbers, extra)``; each trial is ``(enroll, test,
    label)`` with ``label`` None for 3 columns, ``extra`` is a float64 matrix ``[num_lines,
    columns - 4]`` of the side columns. Keys are interned: a million trials over a few thousand
    utterances then hold one string object per key instead of one per line.
    """
    if not path.is_file():
        raise DataDirError(path, "file does not exist")
    columns = 0
    trials: list[tuple] = []
    scores = array.array("d")
    extra = array.array("d")
    line_numbers = array.array("q")
    intern = {}
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            parts = line.split()
            if not parts:
                continue
            if columns == 0:
                if len(parts) < 3:
                    raise DataDirError(
                        path, f"expected '<enroll> <test> <score> [<label> ...]', got {len(parts)} fields", number,
                        parts[0],
                    )
                columns = len(parts)
            elif len(parts) != columns:
                raise DataDirError(path, f"expected {columns} fields like the first line, got {len(parts)}",
                                   number, parts[0])
            try:
                score = float(parts[2])
            except ValueError:
                raise DataDirError(path, f"score '{parts[2]}' is not a number", number, parts[0]) from None
            if not math.isfinite(score):
                raise DataDirError(path, f"score '{parts[2]}' is not finite", number, parts[0])
            label = None
            if columns >= 4:
                label = parts[3]
                if label not in TRIAL_LABELS:
                    raise DataDirError(path, f"label must be one of {TRIAL_LABELS}, got '{label}'", number, parts[0])
                label = "target" if label == "target" else "nontarget"
                if columns > 4:
                    try:
                        values = [float(value) for value in parts[4:]]
                    except ValueError:
                        raise DataDirError(path, "side columns after the label must be numbers", number,
                                           parts[0]) from None
                    extra.extend(values)
            enroll = intern.setdefault(parts[0], parts[0])
            test = intern.setdefault(parts[1], parts[1])
            trials.append((enroll, test, label))
            scores.append(score)
            line_numbers.append(number)
    if not trials:
        raise DataDirError(path, "no scores in file")
    extra_matrix = np.frombuffer(extra, dtype=np.float64).reshape(len(trials), max(columns - 4, 0))
    return (columns, trials, np.frombuffer(scores, dtype=np.float64), np.frombuffer(line_numbers, dtype=np.int64),
            extra_matrix)


def read_scores(
    path: PathLike, trials_path: PathLike | None = None, trials: Sequence[Trial] | None = None
) -> tuple[list[Trial], np.ndarray]:
    """Reads a score file, optionally joined with a trial list.

    Without ``trials_path`` the file must have 4 (or more) columns and gives both trials and
    labels. With it, the scores are taken line by line when both files list the same pairs in
    the same order; otherwise they are matched by ``(enroll, test)`` pair, in any order, as Kaldi
    does: every trial must have a score, every score must belong to a trial, and a pair scored
    twice must have the same score both times. A labelled file's labels must agree with the
    trial list. Trials come back in trial-list order. Side columns are ignored.

    Args:
        path: Score file of 3, 4 or more columns.
        trials_path: Kaldi trial list ``<enroll> <test> target|nontarget``, or None.
        trials: The trial list already read from ``trials_path`` (saves re-reading it when
            several score files share one list), or None to read it.

    Returns:
        ``(trials, scores)``: ``(enroll, test, label)`` tuples and float64 scores.

    Raises:
        DataDirError: on a malformed line, mixed column counts, a 3-column file without a
            trial list, a pair scored twice differently, a trial without a score, a score without a
            trial, or a label disagreement; the message names the file, line and key.
    """
    trials, scores, _ = read_scored_trials(path, trials_path, trials)
    return trials, scores


def read_scored_trials(
    path: PathLike, trials_path: PathLike | None = None, trials: Sequence[Trial] | None = None
) -> tuple[list[Trial], np.ndarray, np.ndarray]:
    """Like :func:`read_scores`, and also returns the side columns after the label.

    Args:
        path: Score file of 3, 4 or more columns.
        trials_path: Trial list to join with, or None (see :func:`read_scores`).
        trials: The trial list already read from ``trials_path``, or None.

    Returns:
        ``(trials, scores, extra)``: as :func:`read_scores`, plus a float64 matrix
        ``[num_trials, num_side_columns]`` in the same (trial-list) order.

    Raises:
        DataDirError: as :func:`read_scores`.
    """
    path = Path(path)
    start = time.perf_counter()
    columns, scored, scores, line_numbers, extra = _read_score_lines(path)
    if trials_path is None:
        if columns == 3:
            raise DataDirError(path, "3-column scores have no labels: give the trial list to join them with")
        trials = scored
    else:
        if trials is None:
            trials = read_trials(trials_path)
        trials, positions = _join_with_trials(path, scored, scores, line_numbers, trials, trials_path)
        scores, extra = scores[positions], extra[positions]
    elapsed = max(time.perf_counter() - start, 1e-9)
    logger.info("Read %d scores from %s (%.0f trials/s)", len(trials), path, len(trials) / elapsed)
    return list(trials), scores, extra


def _join_with_trials(
    path: Path,
    scored: list[tuple],
    scores: np.ndarray,
    line_numbers: np.ndarray,
    trials: Sequence[Trial],
    trials_path: PathLike,
) -> tuple[list[Trial], np.ndarray]:
    """Finds the score line of each trial: by position when the files line up, else by pair.

    Returns the trials and, for each, the index of its line among the scored lines.
    """
    if len(scored) == len(trials) and all(a[0] == b[0] and a[1] == b[1] for a, b in zip(scored, trials)):
        positions = range(len(trials))  # the usual case, which also allows repeated trials
    else:
        by_pair: dict[tuple[str, str], int] = {}
        for position, (enroll, test, _) in enumerate(scored):
            first = by_pair.setdefault((enroll, test), position)
            if first != position and scores[first] != scores[position]:
                raise DataDirError(path, f"trial scored twice with different scores (first on line "
                                   f"{line_numbers[first]})", int(line_numbers[position]), f"{enroll} {test}")
        positions = []
        for index, (enroll, test, _) in enumerate(trials):
            position = by_pair.get((enroll, test))
            if position is None:
                raise DataDirError(trials_path, f"trial has no score in {path}", index + 1, f"{enroll} {test}")
            positions.append(position)
        trial_pairs = {(enroll, test) for enroll, test, _ in trials}
        if len(by_pair) > len(trial_pairs):  # every trial pair was found, so some scored pair is extra
            for pair, position in by_pair.items():
                if pair not in trial_pairs:
                    raise DataDirError(path, f"scored pair is not in the trial list {trials_path}",
                                       int(line_numbers[position]), " ".join(pair))
    for (enroll, test, label), position in zip(trials, positions):
        score_label = scored[position][2]
        if score_label is not None and score_label != label:
            raise DataDirError(path, f"label '{score_label}' disagrees with '{label}' in {trials_path}",
                               int(line_numbers[position]), f"{enroll} {test}")
    return list(trials), np.asarray(positions, dtype=np.int64)
