"""Cosine scoring of trial lists, and the score and metrics stages over score files.

The score files themselves are written and read by :mod:`speakernet.backend.score_files`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from operator import itemgetter
from pathlib import Path

import numpy as np

from speakernet.backend.embeddings import load_embeddings, read_vector
from speakernet.backend.metrics import DEFAULT_P_TARGETS, compute_metrics, format_results_table
from speakernet.backend.score_files import Trial, read_scores, trial_labels, write_scores
from speakernet.data.kaldi_dir import DataDirError, read_trials
from speakernet.utils.fileio import PathLike, atomic_write
from speakernet.utils.logging import Progress

logger = logging.getLogger(__name__)

EmbeddingTable = Mapping[str, np.ndarray] | tuple[Sequence[str], np.ndarray]

# Trials scored per block: the two gathered [chunk, dim] float32 blocks (3 MB each for 192-d)
# stay in cache, which measured 5-8x faster than 16k-65k blocks, and bound memory whatever the
# trial count.
DEFAULT_CHUNK_SIZE = 4096


def _as_table(table: EmbeddingTable, side: str) -> tuple[Sequence[str], np.ndarray]:
    if isinstance(table, Mapping):
        keys = list(table)
        if not keys:
            raise ValueError(f"{side} embedding table is empty")
        matrix = np.stack([np.asarray(table[key]).reshape(-1) for key in keys])
    else:
        keys, matrix = table
        matrix = np.asarray(matrix)
    if matrix.ndim != 2 or matrix.shape[0] != len(keys) or matrix.shape[0] == 0:
        raise ValueError(f"{side} embeddings must be a non-empty [num_keys, dim] matrix with one key per row, "
                         f"got {len(keys)} keys and shape {matrix.shape}")
    return keys, matrix


def trial_rows(
    trials: Sequence[Trial],
    enroll_keys: Sequence[str],
    test_keys: Sequence[str],
    enroll_source: str,
    test_source: str,
    trials_path: PathLike | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Maps both sides of the trials to table rows, naming the first trial whose key is missing.

    The key index is built once when both sides use the same table.

    Returns:
        ``(enroll_rows, test_rows)`` int64 arrays.
    """
    enroll_index = {key: row for row, key in enumerate(enroll_keys)}
    test_index = enroll_index if test_keys is enroll_keys else {key: row for row, key in enumerate(test_keys)}
    sides = []
    for column, index, source in ((0, enroll_index, enroll_source), (1, test_index, test_source)):
        try:
            # a list first: np.fromiter over the map is 1.5x slower than np.array of the list
            sides.append(np.array(list(map(index.__getitem__, map(itemgetter(column), trials))), dtype=np.int64))
            continue
        except KeyError:
            pass
        missing = [position for position, trial in enumerate(trials) if trial[column] not in index]
        side = "enroll" if column == 0 else "test"
        raise DataDirError(
            trials_path if trials_path is not None else "<trials>",
            f"{side} key has no embedding in {source} ({len(missing)} trials affected)",
            line=missing[0] + 1,
            key=trials[missing[0]][column],
        )
    return sides[0], sides[1]


def unit_rows(
    keys: Sequence[str],
    matrix: np.ndarray,
    mean: np.ndarray | None,
    source: str,
    used_rows: np.ndarray | None = None,
    dtype: type = np.float32,
) -> tuple[np.ndarray, np.ndarray]:
    """Subtracts the mean and L2-normalises every row once, in one copy of ``matrix``.

    Args:
        keys: Key of each row, for messages.
        matrix: Embeddings ``[num, dim]``.
        mean: Vector subtracted first, or None.
        source: Name of the table, for messages.
        used_rows: Rows that must have a usable norm (None: all); other degenerate rows are
            left unnormalised.
        dtype: Precision of the copy (float64 where exact statistics need it).

    Returns:
        ``(unit, norms)``: the normalised rows and the norms after mean subtraction.

    Raises:
        DataDirError: naming the first used row of zero or non-finite norm.
    """
    centred = np.asarray(matrix).astype(dtype, copy=True)
    if mean is not None:
        centred -= np.asarray(mean, dtype=dtype)
    # einsum, not np.linalg.norm: no [num, dim] temporary (fresh memory is slow to fault in,
    # 0.5 s for VoxCeleb's 140 k x 256 float64)
    norms = np.sqrt(np.einsum("ij,ij->i", centred, centred))
    degenerate = ~(norms > 0) | ~np.isfinite(norms)
    if degenerate.any():
        used_degenerate = np.flatnonzero(degenerate if used_rows is None else degenerate[used_rows])
        if used_degenerate.size:
            row = int(used_degenerate[0] if used_rows is None else used_rows[used_degenerate[0]])
            raise DataDirError(source, "embedding has zero or non-finite norm after mean subtraction", key=keys[row])
        norms[degenerate] = 1.0
    centred /= norms[:, None]
    return centred, norms


def compact_rows(table_size: int, *rows: np.ndarray) -> tuple[np.ndarray, ...]:
    """``(used, *positions)``: the sorted table rows any of ``rows`` uses, and each in that numbering.

    Scorers transform only the embeddings that trials use, once each, then index them per trial.
    """
    used_mask = np.zeros(table_size, dtype=bool)
    for used_rows in rows:
        used_mask[used_rows] = True
    used = np.flatnonzero(used_mask)
    position = np.empty(table_size, dtype=np.int64)
    position[used] = np.arange(used.size)
    return (used, *(position[used_rows] for used_rows in rows))


def cosine_score_trials(
    trials: Sequence[Trial],
    enroll: EmbeddingTable,
    test: EmbeddingTable,
    mean: np.ndarray | None = None,
    trials_path: PathLike | None = None,
    enroll_source: str = "enroll embeddings",
    test_source: str = "test embeddings",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> np.ndarray:
    """Scores trials by the cosine of mean-subtracted embeddings.

    Both tables are indexed once, every embedding is mean-subtracted and L2-normalised once,
    and the row-wise dot products are taken in blocks of ``chunk_size`` trials.

    Args:
        trials: ``(enroll, test, label)`` tuples as from ``read_trials``.
        enroll: Enrolment embeddings, a ``key -> vector`` mapping or ``(keys, matrix)``.
        test: Test embeddings, same forms; may be the same table as ``enroll``.
        mean: Vector ``[dim]`` subtracted before normalisation (e.g. ``mean.vec``), or None.
        trials_path: Trial file name for error messages (line numbers are trial index + 1).
        enroll_source: Name of the enrolment table (its scp) for error messages.
        test_source: Name of the test table for error messages.
        chunk_size: Trials scored per block.

    Returns:
        Float32 scores in [-1, 1], one per trial, in trial order.

    Raises:
        DataDirError: for a trial key missing from its table (names the trial line, the key
            and the table) or a used embedding of zero norm after mean subtraction.
        ValueError: on empty tables, mismatched dimensions or a bad ``chunk_size``.
    """
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    start = time.perf_counter()
    same_table = enroll is test
    enroll_keys, enroll_matrix = _as_table(enroll, "enroll")
    test_keys, test_matrix = (enroll_keys, enroll_matrix) if same_table else _as_table(test, "test")
    dim = enroll_matrix.shape[1]
    if test_matrix.shape[1] != dim:
        raise ValueError(f"enroll embeddings have dimension {dim} but test embeddings {test_matrix.shape[1]}")
    if mean is not None:
        mean = np.asarray(mean, dtype=np.float32).reshape(-1)
        if mean.shape[0] != dim:
            raise ValueError(f"mean vector has dimension {mean.shape[0]} but embeddings {dim}")
    scores = np.empty(len(trials), dtype=np.float32)
    if not trials:
        return scores
    enroll_rows, test_rows = trial_rows(trials, enroll_keys, test_keys, enroll_source, test_source, trials_path)
    if same_table:
        enroll_unit = test_unit = unit_rows(
            enroll_keys, enroll_matrix, mean, enroll_source, np.concatenate((enroll_rows, test_rows))
        )[0]
    else:
        enroll_unit = unit_rows(enroll_keys, enroll_matrix, mean, enroll_source, enroll_rows)[0]
        test_unit = unit_rows(test_keys, test_matrix, mean, test_source, test_rows)[0]
    with Progress(len(trials), "cosine scoring", "trials", log=logger) as progress:
        for begin in range(0, len(trials), chunk_size):
            end = begin + chunk_size
            np.einsum(
                "ij,ij->i", enroll_unit[enroll_rows[begin:end]], test_unit[test_rows[begin:end]], out=scores[begin:end]
            )
            progress.update(min(end, len(trials)) - begin)
    elapsed = max(time.perf_counter() - start, 1e-9)
    logger.info("Scored %d trials in %.2f s (%.0f trials/s)", len(trials), elapsed, len(trials) / elapsed)
    return scores


def load_trial_tables(
    trials_path: PathLike, enroll_scp: PathLike, test_scp: PathLike
) -> tuple[list[Trial], tuple[list[str], np.ndarray], tuple[list[str], np.ndarray]]:
    """Reads a trial list and its enrolment and test embedding tables (one file is read once).

    Args:
        trials_path: Kaldi trial list.
        enroll_scp: Enrolment embeddings.
        test_scp: Test embeddings; when it is the same file as ``enroll_scp`` the same table
            object is returned for both sides (scorers then normalise each embedding once).

    Returns:
        ``(trials, enroll, test)``, the tables as ``(keys, matrix)``.

    Raises:
        DataDirError: on an empty or malformed trial list or unreadable embeddings.
    """
    trials = read_trials(trials_path)
    if not trials:
        raise DataDirError(trials_path, "no trials in file")
    enroll = load_embeddings(enroll_scp)
    same = Path(enroll_scp).resolve() == Path(test_scp).resolve()
    return trials, enroll, enroll if same else load_embeddings(test_scp)


def score_trials_files(
    trials_path: PathLike,
    enroll_scp: PathLike,
    test_scp: PathLike,
    out: PathLike,
    mean_vec: PathLike | None = None,
) -> np.ndarray:
    """The ``score`` stage: cosine-scores a trial list and writes a 4-column score file.

    Args:
        trials_path: Kaldi trial list.
        enroll_scp: Enrolment embeddings (``xvector.scp`` or ``spk_xvector.scp``).
        test_scp: Test embeddings; read once if it is the same file as ``enroll_scp``.
        out: Destination score file.
        mean_vec: Kaldi vector subtracted from every embedding, or None.

    Returns:
        The scores, in trial order.

    Raises:
        DataDirError: on unreadable inputs or missing keys (see :func:`cosine_score_trials`).
    """
    trials, enroll, test = load_trial_tables(trials_path, enroll_scp, test_scp)
    mean = read_vector(mean_vec) if mean_vec is not None else None
    scores = cosine_score_trials(
        trials, enroll, test, mean, trials_path=trials_path, enroll_source=str(enroll_scp), test_source=str(test_scp)
    )
    write_scores(out, trials, scores)
    return scores


def _default_names(score_paths: Sequence[PathLike]) -> list[str]:
    names = [Path(path).name for path in score_paths]
    if len(set(names)) != len(names):
        names = [str(path) for path in score_paths]
    return names


def _row_record(name: str, path: PathLike, metrics: dict, llr: bool) -> dict:
    """One row of ``results.json``; a ``model:backend:trials`` name is split into its parts."""
    parts = name.split(":")
    model, backend, trials = parts if len(parts) == 3 else (name, "", "")
    return {
        "name": name, "model": model, "backend": backend, "trials": trials, "scores": str(path), "llr": llr,
        "num_trials": metrics["num_trials"], "num_targets": metrics["num_targets"],
        "num_nontargets": metrics["num_nontargets"], "eer": metrics["eer"], "eer_threshold": metrics["eer_threshold"],
        "min_dcf": {f"{p:g}": value for p, value in metrics["min_dcf"].items()},
        "act_dcf": {f"{p:g}": value for p, value in metrics["act_dcf"].items()},
        "cllr": metrics["cllr"],
    }


def compute_metrics_files(
    score_paths: Sequence[PathLike],
    out: PathLike | None = None,
    names: Sequence[str] | None = None,
    trials_path: PathLike | None = None,
    p_targets: Sequence[float] = DEFAULT_P_TARGETS,
    llr_names: Sequence[str] = (),
) -> tuple[str, list[tuple[str, dict]]]:
    """The ``compute_metrics`` stage: EER, minDCF (and for LLRs actDCF, Cllr), as a text table.

    With ``out``, the table goes to ``out`` and every row's figures, machine-readable, to
    ``out.json`` (``{"p_targets": [...], "rows": [{"name", "model", "backend", "trials",
    "scores", "llr", "num_trials", "num_targets", "num_nontargets", "eer", "eer_threshold",
    "min_dcf": {p: value}, "act_dcf": {p: value}, "cllr"}]}``; EER as a fraction; a row name
    ``model:backend:trials`` fills the three fields, others leave them empty), which is what
    ``gather_results`` and the report read.

    Args:
        score_paths: Score files (4 columns, or 3 columns with ``trials_path``).
        out: Where to write the table atomically, or None.
        names: Row name of each score file (default: the file name, or the path if names clash).
        trials_path: Trial list joined with every score file, or None.
        p_targets: Priors for the minDCF (and actDCF) columns.
        llr_names: Names of the rows whose scores are calibrated log-likelihood ratios: the
            table shows their actDCF and Cllr.

    Returns:
        ``(table, rows)``: the formatted table and ``(name, metrics)`` per score file.

    Raises:
        ValueError: if the number of names differs from the number of score files, or an
            ``llr_names`` entry names no row.
        DataDirError: on malformed score or trial files.
    """
    if not score_paths:
        raise ValueError("no score files given")
    if names is None:
        names = _default_names(score_paths)
    elif len(names) != len(score_paths):
        raise ValueError(f"got {len(names)} names for {len(score_paths)} score files")
    unknown = sorted(set(llr_names) - set(names))
    if unknown:
        raise ValueError(f"--llr names no row: {', '.join(unknown)} (rows: {', '.join(names)})")
    shared_trials = read_trials(trials_path) if trials_path is not None else None
    rows, records = [], []
    for name, path in zip(names, score_paths):
        start = time.perf_counter()
        trials, scores = read_scores(path, trials_path, shared_trials)
        try:
            metrics = compute_metrics(scores, trial_labels(trials), p_targets)
        except ValueError as error:
            raise DataDirError(path, str(error)) from error
        metrics["llr"] = name in llr_names
        elapsed = max(time.perf_counter() - start, 1e-9)
        logger.info("%s: %d trials, EER %.3f%% (%.0f trials/s)", name, len(trials), metrics["eer"] * 100,
                    len(trials) / elapsed)
        rows.append((name, metrics))
        records.append(_row_record(name, path, metrics, metrics["llr"]))
    table = format_results_table(rows, p_targets)
    if out is not None:
        with atomic_write(out) as handle:
            handle.write(table)
        with atomic_write(f"{out}.json") as handle:
            json.dump({"p_targets": [float(p) for p in p_targets], "rows": records}, handle, indent=1)
            handle.write("\n")
    return table, rows
