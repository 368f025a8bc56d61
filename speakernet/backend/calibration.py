"""Quality-measure-function (QMF) calibration of AS-norm scores into log-likelihood ratios.

Three steps, each a stage command (``speakernet.bin.qmf``):

1. **Calibration trials** from the training speakers: utterances fall into a short and a long
   duration class, and for each condition (short-short, short-long, long-long) as many target
   as non-target trials are drawn, seeded, without self-pairs or repeated pairs, never from a
   speaker of an evaluation set. The utterances used form a calibration data dir, embedded in
   full (their duration is the quality the calibration learns from, which one fixed crop would
   hide).
2. **Fit**: the AS-norm scores of those trials with their side columns (see
   :mod:`speakernet.backend.normalization`) give 13 features, the score plus min, max,
   max-min and max/min of three pairs: durations (s, capped at 20), L2 norms of the
   mean-subtracted embeddings, and top-N cohort means. A linear logistic regression minimises
   Cllr at the effective prior (0.5 by default), so its output is a log-likelihood ratio.
3. **Apply**: the same features of evaluation scores, mapped by the saved weights.

The model is saved as JSON (no pickle) with the provenance of the AS-norm scores it was fitted on
(the SHA-256 of their mean vector, which identifies the model and its training data, the cohort
and top-N), read from the record the AS-norm stage writes next to every score file: applying it
to scores of another model, checkpoint, mean or cohort is refused.
"""

from __future__ import annotations

import filecmp
import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from speakernet.backend.metrics import compute_cllr
from speakernet.backend.normalization import SIDE_COLUMNS, read_durations, read_provenance
from speakernet.backend.score_files import read_scored_trials, trial_labels, write_scores
from speakernet.data.datadir_ops import subset_data_dir
from speakernet.data.kaldi_dir import DataDirError, read_utt2spk, write_trials
from speakernet.utils.dropped import DROPPED_NAME, log_dropped, write_dropped
from speakernet.utils.fileio import PathLike, atomic_write

logger = logging.getLogger(__name__)

FORMAT = "speakernet-qmf"
VERSION = 1
DURATION_CAP_S = 20.0
CONDITIONS = (("short", "short"), ("short", "long"), ("long", "long"))
# WeSpeaker's classes: short is 2-6 s, long over 6 s. Where too few utterances fall on one side
# (e.g. corpora of 1-4 s clips), the "auto" boundary is the median duration instead.
DEFAULT_BOUNDARY_S = 6.0
MIN_CLASS_FRACTION = 0.2
# Ratios of quality pairs whose smaller value is near 0 (cohort means can be) would explode.
RATIO_FLOOR = 1e-3
FEATURE_NAMES = ("score",) + tuple(
    f"{quality}_{stat}" for quality in ("duration", "norm", "cohort_mean")
    for stat in ("min", "max", "range", "ratio")
)


def calibration_left_out(utt2spk: Mapping[str, str], durations: Mapping[str, float], min_duration: float,
                         exclude_speakers: Collection[str]) -> dict[str, str]:
    """The utterances calibration trials may not use, each with its reason (:mod:`speakernet.utils.dropped`).

    ``evaluation_speaker <spk>`` (a speaker of an evaluation set), ``no_duration`` (none in the
    data dir), ``too_short <dur><<min>s``. The per-speaker draw of :func:`make_calibration_trials`
    leaves out more, by design: those are not listed.
    """
    left_out = {}
    for utt, spk in utt2spk.items():
        duration = durations.get(utt)
        if spk in exclude_speakers:
            left_out[utt] = f"evaluation_speaker {spk}"
        elif duration is None:
            left_out[utt] = "no_duration"
        elif duration < min_duration:
            left_out[utt] = f"too_short {duration:.2f}<{min_duration:.2f}s"
    return left_out


def make_calibration_trials(
    utt2spk: Mapping[str, str],
    durations: Mapping[str, float],
    num_per_condition: int = 5000,
    seed: int = 1024,
    boundary: float | str = "auto",
    min_duration: float = 0.0,
    exclude_speakers: Sequence[str] = (),
    max_utts_per_class: int = 4,
) -> tuple[list[tuple[str, str, str]], float]:
    """Draws duration-stratified calibration trials from labelled utterances.

    Args:
        utt2spk: Utterance -> speaker of the candidate utterances (the training set).
        durations: Utterance -> duration (s).
        num_per_condition: Target trials, and as many non-target trials, per condition
            (short-short, short-long, long-long); fewer when the speakers cannot give that many
            distinct pairs (logged).
        seed: Seed of the draw; the same inputs and seed give the same trials.
        boundary: Duration (s) between the short and the long class, or ``auto``
            (:data:`DEFAULT_BOUNDARY_S` if at least 20 % of the utterances fall on each side,
            else the median duration).
        min_duration: Utterances shorter than this (s) are not used.
        exclude_speakers: Speakers never used (those of the evaluation sets).
        max_utts_per_class: Utterances per speaker and class (seeded choice), which bounds
            the calibration data dir to ``2 * max_utts_per_class`` utterances per speaker.

    Returns:
        ``(trials, boundary)``: ``(utt_a, utt_b, target|nontarget)`` in C order of the pairs'
        first draw, and the boundary used (s).

    Raises:
        ValueError: if no utterance has a duration or there are fewer than two speakers.
    """
    rng = np.random.default_rng(seed)
    excluded = set(exclude_speakers)
    dropped_speakers = sorted({spk for spk in utt2spk.values() if spk in excluded})
    if dropped_speakers:
        logger.warning("calibration trials: %d training speakers also appear in an evaluation set and are not "
                       "used (e.g. %s)", len(dropped_speakers), dropped_speakers[0])
    left_out = calibration_left_out(utt2spk, durations, min_duration, excluded)
    utts = sorted(utt for utt in utt2spk if utt not in left_out)
    if not utts:
        raise ValueError("no utterance with a known duration is left for calibration trials")
    lengths = np.array([durations[utt] for utt in utts])
    if boundary == "auto":
        long_fraction = float(np.mean(lengths > DEFAULT_BOUNDARY_S))
        boundary = DEFAULT_BOUNDARY_S
        if not MIN_CLASS_FRACTION <= long_fraction <= 1 - MIN_CLASS_FRACTION:
            boundary = float(np.median(lengths))
            logger.info("calibration trials: %.0f%% of the utterances are over %.0f s, so the short/long boundary "
                        "is the median duration, %.2f s", 100 * long_fraction, DEFAULT_BOUNDARY_S, boundary)
    boundary = float(boundary)
    by_class: dict[str, dict[str, list[str]]] = {"short": {}, "long": {}}
    for utt, length in zip(utts, lengths):
        by_class["long" if length > boundary else "short"].setdefault(utt2spk[utt], []).append(utt)
    for table in by_class.values():
        for speaker, members in table.items():
            if len(members) > max_utts_per_class:
                picked = rng.choice(len(members), max_utts_per_class, replace=False)
                table[speaker] = [members[i] for i in sorted(picked)]
    speakers = sorted(set(by_class["short"]) | set(by_class["long"]))
    if len(speakers) < 2:
        raise ValueError(f"calibration trials need at least two speakers, got {len(speakers)}")
    trials: list[tuple[str, str, str]] = []
    seen: set[tuple[str, str]] = set()
    for first, second in CONDITIONS:
        made = {"target": 0, "nontarget": 0}
        for label in ("target", "nontarget"):
            candidates_a = sorted(by_class[first])
            if label == "target":
                candidates_a = [spk for spk in candidates_a if spk in by_class[second]
                                and len(set(by_class[first][spk]) | set(by_class[second][spk])) >= 2]
            candidates_b = sorted(by_class[second])
            if not candidates_a or not candidates_b or (
                label == "nontarget" and len(set(candidates_a) | set(candidates_b)) < 2
            ):
                continue
            # Stop at the number of distinct pairs there are: drawing on once every pair is taken
            # would only burn the attempt budget (3 s on a small training set).
            wanted = min(num_per_condition, _distinct_pairs(by_class[first], by_class[second], label, first == second))
            attempts = 0
            while made[label] < wanted and attempts < 20 * num_per_condition:
                attempts += 1
                speaker_a = candidates_a[rng.integers(len(candidates_a))]
                speaker_b = speaker_a if label == "target" else candidates_b[rng.integers(len(candidates_b))]
                if label == "nontarget" and speaker_b == speaker_a:
                    continue
                utt_a = by_class[first][speaker_a][rng.integers(len(by_class[first][speaker_a]))]
                utt_b = by_class[second][speaker_b][rng.integers(len(by_class[second][speaker_b]))]
                pair = (min(utt_a, utt_b), max(utt_a, utt_b))
                if utt_a == utt_b or pair in seen:
                    continue
                seen.add(pair)
                trials.append((utt_a, utt_b, label))
                made[label] += 1
        if min(made.values()) < num_per_condition:
            logger.warning("calibration trials %s-%s: only %d target and %d non-target trials of %d each could be "
                           "drawn from these speakers", first, second, made["target"], made["nontarget"],
                           num_per_condition)
    if not any(label == "target" for *_, label in trials) or all(label == "target" for *_, label in trials):
        raise ValueError("calibration trials need both target and non-target trials; these speakers give "
                         f"{len(trials)} trials of one kind only")
    logger.info("calibration trials: %d (%d target) from %d speakers, short/long boundary %.2f s",
                len(trials), sum(label == "target" for *_, label in trials), len(speakers), boundary)
    return trials, boundary


def _distinct_pairs(
    first: Mapping[str, list[str]], second: Mapping[str, list[str]], label: str, same_class: bool
) -> int:
    """How many distinct unordered utterance pairs (one of ``first``, one of ``second``) there are.

    ``first`` and ``second`` map speakers to their utterances of one duration class; classes
    are disjoint, so for two classes every (a, b) is a distinct pair, and within one class a pair
    is two different utterances. Target pairs are of one speaker, non-target of two.
    """
    sizes_a = {speaker: len(utts) for speaker, utts in first.items()}
    sizes_b = {speaker: len(utts) for speaker, utts in second.items()}
    if same_class:
        same = sum(size * (size - 1) // 2 for size in sizes_a.values())
        total = sum(sizes_a.values())
        return same if label == "target" else (total * total - sum(size * size for size in sizes_a.values())) // 2
    same = sum(size * sizes_b.get(speaker, 0) for speaker, size in sizes_a.items())
    return same if label == "target" else sum(sizes_a.values()) * sum(sizes_b.values()) - same


def make_calibration_set(
    train_data: PathLike,
    out_dir: PathLike,
    exclude_data: Sequence[PathLike] = (),
    num_per_condition: int = 5000,
    seed: int = 1024,
    boundary: float | str = "auto",
    min_duration: float = 0.0,
    max_utts_per_class: int = 4,
) -> list[tuple[str, str, str]]:
    """The ``qmf trials`` stage: ``out_dir/trials`` and ``out_dir/data`` (the utterances used).

    Args:
        train_data: Labelled data dir the trials come from (with ``utt2num_frames`` or ``utt2dur``).
        out_dir: Output dir; ``data/`` is a subset of ``train_data`` (features shared).
        exclude_data: Evaluation data dirs whose speakers must not be used.
        num_per_condition: See :func:`make_calibration_trials`.
        seed: See :func:`make_calibration_trials`.
        boundary: See :func:`make_calibration_trials`.
        min_duration: See :func:`make_calibration_trials`.
        max_utts_per_class: See :func:`make_calibration_trials`.

    Returns:
        The trials.

    Raises:
        DataDirError: on unreadable data dirs.
        ValueError: when no trials can be drawn.
    """
    train_data, out_dir = Path(train_data), Path(out_dir)
    utt2spk = read_utt2spk(train_data / "utt2spk")
    exclude: set[str] = set()
    for data in exclude_data:
        exclude.update(read_utt2spk(Path(data) / "utt2spk").values())
    durations = read_durations(train_data)
    trials, _ = make_calibration_trials(
        utt2spk, durations, num_per_condition, seed, boundary, min_duration, sorted(exclude),
        max_utts_per_class,
    )
    used = sorted({utt for trial in trials for utt in trial[:2]})
    out_dir.mkdir(parents=True, exist_ok=True)
    # Written aside, then only the files whose bytes changed replace the old ones: a re-run that draws
    # the same set (e.g. one more evaluation set of other speakers) leaves every file, and so every
    # embedding and fit made from them, as it was.
    with tempfile.TemporaryDirectory(prefix=".calibration.", dir=out_dir) as tmp:
        fresh = Path(tmp)
        subset_data_dir(train_data, fresh / "data", utt_list=used)
        write_trials(fresh / "trials", trials)
        (out_dir / "data").mkdir(exist_ok=True)
        names = [Path("trials")] + [Path("data") / path.name
                                    for path in sorted((fresh / "data").iterdir()) if path.is_file()]
        for stale in (out_dir / "data").iterdir():
            if stale.is_file() and not (fresh / "data" / stale.name).exists():
                stale.unlink()
        changed = [str(name) for name in names
                   if not ((out_dir / name).is_file() and filecmp.cmp(fresh / name, out_dir / name, shallow=False))]
        for name in changed:
            os.replace(fresh / name, out_dir / name)
    logger.info("calibration set: %d trials over %d utterances in %s (%s)", len(trials), len(used), out_dir,
                f"rewrote {', '.join(changed)}" if changed else "unchanged")
    left_out = calibration_left_out(utt2spk, durations, min_duration, exclude)
    log_dropped(logger, f"{train_data}: calibration candidates", left_out, len(utt2spk),
                write_dropped(out_dir / DROPPED_NAME, left_out),
                "evaluation speakers are never used; give the data dir utt2dur or utt2num_frames, or lower "
                "--min-duration, to keep the others")
    return trials


def quality_features(scores: np.ndarray, side: np.ndarray, duration_cap: float = DURATION_CAP_S) -> np.ndarray:
    """The 13 QMF features of normalised scores (see :data:`FEATURE_NAMES`).

    Args:
        scores: ``[num_trials]`` AS-norm scores.
        side: ``[num_trials, len(SIDE_COLUMNS)]`` side columns of the score file.
        duration_cap: Durations are capped here (s), as WeSpeaker does.

    Returns:
        ``[num_trials, 13]`` float64 features.

    Raises:
        ValueError: on a side matrix of the wrong width or with non-finite values.
    """
    side = np.asarray(side, dtype=np.float64)
    if side.ndim != 2 or side.shape[1] != len(SIDE_COLUMNS):
        raise ValueError(f"expected {len(SIDE_COLUMNS)} side columns ({' '.join(SIDE_COLUMNS)}), got shape "
                         f"{side.shape}")
    column = {name: side[:, index] for index, name in enumerate(SIDE_COLUMNS)}
    features = [np.asarray(scores, dtype=np.float64)]
    pairs = (
        (np.minimum(column["enroll_dur"], duration_cap), np.minimum(column["test_dur"], duration_cap)),
        (column["enroll_norm"], column["test_norm"]),
        (column["enroll_cohort_mean"], column["test_cohort_mean"]),
    )
    for first, second in pairs:
        low, high = np.minimum(first, second), np.maximum(first, second)
        safe_low = np.where(np.abs(low) < RATIO_FLOOR, np.where(low < 0, -RATIO_FLOOR, RATIO_FLOOR), low)
        features += [low, high, high - low, high / safe_low]
    matrix = np.stack(features, axis=1)
    bad = np.flatnonzero(~np.isfinite(matrix).all(axis=1))
    if bad.size:
        raise ValueError(f"{bad.size} trials have non-finite quality features (first: trial {bad[0] + 1}; a "
                         "duration missing from the score file?)")
    return matrix


@dataclass
class QMFModel:
    """A fitted QMF: ``llr = features @ weights + bias``.

    Attributes:
        weights: One weight per :data:`FEATURE_NAMES` entry.
        bias: Offset.
        prior: Effective target prior of the fit.
        duration_cap: Duration cap of the features (s).
        provenance: What the AS-norm scores it was fitted on were made with (``mean_sha256``,
            ``cohort``, ``cohort_kind``, ``top_n``; see ``normalization.write_provenance``).
        info: Fit figures (trials, Cllr before and after, boundary, ...).
    """

    weights: np.ndarray
    bias: float
    prior: float
    duration_cap: float
    provenance: dict
    info: dict

    def apply(self, features: np.ndarray) -> np.ndarray:
        """Calibrated log-likelihood ratios of ``[num_trials, 13]`` features."""
        return np.asarray(features, dtype=np.float64) @ self.weights + self.bias

    def save(self, path: PathLike) -> None:
        """Writes the model as JSON, atomically."""
        record = {
            "format": FORMAT, "version": VERSION, "features": list(FEATURE_NAMES),
            "weights": [float(w) for w in self.weights], "bias": float(self.bias), "prior": self.prior,
            "duration_cap": self.duration_cap, "provenance": self.provenance, "info": self.info,
        }
        with atomic_write(path) as handle:
            json.dump(record, handle, indent=1)
            handle.write("\n")

    @classmethod
    def load(cls, path: PathLike) -> QMFModel:
        """Reads a model written by :meth:`save`.

        Raises:
            DataDirError: naming the file when it is missing, not JSON, or not a QMF model.
        """
        path = Path(path)
        if not path.is_file():
            raise DataDirError(path, "QMF model does not exist (run the QMF stage first)")
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise DataDirError(path, f"QMF model is not valid JSON: {error}") from None
        if not isinstance(record, dict) or record.get("format") != FORMAT or record.get("version") != VERSION:
            raise DataDirError(path, f"not a {FORMAT} version {VERSION} file")
        missing = [key for key in ("features", "weights", "bias", "prior", "duration_cap", "provenance")
                   if key not in record]
        if missing:
            raise DataDirError(path, f"QMF model lacks {', '.join(missing)}")
        if record["features"] != list(FEATURE_NAMES):
            raise DataDirError(path, f"QMF model has other features than this version's {len(FEATURE_NAMES)}")
        try:
            weights = np.asarray(record["weights"], dtype=np.float64).reshape(-1)
            bias, prior, cap = float(record["bias"]), float(record["prior"]), float(record["duration_cap"])
        except (TypeError, ValueError) as error:
            raise DataDirError(path, f"QMF model has a non-numeric weight, bias, prior or duration_cap ({error})"
                               ) from None
        finite = np.isfinite(weights).all() and np.isfinite([bias, cap]).all()
        if weights.shape != (len(FEATURE_NAMES),) or not finite:
            raise DataDirError(path, f"QMF model needs {len(FEATURE_NAMES)} finite weights and a finite bias")
        if not isinstance(record["provenance"], dict):
            raise DataDirError(path, "QMF model's provenance is not a record")
        return cls(weights, bias, prior, cap, dict(record["provenance"]), dict(record.get("info", {})))


def fit_qmf(features: np.ndarray, labels: np.ndarray, prior: float = 0.5) -> tuple[np.ndarray, float]:
    """Fits a linear logistic regression minimising Cllr at ``prior`` (L-BFGS, float64).

    Features are standardised for the optimiser (the solution is mapped back, so the saved
    weights apply to raw features); the objective is the prior-weighted cross-entropy
    ``prior * mean_tar log(1 + e^-(l + logit p)) + (1 - prior) * mean_non log(1 + e^(l + logit p))``
    with ``l = x.w + b``, whose minimiser makes ``l`` a log-likelihood ratio.

    Args:
        features: ``[num_trials, k]``.
        labels: Boolean targets.
        prior: Effective target prior in (0, 1).

    Returns:
        ``(weights [k], bias)``.

    Raises:
        ValueError: without both target and non-target trials, or on a prior outside (0, 1).
    """
    if not 0.0 < prior < 1.0:
        raise ValueError(f"prior must be in (0, 1), got {prior}")
    labels = np.asarray(labels, dtype=bool)
    if labels.all() or not labels.any():
        raise ValueError("QMF needs both target and non-target calibration trials")
    features = np.asarray(features, dtype=np.float64)
    centre, scale = features.mean(axis=0), features.std(axis=0)
    scale[scale == 0] = 1.0
    x = (features - centre) / scale
    offset = math.log(prior / (1 - prior))
    weight = np.where(labels, prior / labels.sum(), (1 - prior) / (~labels).sum())
    sign = np.where(labels, -1.0, 1.0)  # cost log(1 + e^(sign * (l + offset)))

    def objective(params: np.ndarray) -> tuple[float, np.ndarray]:
        llr = x @ params[:-1] + params[-1]
        margin = sign * (llr + offset)
        loss = float(np.sum(weight * np.logaddexp(0.0, margin)))
        grad_llr = weight * sign / (1.0 + np.exp(-margin))  # d loss / d llr
        return loss, np.append(x.T @ grad_llr, grad_llr.sum())

    from scipy.optimize import minimize  # (imported here: only fitting needs it, a third of a second of CPU)

    start = np.zeros(x.shape[1] + 1)
    start[0] = 1.0  # the score itself: the usual starting point of score calibration
    result = minimize(objective, start, jac=True, method="L-BFGS-B", options={"maxiter": 1000, "gtol": 1e-9})
    if not result.success:
        logger.warning("QMF fit: L-BFGS stopped before converging (%s)", result.message)
    weights = result.x[:-1] / scale
    bias = float(result.x[-1] - np.dot(weights, centre))
    return weights, bias


def _read_normalised(path: PathLike) -> tuple[list, np.ndarray, np.ndarray]:
    trials, scores, side = read_scored_trials(path)
    if side.shape[1] != len(SIDE_COLUMNS):
        raise DataDirError(path, f"has {side.shape[1]} side columns, QMF needs the {len(SIDE_COLUMNS)} of the "
                           f"AS-norm stage ({' '.join(SIDE_COLUMNS)})")
    bad = np.argwhere(~np.isfinite(side))
    if bad.size:
        row, column = (int(value) for value in bad[0])
        raise DataDirError(path, f"side column {SIDE_COLUMNS[column]} is not finite ({len(np.unique(bad[:, 0]))} "
                           "trials; were the data dirs given to the AS-norm stage for durations?)",
                           key=f"{trials[row][0]} {trials[row][1]}")
    return trials, scores, side


def train_qmf_files(scores_path: PathLike, out: PathLike, prior: float = 0.5, info: dict | None = None) -> QMFModel:
    """The ``qmf train`` stage: fits a QMF on AS-norm scores of calibration trials.

    Args:
        scores_path: AS-norm score file of the calibration trials (with side columns and the
            provenance record the AS-norm stage writes next to it).
        out: Model file (JSON).
        prior: Effective target prior of the fit.
        info: Extra figures to store in the model's ``info``.

    Returns:
        The model.

    Raises:
        DataDirError: on unreadable inputs or features that are not finite (naming the file).
        ValueError: on a prior outside (0, 1).
    """
    if not 0.0 < prior < 1.0:
        raise ValueError(f"--prior must be in (0, 1), got {prior}")
    start = time.perf_counter()
    provenance = read_provenance(scores_path)
    trials, scores, side = _read_normalised(scores_path)
    labels = trial_labels(trials)
    try:
        features = quality_features(scores, side)
        weights, bias = fit_qmf(features, labels, prior)
    except ValueError as error:
        raise DataDirError(scores_path, str(error)) from None
    calibrated = features @ weights + bias
    before = compute_cllr(scores, labels)
    after = compute_cllr(calibrated, labels)
    model = QMFModel(weights, bias, prior, DURATION_CAP_S, provenance, {
        **(info or {}), "trials": len(trials), "targets": int(labels.sum()), "cllr_raw_asnorm": before,
        "cllr_calibrated": after, "scores": str(scores_path),
    })
    model.save(out)
    logger.info("QMF fitted on %d calibration trials in %.2f s: Cllr %.4f (AS-norm scores as LLRs) -> %.4f bits; "
                "model in %s", len(trials), time.perf_counter() - start, before, after, out)
    return model


def apply_qmf_files(model_path: PathLike, scores_path: PathLike, out: PathLike) -> np.ndarray:
    """The ``qmf apply`` stage: calibrated LLRs of AS-norm evaluation scores.

    Args:
        model_path: Model written by :func:`train_qmf_files`.
        scores_path: AS-norm score file with side columns and its provenance record.
        out: 4-column score file of log-likelihood ratios.

    Returns:
        The calibrated scores.

    Raises:
        DataDirError: when the scores were normalised otherwise than the model's calibration
            scores (another model, checkpoint, mean, cohort or top-N), or on unreadable inputs.
    """
    start = time.perf_counter()
    model = QMFModel.load(model_path)
    provenance = read_provenance(scores_path)
    differing = [key for key in ("mean_sha256", "cohort", "cohort_kind", "top_n")
                 if provenance.get(key) != model.provenance.get(key)]
    if differing:
        what = ", ".join(f"{key} {provenance.get(key)} vs {model.provenance.get(key)}" for key in differing)
        raise DataDirError(model_path, f"QMF model was fitted on AS-norm scores made otherwise than {scores_path} "
                           f"({what}; a model of another exp dir or checkpoint?); fit one for these scores")
    trials, scores, side = _read_normalised(scores_path)
    try:
        calibrated = model.apply(quality_features(scores, side, model.duration_cap))
    except ValueError as error:
        raise DataDirError(scores_path, str(error)) from None
    write_scores(out, trials, calibrated)
    elapsed = max(time.perf_counter() - start, 1e-9)
    logger.info("QMF applied to %d trials of %s in %.2f s (%.0f trials/s)", len(trials), scores_path, elapsed,
                len(trials) / elapsed)
    return calibrated
