"""Verification metrics: DET curve, EER, minimum and actual DCF, Cllr.

All functions take a vector of scores (higher means "more likely the same speaker") and a
vector of labels (``True``/``1``/``"target"`` for target trials, ``False``/``0``/``"nontarget"``
for non-target trials).

Operating points follow one convention everywhere: a trial is *accepted* when
``score >= threshold``. Thresholds are placed only at distinct score values (plus ``+inf`` for
"reject everything"), so tied scores are always accepted or rejected together and no
operating point exists that would split a tie -- a sort-order artefact that makes naive
cumulative-sum implementations report optimistic numbers when scores are quantised.

Everything is computed from one ``O(n log n)`` sort: :func:`compute_metrics` builds the DET
curve once and derives the EER and every DCF from it.

We write this by hand rather than calling ``sklearn.metrics.det_curve``: sklearn drops the
"reject everything" point and does not give the EER interpolation or the Kaldi DCF
normalisation, and its per-call input validation is slower on million-trial lists.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

DEFAULT_P_TARGETS = (0.01, 0.05)


def _as_scores_and_labels(scores: Sequence[float] | np.ndarray, labels: Sequence | np.ndarray) -> tuple:
    """Validates inputs and returns ``(float64 scores, bool labels)``."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = as_bool_labels(labels)
    if scores.shape[0] != labels.shape[0]:
        raise ValueError(f"got {scores.shape[0]} scores but {labels.shape[0]} labels")
    bad = np.flatnonzero(~np.isfinite(scores))
    if bad.size:
        raise ValueError(f"{bad.size} scores are not finite (first at index {bad[0]}: {scores[bad[0]]})")
    num_targets = int(np.count_nonzero(labels))
    if num_targets == 0:
        raise ValueError(f"no target trials among {labels.shape[0]} trials: EER and DCF are undefined")
    if num_targets == labels.shape[0]:
        raise ValueError(f"no non-target trials among {labels.shape[0]} trials: EER and DCF are undefined")
    return scores, labels


def as_bool_labels(labels: Sequence | np.ndarray) -> np.ndarray:
    """Converts trial labels to a boolean array (``True`` = target).

    Args:
        labels: Booleans, integers 0/1, or the strings ``"target"``/``"nontarget"``.

    Returns:
        Boolean array of shape ``[num_trials]``.

    Raises:
        ValueError: on any other label value (the message gives its index).
    """
    array = np.asarray(labels).reshape(-1)
    if array.dtype == np.bool_:
        return array
    if array.dtype.kind in "iuf":
        bad = np.flatnonzero((array != 0) & (array != 1))
        if bad.size:
            raise ValueError(f"numeric labels must be 0 or 1, got '{array[bad[0]]}' at index {bad[0]}")
        return array == 1
    if array.dtype.kind in "UO":
        is_target = array == "target"
        bad = np.flatnonzero(~is_target & (array != "nontarget"))
        if bad.size:
            raise ValueError(f"labels must be 'target' or 'nontarget', got '{array[bad[0]]}' at index {bad[0]}")
        return is_target
    raise ValueError(f"unsupported label dtype {array.dtype}")


def compute_det_curve(
    scores: Sequence[float] | np.ndarray, labels: Sequence | np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Computes the detection error trade-off curve at every distinct threshold.

    Point ``k`` accepts the trials with ``score >= thresholds[k]``. Thresholds increase from
    the smallest score (accept everything: ``fnr = 0``, ``fpr = 1``) to ``+inf`` (reject
    everything: ``fnr = 1``, ``fpr = 0``), with one point per distinct score in between.

    Args:
        scores: Trial scores, shape ``[num_trials]``.
        labels: Trial labels (see :func:`as_bool_labels`).

    Returns:
        ``(fnr, fpr, thresholds)``, float64 arrays of length ``num_distinct_scores + 1``:
        the miss rate (false negative rate) is non-decreasing and the false alarm rate
        (false positive rate) non-increasing along the curve.

    Raises:
        ValueError: if lengths differ, a score is not finite, a label is invalid, or there
            are no target or no non-target trials.
    """
    scores, labels = _as_scores_and_labels(scores, labels)
    order = np.argsort(scores)
    sorted_scores = scores[order]
    targets_below = np.cumsum(labels[order], dtype=np.int64)  # targets among the i+1 lowest scores
    num_trials = sorted_scores.shape[0]
    num_targets = int(targets_below[-1])
    num_nontargets = num_trials - num_targets
    # Last index of each run of equal scores (except the final run): thresholds sit between runs.
    run_ends = np.flatnonzero(sorted_scores[1:] != sorted_scores[:-1])
    rejected_targets = np.concatenate(([0], targets_below[run_ends], [num_targets]))
    rejected_nontargets = np.concatenate(([0], run_ends + 1 - targets_below[run_ends], [num_nontargets]))
    fnr = rejected_targets / num_targets
    fpr = (num_nontargets - rejected_nontargets) / num_nontargets
    thresholds = np.concatenate((sorted_scores[:1], sorted_scores[run_ends + 1], [np.inf]))
    return fnr, fpr, thresholds


def _eer_from_det(fnr: np.ndarray, fpr: np.ndarray, thresholds: np.ndarray) -> tuple[float, float]:
    # fnr - fpr is non-decreasing, -1 at the first point and +1 at the last, so it changes sign
    # exactly once; interpolate linearly between the two points around the change.
    difference = fnr - fpr
    after = int(np.searchsorted(difference, 0.0, side="left"))  # first point with fnr >= fpr (>= 1)
    before = after - 1
    fraction = difference[after] / (difference[after] - difference[before])
    eer = fnr[after] + fraction * (fnr[before] - fnr[after])
    threshold = thresholds[after] if np.isfinite(thresholds[after]) else thresholds[before]
    return float(eer), float(threshold)


def _check_costs(p_target: float, c_miss: float, c_fa: float) -> None:
    if not 0.0 < p_target < 1.0:
        raise ValueError(f"p_target must be in (0, 1), got {p_target}")
    if c_miss <= 0 or c_fa <= 0:
        raise ValueError(f"costs must be positive, got c_miss={c_miss}, c_fa={c_fa}")


def _min_dcf_from_det(
    fnr: np.ndarray, fpr: np.ndarray, thresholds: np.ndarray, p_target: float, c_miss: float, c_fa: float
) -> tuple[float, float]:
    _check_costs(p_target, c_miss, c_fa)
    cost = c_miss * p_target * fnr + c_fa * (1.0 - p_target) * fpr
    best = int(np.argmin(cost))
    default_cost = min(c_miss * p_target, c_fa * (1.0 - p_target))
    return float(cost[best] / default_cost), float(thresholds[best])


def bayes_threshold(p_target: float, c_miss: float = 1.0, c_fa: float = 1.0) -> float:
    """The Bayes decision threshold for scores that are calibrated log-likelihood ratios.

    Args:
        p_target: Prior probability of a target trial.
        c_miss: Cost of a miss.
        c_fa: Cost of a false alarm.

    Returns:
        ``log(c_fa * (1 - p_target) / (c_miss * p_target))`` (natural log).
    """
    _check_costs(p_target, c_miss, c_fa)
    return math.log(c_fa * (1.0 - p_target) / (c_miss * p_target))


def _act_dcf_from_det(
    fnr: np.ndarray, fpr: np.ndarray, thresholds: np.ndarray, p_target: float, c_miss: float, c_fa: float
) -> float:
    # Accepting score >= t for t in (thresholds[k-1], thresholds[k]] is exactly operating point k.
    point = int(np.searchsorted(thresholds, bayes_threshold(p_target, c_miss, c_fa), side="left"))
    cost = c_miss * p_target * fnr[point] + c_fa * (1.0 - p_target) * fpr[point]
    return float(cost / min(c_miss * p_target, c_fa * (1.0 - p_target)))


def compute_eer(scores: Sequence[float] | np.ndarray, labels: Sequence | np.ndarray) -> tuple[float, float]:
    """Computes the equal error rate.

    The EER is read where the miss rate and the false alarm rate cross, interpolating
    linearly between the two DET points around the sign change of ``fnr - fpr`` (as
    WeSpeaker does; on untied scores the numbers agree).

    Args:
        scores: Trial scores, shape ``[num_trials]``.
        labels: Trial labels (see :func:`as_bool_labels`).

    Returns:
        ``(eer, threshold)``: the EER as a fraction in [0, 1] and the decision threshold of
        the first operating point at or past the crossing (accept ``score >= threshold``;
        the largest score if that point is "reject everything").

    Raises:
        ValueError: see :func:`compute_det_curve`.
    """
    return _eer_from_det(*compute_det_curve(scores, labels))


def compute_min_dcf(
    scores: Sequence[float] | np.ndarray,
    labels: Sequence | np.ndarray,
    p_target: float = 0.01,
    c_miss: float = 1.0,
    c_fa: float = 1.0,
) -> tuple[float, float]:
    """Computes the normalised minimum detection cost, as Kaldi's ``sid/compute_min_dcf.py``.

    ``min_t [c_miss * P_miss(t) * p_target + c_fa * P_fa(t) * (1 - p_target)]`` divided by
    ``min(c_miss * p_target, c_fa * (1 - p_target))``, the cost of the better trivial system.

    Args:
        scores: Trial scores, shape ``[num_trials]``.
        labels: Trial labels (see :func:`as_bool_labels`).
        p_target: Prior probability of a target trial, in (0, 1).
        c_miss: Cost of a miss (> 0).
        c_fa: Cost of a false alarm (> 0).

    Returns:
        ``(min_dcf, threshold)``: the normalised minimum cost and the threshold reaching it
        (accept ``score >= threshold``; ``inf`` means rejecting every trial is best).

    Raises:
        ValueError: see :func:`compute_det_curve`; also on ``p_target`` outside (0, 1) or
            non-positive costs.
    """
    return _min_dcf_from_det(*compute_det_curve(scores, labels), p_target, c_miss, c_fa)


def compute_act_dcf(
    scores: Sequence[float] | np.ndarray,
    labels: Sequence | np.ndarray,
    p_target: float = 0.01,
    c_miss: float = 1.0,
    c_fa: float = 1.0,
) -> float:
    """Computes the normalised actual DCF at the Bayes threshold.

    Meaningful only for calibrated scores (natural-log likelihood ratios); raw cosine
    scores give large values here even when the minimum DCF is good.

    Args:
        scores: Trial scores, shape ``[num_trials]``, as log-likelihood ratios.
        labels: Trial labels (see :func:`as_bool_labels`).
        p_target: Prior probability of a target trial, in (0, 1).
        c_miss: Cost of a miss (> 0).
        c_fa: Cost of a false alarm (> 0).

    Returns:
        The detection cost of accepting ``score >= bayes_threshold(...)``, normalised as in
        :func:`compute_min_dcf`.

    Raises:
        ValueError: as :func:`compute_min_dcf`.
    """
    return _act_dcf_from_det(*compute_det_curve(scores, labels), p_target, c_miss, c_fa)


def compute_cllr(scores: Sequence[float] | np.ndarray, labels: Sequence | np.ndarray) -> float:
    """Computes the log-likelihood-ratio cost Cllr in bits.

    ``Cllr = [mean_tar log2(1 + e^-s) + mean_non log2(1 + e^s)] / 2``; 1 bit is the cost of a
    system that always outputs 0, 0 the cost of a perfect calibrated one.

    Args:
        scores: Trial scores as natural-log likelihood ratios, shape ``[num_trials]``.
        labels: Trial labels (see :func:`as_bool_labels`).

    Returns:
        Cllr in bits.

    Raises:
        ValueError: see :func:`compute_det_curve`.
    """
    scores, labels = _as_scores_and_labels(scores, labels)
    # logaddexp(0, x) = log(1 + e^x) without overflow for large |x|.
    target_cost = np.mean(np.logaddexp(0.0, -scores[labels]))
    nontarget_cost = np.mean(np.logaddexp(0.0, scores[~labels]))
    return float((target_cost + nontarget_cost) / (2.0 * math.log(2.0)))


def compute_metrics(
    scores: Sequence[float] | np.ndarray,
    labels: Sequence | np.ndarray,
    p_targets: Sequence[float] = DEFAULT_P_TARGETS,
    c_miss: float = 1.0,
    c_fa: float = 1.0,
) -> dict:
    """Computes every metric from one sort of the scores.

    Args:
        scores: Trial scores, shape ``[num_trials]``.
        labels: Trial labels (see :func:`as_bool_labels`).
        p_targets: Target priors at which to report the DCFs.
        c_miss: Cost of a miss (> 0).
        c_fa: Cost of a false alarm (> 0).

    Returns:
        A dict with ``num_trials``, ``num_targets``, ``num_nontargets`` (int), ``eer`` (fraction),
        ``eer_threshold``, ``min_dcf``, ``min_dcf_threshold`` and ``act_dcf`` (each a dict from
        p_target to a float), and ``cllr`` (bits). ``act_dcf`` and ``cllr`` treat the scores as
        natural-log likelihood ratios.

    Raises:
        ValueError: see :func:`compute_min_dcf`.
    """
    scores, labels = _as_scores_and_labels(scores, labels)
    fnr, fpr, thresholds = compute_det_curve(scores, labels)
    eer, eer_threshold = _eer_from_det(fnr, fpr, thresholds)
    min_dcf, min_dcf_threshold, act_dcf = {}, {}, {}
    for p_target in p_targets:
        p_target = float(p_target)
        min_dcf[p_target], min_dcf_threshold[p_target] = _min_dcf_from_det(
            fnr, fpr, thresholds, p_target, c_miss, c_fa
        )
        act_dcf[p_target] = _act_dcf_from_det(fnr, fpr, thresholds, p_target, c_miss, c_fa)
    num_targets = int(np.count_nonzero(labels))
    return {
        "num_trials": int(labels.shape[0]),
        "num_targets": num_targets,
        "num_nontargets": int(labels.shape[0]) - num_targets,
        "eer": eer,
        "eer_threshold": eer_threshold,
        "min_dcf": min_dcf,
        "min_dcf_threshold": min_dcf_threshold,
        "act_dcf": act_dcf,
        "cllr": compute_cllr(scores, labels),
    }


def format_results_table(rows: Sequence[tuple[str, dict]], p_targets: Sequence[float] = DEFAULT_P_TARGETS) -> str:
    """Formats metrics as an aligned text table, one row per score list.

    When any row's metrics carry ``"llr": True`` (calibrated log-likelihood-ratio scores, e.g.
    after QMF or from PLDA), the table gains actDCF columns at each prior and a Cllr column;
    they are filled for those rows and ``-`` for the others, whose scores are not LLRs.

    Args:
        rows: ``(name, metrics)`` pairs, ``metrics`` as returned by :func:`compute_metrics`,
            optionally with an ``llr`` flag.
        p_targets: The priors whose minDCF columns to show (each must be in every ``metrics``).

    Returns:
        The table, a header line and one line per row, each ending in a newline.
    """
    with_llr = any(metrics.get("llr") for _, metrics in rows)
    header = ["name", "#trials", "EER(%)"] + [f"minDCF@{p:g}" for p in p_targets]
    if with_llr:
        header += [f"actDCF@{p:g}" for p in p_targets] + ["Cllr"]
    lines = [header]
    for name, metrics in rows:
        line = [name, str(metrics["num_trials"]), f"{metrics['eer'] * 100:.3f}"]
        line += [f"{metrics['min_dcf'][float(p)]:.4f}" for p in p_targets]
        if with_llr and metrics.get("llr"):
            line += [f"{metrics['act_dcf'][float(p)]:.4f}" for p in p_targets] + [f"{metrics['cllr']:.4f}"]
        elif with_llr:
            line += ["-"] * (len(p_targets) + 1)
        lines.append(line)
    widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
    text = []
    for line in lines:
        cells = [line[0].ljust(widths[0])] + [cell.rjust(width) for cell, width in zip(line[1:], widths[1:])]
        text.append("  ".join(cells).rstrip() + "\n")
    return "".join(text)
