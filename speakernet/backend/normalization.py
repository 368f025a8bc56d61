"""Score normalisation: adaptive S-norm (AS-norm) and S-norm against a cohort.

Definitions follow WeSpeaker's ``score_norm.py`` (see ``docs/DESIGN.md``):

- every embedding (enrol, test, cohort) has the mean vector subtracted and is L2-normalised;
- a *speaker cohort* is the plain per-speaker mean of the raw embeddings of a labelled data
  dir, then mean-subtracted and L2-normalised; an *utterance cohort* takes every utterance of
  an (unlabelled, in-domain) dir as one cohort member;
- for every embedding ``x`` of a trial side, its cohort scores are the cosines with every cohort
  member; ``mu(x)``, ``sigma(x)`` are the mean and population standard deviation of the top-N
  of them (S-norm: of all of them);
- ``s' = ((s - mu_e) / sigma_e + (s - mu_t) / sigma_t) / 2``.

A cohort member that contains the embedding's own utterance (the utterance itself in an
utterance cohort, its speaker's mean in a speaker cohort) is left out of that embedding's
cohort, so an in-domain dir may hold the evaluation utterances, and calibration trials drawn
from the training speakers are not normalised against their own speaker.

Statistics are computed once per distinct embedding, one ``[chunk, cohort]`` matrix product
at a time, so memory stays bounded (VoxCeleb1-E: 145 k utterances x 6 k cohort would be 3.5 GB
as one float32 matrix), then combined per trial.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from speakernet.backend.embeddings import load_embeddings, read_vector, speaker_means, without_embedding
from speakernet.backend.topn import SELECTION_THREADS, top_values_slice
from speakernet.backend.score_files import IndexedColumn, Trial, trial_labels, write_scores
from speakernet.backend.scoring import compact_rows, load_trial_tables, trial_rows, unit_rows
from speakernet.data.kaldi_dir import (
    DataDirError,
    read_spk2utt,
    read_utt2dur,
    read_utt2num_frames,
    read_utt2spk,
)
from speakernet.utils.dropped import dropped_path_for, log_dropped, write_dropped
from speakernet.utils.fileio import PathLike, atomic_write, file_sha256
from speakernet.utils.logging import Progress

logger = logging.getLogger(__name__)

DEFAULT_TOP_N = 300
# Side columns of a normalised score file, after <enroll> <test> <score> <label>: what QMF reads.
SIDE_COLUMNS = (
    "raw_score", "enroll_dur", "test_dur", "enroll_norm", "test_norm", "enroll_cohort_mean", "test_cohort_mean",
)
# Embeddings per cohort matrix product: [4096, 6000] float32 is 98 MB, and 2 cores stay busy.
DEFAULT_CHUNK = 4096
FRAME_SHIFT_S = 0.01
# A cohort score spread below this is degenerate (identical cohort members): divide by it instead.
MIN_COHORT_STD = 1e-6


@dataclass
class Cohort:
    """Cohort members as unit vectors, and which member holds which utterance.

    Attributes:
        keys: Member names (speakers or utterances).
        unit: ``[num_members, dim]`` float64, mean-subtracted and L2-normalised.
        members: Utterance (and, for speaker cohorts, speaker) key -> member row containing it.
        kind: ``speaker`` or ``utterance``.
        source: The scp the cohort came from, for messages.
    """

    keys: list[str]
    unit: np.ndarray
    members: dict[str, int]
    kind: str
    source: str


def build_cohort(
    keys: Sequence[str],
    matrix: np.ndarray,
    mean: np.ndarray | None,
    utt2spk: Mapping[str, str] | None = None,
    source: str = "cohort",
    utt2spk_path: PathLike = "utt2spk",
) -> Cohort:
    """Builds a speaker cohort (with ``utt2spk``) or an utterance cohort (without).

    Args:
        keys: Utterance key of each row of ``matrix``.
        matrix: Raw utterance embeddings ``[num_utts, dim]``.
        mean: Vector subtracted from the members before normalisation, or None.
        utt2spk: Utterance -> speaker map for a speaker cohort (plain speaker means), or None
            for an utterance cohort.
        source: Name of the embedding table, for messages.
        utt2spk_path: Name of the utt2spk file, for messages.

    Returns:
        The cohort.

    Raises:
        DataDirError: for an utterance missing from ``utt2spk`` or a member of zero norm.
    """
    if utt2spk is None:
        member_keys = list(keys)
        members = {key: row for row, key in enumerate(member_keys)}
        raw = np.asarray(matrix, dtype=np.float32)
        kind = "utterance"
    else:
        member_keys, raw = speaker_means(keys, matrix, utt2spk, utt2spk_path, np.float64)
        row_of = {speaker: row for row, speaker in enumerate(member_keys)}
        members = {key: row_of[utt2spk[key]] for key in keys}
        members.update(row_of)
        kind = "speaker"
    # float64: the whole-cohort statistics are exact (see cohort_statistics)
    unit, _ = unit_rows(member_keys, raw, mean, source, dtype=np.float64)
    return Cohort(member_keys, unit, members, kind, source)


def cohort_statistics(
    unit: np.ndarray,
    keys: Sequence[str],
    cohort: Cohort,
    top_n: int,
    chunk_size: int = DEFAULT_CHUNK,
    exact: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Top-N cohort score statistics of each embedding, computed once per embedding.

    One ``[chunk, cohort]`` matrix product and a top-N selection (:func:`top_values`) per chunk
    of embeddings, in float32 by default (WeSpeaker's precision, and twice as fast as float64 on
    CPU: 140 k x 6 k x 256 is 430 GFLOP). The top-N spread is small (about 0.03 for 256-d), so
    float32 dot products move normalised scores by about 1e-6 to 1e-5 against a float64
    computation; ``exact=True`` (with float64 ``unit``) runs the product in float64. Means and
    standard deviations are accumulated in float64 either way. Statistics of the whole cohort
    (S-norm, and the log comparison) take no product with the members: they come from the
    members' float64 sum and Gram matrix, ``sum_j x.c_j = x.sum_j c_j`` and
    ``sum_j (x.c_j)^2 = x' G x``, in float64 arithmetic on ``unit`` as given.

    All of it is numpy: its BLAS multiplies as fast as torch's here (2.4 s for the 430 GFLOP on
    2 cores), and a stage that never imports torch starts 1.5 s sooner.

    Args:
        unit: ``[num, dim]`` mean-subtracted, L2-normalised embeddings (float32, or float64
            for exact statistics).
        keys: Key of each row (a member holding this key is excluded from its cohort).
        cohort: The cohort.
        top_n: Number of highest cohort scores to use; ``>=`` the cohort size means all (S-norm).
        chunk_size: Embeddings per matrix product.
        exact: Run the top-N product in float64.

    Returns:
        ``(mean, std, all_mean, all_std)``: float64 ``[num]`` top-N mean and population std of
        each embedding's cohort scores, and the mean and std over the whole cohort.
    """
    num_members = len(cohort.keys)
    excluded = np.array([cohort.members.get(key, -1) for key in keys], dtype=np.int64)
    has_own = excluded >= 0
    members = cohort.unit
    member_sum, gram = members.sum(axis=0), members.T @ members
    members_t = members.astype(np.float64 if exact else np.float32)
    unit = np.asarray(unit)
    num = unit.shape[0]
    mean, std, all_mean, all_std = (np.empty(num) for _ in range(4))
    counts = num_members - has_own.astype(np.float64)
    # Whole-cohort statistics: two small products per chunk, float64.
    for begin in range(0, num, chunk_size):
        rows = slice(begin, min(begin + chunk_size, num))
        x = unit[rows].astype(np.float64, copy=False)
        sums = x @ member_sum
        squares = np.einsum("ij,ij->i", x @ gram, x)
        own_rows = np.flatnonzero(has_own[rows])
        if own_rows.size:
            own = np.einsum("ij,ij->i", x[own_rows], members[excluded[rows][own_rows]])
            sums[own_rows] -= own
            squares[own_rows] -= own**2
        whole_mean = sums / np.maximum(counts[rows], 1)
        all_mean[rows] = whole_mean
        all_std[rows] = np.sqrt(np.maximum(squares / np.maximum(counts[rows], 1) - whole_mean**2, 0.0))
    mean[:], std[:] = all_mean, all_std
    top_rows = np.flatnonzero(top_n < counts)  # the others take the whole cohort (S-norm)
    if top_rows.size == 0:
        return mean, std, all_mean, all_std
    # Top-N statistics: each thread multiplies its own slice of rows with a single-threaded BLAS
    # and selects from it. A multi-threaded product followed by a threaded selection is 1.5x
    # slower on 2 cores: OpenBLAS's threads keep spinning after each product and starve the
    # selection threads.
    slice_size = max(1, chunk_size // SELECTION_THREADS)
    buffers = threading.local()

    def top_statistics(begin: int) -> None:
        selected = top_rows[begin:begin + slice_size]
        if getattr(buffers, "scores", None) is None:
            buffers.scores = np.empty((min(slice_size, top_rows.size), num_members), dtype=members_t.dtype)
        product_rows = unit[selected].astype(members_t.dtype, copy=False)
        scores = np.matmul(product_rows, members_t.T, out=buffers.scores[:selected.size])  # [slice, members]
        own = np.flatnonzero(has_own[selected])
        if own.size:
            scores[own, excluded[selected[own]]] = -math.inf
        top = top_values_slice(scores, top_n).astype(np.float64)
        mean[selected] = top.mean(axis=1)
        std[selected] = top.std(axis=1)

    with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(SELECTION_THREADS) as pool, \
            Progress(top_rows.size, "AS-norm cohort statistics", "embeddings", log=logger) as progress:
        starts = range(0, top_rows.size, slice_size)
        for begin, _ in zip(starts, pool.map(top_statistics, starts)):
            progress.update(min(slice_size, top_rows.size - begin))
    return mean, std, all_mean, all_std


@dataclass
class NormalisedScores:
    """AS-norm output: normalised scores and the side information QMF needs.

    Attributes:
        scores: ``[num_trials]`` normalised scores.
        side: ``[num_trials, len(SIDE_COLUMNS)]`` raw cosine, durations (s; NaN if unknown),
            L2 norms of the mean-subtracted embeddings, top-N cohort means of both sides.
        columns: The same columns, those of one embedding as values per embedding with the
            trials' rows, for :func:`write_scores` (None: write ``side``).
    """

    scores: np.ndarray
    side: np.ndarray
    columns: list[np.ndarray | IndexedColumn] | None = None  # ``side`` as written (see write_scores)


def _side_stats(
    table_keys: Sequence[str], matrix: np.ndarray, rows: tuple[np.ndarray, ...], mean: np.ndarray | None,
    cohort: Cohort, top_n: int, source: str, chunk_size: int, exact: bool,
) -> tuple[np.ndarray, tuple[np.ndarray, ...], dict[str, np.ndarray]]:
    """Unit vectors, norms and cohort statistics of the rows of one table that trials use.

    Returns the statistics of the used rows and, for each array of ``rows``, its rows in that numbering.
    """
    used, *positions = compact_rows(len(table_keys), *rows)
    sub_keys = [table_keys[row] for row in used]
    matrix = np.asarray(matrix)
    # float32 unless exact: the raw embeddings are float32 anyway, and a float64 copy of 140 k
    # x 256 costs more to allocate than the cosine products gain in precision (about 1e-7)
    used_matrix = matrix if used.size == matrix.shape[0] else matrix[used]
    unit, norms = unit_rows(sub_keys, used_matrix, mean, source, dtype=np.float64 if exact else np.float32)
    stats = dict(zip(("mean", "std", "all_mean", "all_std"),
                     cohort_statistics(unit, sub_keys, cohort, top_n, chunk_size, exact)))
    small = stats["std"] < MIN_COHORT_STD
    if small.any():
        logger.warning("%d embeddings of %s have a cohort score spread below %g (identical cohort members?); "
                       "it is floored there", int(small.sum()), source, MIN_COHORT_STD)
        stats["std"] = np.maximum(stats["std"], MIN_COHORT_STD)
    return unit, tuple(positions), {"norm": norms, **stats}


def as_norm_trials(
    trials: Sequence[Trial],
    enroll: tuple[Sequence[str], np.ndarray],
    test: tuple[Sequence[str], np.ndarray],
    cohort: Cohort,
    mean: np.ndarray | None = None,
    top_n: int = DEFAULT_TOP_N,
    enroll_durations: Mapping[str, float] | None = None,
    test_durations: Mapping[str, float] | None = None,
    trials_path: PathLike | None = None,
    enroll_source: str = "enroll embeddings",
    test_source: str = "test embeddings",
    chunk_size: int = DEFAULT_CHUNK,
    exact: bool = False,
) -> NormalisedScores:
    """AS-norm (or S-norm, ``top_n >=`` cohort size) of cosine trial scores.

    Args:
        trials: ``(enroll, test, label)`` tuples.
        enroll: ``(keys, matrix)`` raw enrolment embeddings.
        test: ``(keys, matrix)`` raw test embeddings (may be the same object as ``enroll``).
        cohort: Cohort built with the same ``mean``.
        mean: Vector subtracted from every embedding, or None.
        top_n: Cohort scores per side; capped at the cohort size with a warning.
        enroll_durations: Enrol key -> duration (s), or None (NaN in the side columns).
        test_durations: Test key -> duration (s), or None.
        trials_path: Trial file name for error messages.
        enroll_source: Name of the enrolment table, for messages.
        test_source: Name of the test table, for messages.
        chunk_size: Embeddings per cohort matrix product.
        exact: Top-N cohort scores in float64 (see :func:`cohort_statistics`).

    Returns:
        The normalised scores and their side columns (see :data:`SIDE_COLUMNS`).

    Raises:
        DataDirError: for a trial key missing from its table or a zero-norm embedding.
        ValueError: on ``top_n < 1``, an empty cohort or mismatched dimensions.
    """
    if top_n < 2:
        raise ValueError(f"top_n must be at least 2 (the spread of one score is 0), got {top_n}")
    if not cohort.keys:
        raise ValueError(f"cohort {cohort.source} is empty")
    dim = cohort.unit.shape[1]
    for name, (_, matrix) in (("enroll", enroll), ("test", test)):
        if np.asarray(matrix).shape[1] != dim:
            raise ValueError(f"{name} embeddings have dimension {np.asarray(matrix).shape[1]} but the cohort {dim}")
    if top_n > len(cohort.keys):
        logger.warning("AS-norm: top-N %d is more than the %d members of cohort %s; using all of them (S-norm)",
                       top_n, len(cohort.keys), cohort.source)
        top_n = len(cohort.keys)
    start = time.perf_counter()
    enroll_keys, enroll_matrix = enroll
    test_keys, test_matrix = test
    enroll_rows, test_rows = trial_rows(trials, enroll_keys, test_keys, enroll_source, test_source, trials_path)
    mean_vec = None if mean is None else np.asarray(mean, dtype=np.float32).reshape(-1)
    if enroll is test:
        # One table on both sides (the usual case): each embedding's statistics are computed once.
        e_unit, (e_index, t_index), e_stats = _side_stats(enroll_keys, enroll_matrix, (enroll_rows, test_rows),
                                                          mean_vec, cohort, top_n, enroll_source, chunk_size, exact)
        t_unit, t_stats = e_unit, e_stats
    else:
        e_unit, (e_index,), e_stats = _side_stats(enroll_keys, enroll_matrix, (enroll_rows,), mean_vec, cohort, top_n,
                                                  enroll_source, chunk_size, exact)
        t_unit, (t_index,), t_stats = _side_stats(test_keys, test_matrix, (test_rows,), mean_vec, cohort, top_n,
                                                  test_source, chunk_size, exact)
    raw = np.empty(len(trials))
    for begin in range(0, len(trials), chunk_size):  # bounded memory: never [num_trials, dim] at once
        end = begin + chunk_size
        # Products in the units' precision, summed in float64: for unit vectors the error is
        # below 1e-7, and it is 3.5x faster than a float64 einsum on converted copies.
        products = e_unit[e_index[begin:end]]
        products *= t_unit[t_index[begin:end]]
        raw[begin:end] = products.sum(axis=1, dtype=np.float64)
    mu_e, sigma_e = e_stats["mean"][e_index], e_stats["std"][e_index]
    mu_t, sigma_t = t_stats["mean"][t_index], t_stats["std"][t_index]
    normalised = 0.5 * ((raw - mu_e) / sigma_e + (raw - mu_t) / sigma_t)

    def durations(table: Mapping[str, float] | None, keys: Sequence[str]) -> np.ndarray:
        if table is None:
            return np.full(len(keys), np.nan)
        # Looked up once per table row, then gathered per trial (550 k trials: 0.1 s, not 1 s).
        return np.array(list(map(table.get, keys, repeat(np.nan))), dtype=np.float64)

    enroll_dur = durations(enroll_durations, enroll_keys)
    same_durations = enroll is test and enroll_durations is test_durations
    test_dur = enroll_dur if same_durations else durations(test_durations, test_keys)
    columns = [
        raw, IndexedColumn(enroll_dur, enroll_rows), IndexedColumn(test_dur, test_rows),
        IndexedColumn(e_stats["norm"], e_index), IndexedColumn(t_stats["norm"], t_index),
        IndexedColumn(e_stats["mean"], e_index), IndexedColumn(t_stats["mean"], t_index),
    ]
    side = np.stack([column if isinstance(column, np.ndarray) else column.values[column.index] for column in columns],
                    axis=1)
    _compare_with_trials(trials, raw, e_stats, t_stats, e_index, t_index, cohort)
    elapsed = max(time.perf_counter() - start, 1e-9)
    num_embeddings = e_unit.shape[0] + (0 if enroll is test else t_unit.shape[0])
    logger.info("AS-norm (top %d of %d %s cohort members) of %d trials over %d embeddings in %.2f s "
                "(%.0f trials/s, %.0f embeddings/s)", top_n, len(cohort.keys), cohort.kind, len(trials),
                num_embeddings, elapsed, len(trials) / elapsed, num_embeddings / elapsed)
    return NormalisedScores(normalised, side, columns)


def _compare_with_trials(
    trials: Sequence[Trial], raw: np.ndarray, e_stats: dict, t_stats: dict, e_index: np.ndarray,
    t_index: np.ndarray, cohort: Cohort,
) -> None:
    """Logs how the cohort's scores compare with the evaluation set's non-target scores.

    AS-norm assumes that cohort scores look like the evaluation's impostor scores; a cohort from
    another domain (e.g. 16 kHz read speech for 8 kHz telephone trials) breaks that, and then
    the normalisation can hurt. A shift of more than two standard deviations, or a spread
    ratio outside [0.5, 2], gets a warning.
    """
    nontarget = ~trial_labels(trials)
    if nontarget.sum() < 2:
        return
    eval_mean, eval_std = float(raw[nontarget].mean()), float(raw[nontarget].std())
    cohort_mean = float(np.mean(np.concatenate((e_stats["all_mean"], t_stats["all_mean"]))))
    cohort_std = float(np.mean(np.concatenate((e_stats["all_std"], t_stats["all_std"]))))
    shift = abs(cohort_mean - eval_mean) / max(eval_std, 1e-9)
    ratio = cohort_std / max(eval_std, 1e-9)
    message = (f"cohort {cohort.source}: cohort scores mean {cohort_mean:.4f} std {cohort_std:.4f}; evaluation "
               f"non-target scores mean {eval_mean:.4f} std {eval_std:.4f} (shift {shift:.2f} std, spread ratio "
               f"{ratio:.2f})")
    if shift > 2.0 or not 0.5 <= ratio <= 2.0:
        logger.warning("%s: the cohort does not look like this evaluation set's impostors, so AS-norm may hurt; "
                       "an in-domain cohort (--adapt-data in the recipes) usually helps", message)
    else:
        logger.info("%s", message)


def read_durations(data_dir: PathLike, keys: Sequence[str] | None = None) -> dict[str, float]:
    """Durations (s) of a data dir's utterances, and of its speakers as enrolment ids.

    Takes ``utt2dur`` where present, else ``utt2num_frames`` x 10 ms. A speaker's duration (for
    enrolment tables of per-speaker means) is the sum over its utterances in ``spk2utt``.

    Args:
        data_dir: Kaldi data dir.
        keys: Keys that must have a duration (None: no check).

    Returns:
        Key -> seconds.

    Raises:
        DataDirError: if the dir has neither file, or a key has no duration.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataDirError(data_dir, "data dir does not exist")
    if (data_dir / "utt2dur").is_file():
        durations = dict(read_utt2dur(data_dir / "utt2dur"))
        source = data_dir / "utt2dur"
    elif (data_dir / "utt2num_frames").is_file():
        frames = read_utt2num_frames(data_dir / "utt2num_frames")
        durations = {utt: count * FRAME_SHIFT_S for utt, count in frames.items()}
        source = data_dir / "utt2num_frames"
    else:
        raise DataDirError(data_dir, "has neither utt2dur nor utt2num_frames: durations are unknown "
                           "(run the features stage first)")
    if (data_dir / "spk2utt").is_file():
        for speaker, utts in read_spk2utt(data_dir / "spk2utt").items():
            if speaker not in durations:
                durations[speaker] = float(sum(durations.get(utt, 0.0) for utt in utts))
    for key in keys or ():
        if key not in durations:
            raise DataDirError(source, "key has an embedding but no duration", key=key)
    return durations


def as_norm_files(
    trials_path: PathLike,
    enroll_scp: PathLike,
    test_scp: PathLike,
    cohort_scp: PathLike,
    out: PathLike,
    mean_vec: PathLike | None = None,
    cohort_utt2spk: PathLike | None = None,
    top_n: int = DEFAULT_TOP_N,
    enroll_data: PathLike | None = None,
    test_data: PathLike | None = None,
    exact: bool = False,
) -> NormalisedScores:
    """The ``score_norm`` stage: AS-norm / S-norm scores with side columns, to a score file.

    Args:
        trials_path: Kaldi trial list.
        enroll_scp: Enrolment embeddings (``xvector.scp`` or ``spk_xvector.scp``).
        test_scp: Test embeddings.
        cohort_scp: Utterance embeddings of the cohort data dir.
        out: Score file: ``<enroll> <test> <score> <label>`` then :data:`SIDE_COLUMNS`.
        mean_vec: Vector subtracted from every embedding (``mean.vec``), or None.
        cohort_utt2spk: utt2spk of the cohort dir for a speaker cohort; None for an utterance
            cohort (an unlabelled in-domain dir). Its utterances without an embedding in
            ``cohort_scp`` are left out of the speaker means with a warning, and listed in
            ``<out>.dropped.tsv`` (:mod:`speakernet.utils.dropped`; written, empty, for an utterance cohort too).
        top_n: Top cohort scores per side (0 or more than the cohort: all, i.e. S-norm).
        enroll_data: Enrolment data dir for durations (``utt2dur``/``utt2num_frames``), or None.
        test_data: Test data dir for durations, or None.
        exact: Top-N cohort scores in float64 (see :func:`cohort_statistics`).

    Returns:
        The normalised scores and side columns.

    Raises:
        DataDirError: on unreadable inputs or missing keys, naming the file and key.
    """
    trials, enroll, test = load_trial_tables(trials_path, enroll_scp, test_scp)
    mean = read_vector(mean_vec) if mean_vec is not None else None
    cohort_keys, cohort_matrix = load_embeddings(cohort_scp)
    utt2spk = read_utt2spk(cohort_utt2spk) if cohort_utt2spk is not None else None
    if utt2spk is not None:
        missing = [key for key in cohort_keys if key not in utt2spk]
        if missing:
            raise DataDirError(cohort_utt2spk, f"{len(missing)} cohort utterances have no speaker", key=missing[0])
    dropped = without_embedding(utt2spk, cohort_keys) if utt2spk is not None else {}
    cohort = build_cohort(cohort_keys, cohort_matrix, mean, utt2spk, str(cohort_scp), cohort_utt2spk or "utt2spk")
    enroll_durations = read_durations(enroll_data) if enroll_data is not None else None
    if test_data is not None and enroll_data is not None and Path(test_data).resolve() == Path(enroll_data).resolve():
        test_durations = enroll_durations
    else:
        test_durations = read_durations(test_data) if test_data is not None else None
    for name, table, durations in (("enroll", enroll, enroll_durations), ("test", test, test_durations)):
        if durations is None:
            logger.warning("no --%s-data: the %s durations in %s are nan, so QMF cannot use these scores", name,
                           name, out)
            continue
        missing = [key for key in table[0] if key not in durations]
        if missing:
            logger.warning("%d of %d %s embeddings have no duration in the %s data dir (e.g. %s): nan in %s, so QMF "
                           "cannot use these scores", len(missing), len(table[0]), name, name, missing[0], out)
    result = as_norm_trials(
        trials, enroll, test, cohort, mean, top_n if top_n > 0 else len(cohort.keys), enroll_durations,
        test_durations, trials_path, str(enroll_scp), str(test_scp), exact=exact,
    )
    write_scores(out, trials, result.scores, result.columns)
    total = len(utt2spk) if utt2spk is not None else len(cohort_keys)
    log_dropped(logger, f"{cohort_utt2spk or cohort_scp}: AS-norm cohort", dropped, total,
                write_dropped(dropped_path_for(out), dropped),
                f"extract their embeddings into {cohort_scp} to keep them")
    write_provenance(out, {
        "mean_sha256": file_sha256(mean_vec) if mean_vec is not None else None,
        "cohort": str(Path(cohort_scp).resolve()), "cohort_kind": cohort.kind,
        "top_n": min(top_n if top_n > 0 else len(cohort.keys), len(cohort.keys)),
    })
    return result


PROVENANCE_SUFFIX = ".json"


def write_provenance(scores_path: PathLike, record: dict) -> None:
    """Writes ``<scores>.json``: what the normalised scores were made with (read by QMF)."""
    with atomic_write(f"{scores_path}{PROVENANCE_SUFFIX}") as handle:
        json.dump(record, handle, indent=1, sort_keys=True)
        handle.write("\n")


def read_provenance(scores_path: PathLike) -> dict:
    """Reads the record :func:`write_provenance` wrote next to a normalised score file.

    Raises:
        DataDirError: naming the file when it is missing or not such a record.
    """
    path = Path(f"{scores_path}{PROVENANCE_SUFFIX}")
    if not path.is_file():
        raise DataDirError(path, f"missing: {scores_path} was not written by the score_norm stage, which records "
                           "the mean and cohort its scores used there")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataDirError(path, f"not valid JSON: {error}") from None
    missing = [key for key in ("mean_sha256", "cohort", "cohort_kind", "top_n") if not isinstance(record, dict)
               or key not in record]
    if missing:
        raise DataDirError(path, f"lacks {', '.join(missing)}")
    return record
