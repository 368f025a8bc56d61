"""Metrics on hand-computed inputs, against brute force and against scikit-learn's ROC."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_curve

from speakernet.backend.metrics import (
    as_bool_labels,
    bayes_threshold,
    compute_act_dcf,
    compute_cllr,
    compute_det_curve,
    compute_eer,
    compute_metrics,
    compute_min_dcf,
    format_results_table,
)

# Targets 0.9 0.8 0.4, non-targets 0.7 0.3 0.2 0.1. Accepting score >= t:
#   t     0.1  0.2  0.3  0.4  0.7  0.8  0.9  inf
#   fnr   0    0    0    0    1/3  1/3  2/3  1
#   fpr   1    3/4  1/2  1/4  1/4  0    0    0
# fnr - fpr turns from -1/4 (t=0.4) to +1/12 (t=0.7): a = (1/12) / (1/12 + 1/4) = 1/4 of the way back,
# EER = 1/3 + 1/4 * (0 - 1/3) = 1/4 (and fpr there is 1/4 too).
# minDCF, p=0.5: cost/0.5 = fnr + fpr -> 1, .75, .5, .25, .583, .333, .667, 1 -> 0.25 at t=0.4.
# minDCF, p=0.01: cost/0.01 = fnr + 99 fpr -> t=0.8 gives 1/3 (every t <= 0.7 pays >= 24.75) -> 1/3.
# minDCF, p=0.25: cost/0.25 = fnr + 3 fpr -> t=0.4: .75, t=0.7: 1.083, t=0.8: 1/3 -> 1/3.
HAND_SCORES = [0.9, 0.8, 0.4, 0.7, 0.3, 0.2, 0.1]
HAND_LABELS = [1, 1, 1, 0, 0, 0, 0]


def brute_force_curve(scores, labels):
    """O(n^2) sweep: one operating point per distinct score plus 'reject all'."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    points = []
    for threshold in sorted(set(scores.tolist())) + [math.inf]:
        accepted = scores >= threshold
        fnr = np.count_nonzero(~accepted & labels) / np.count_nonzero(labels)
        fpr = np.count_nonzero(accepted & ~labels) / np.count_nonzero(~labels)
        points.append((fnr, fpr, threshold))
    return points


def eer_from_points(fnr, fpr):
    """Where the piecewise-linear curve (fpr, fnr), ordered by increasing fnr, meets fnr == fpr."""
    for k in range(1, len(fnr)):
        d0, d1 = fnr[k - 1] - fpr[k - 1], fnr[k] - fpr[k]
        if d0 < 0 <= d1:
            weight = -d0 / (d1 - d0)  # from point k-1 towards k
            return fnr[k - 1] + weight * (fnr[k] - fnr[k - 1])
    raise AssertionError("no crossing")


def test_det_curve_hand_computed():
    fnr, fpr, thresholds = compute_det_curve(HAND_SCORES, HAND_LABELS)
    np.testing.assert_allclose(fnr, [0, 0, 0, 0, 1 / 3, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(fpr, [1, 0.75, 0.5, 0.25, 0.25, 0, 0, 0])
    np.testing.assert_array_equal(thresholds, [0.1, 0.2, 0.3, 0.4, 0.7, 0.8, 0.9, np.inf])


def test_eer_hand_computed():
    eer, threshold = compute_eer(HAND_SCORES, HAND_LABELS)
    assert eer == pytest.approx(0.25)
    assert threshold == pytest.approx(0.7)


@pytest.mark.parametrize(
    ("p_target", "expected", "expected_threshold"), [(0.5, 0.25, 0.4), (0.01, 1 / 3, 0.8), (0.25, 1 / 3, 0.8)]
)
def test_min_dcf_hand_computed(p_target, expected, expected_threshold):
    min_dcf, threshold = compute_min_dcf(HAND_SCORES, HAND_LABELS, p_target=p_target)
    assert min_dcf == pytest.approx(expected)
    assert threshold == pytest.approx(expected_threshold)


def test_min_dcf_costs_hand_computed():
    # c_miss=10, c_fa=1, p=0.1: cost = fnr + 0.9 fpr; c_def = min(1, 0.9) = 0.9.
    # Points: 1*fnr + 0.9*fpr -> .9, .675, .45, .225, .558, .333, .667, 1 -> 0.225 / 0.9 = 0.25 at t=0.4.
    min_dcf, threshold = compute_min_dcf(HAND_SCORES, HAND_LABELS, p_target=0.1, c_miss=10.0, c_fa=1.0)
    assert min_dcf == pytest.approx(0.25)
    assert threshold == pytest.approx(0.4)


def test_perfect_separation():
    scores = [3.0, 2.5, 2.0, 1.0, 0.5, -1.0]
    labels = [1, 1, 1, 0, 0, 0]
    eer, threshold = compute_eer(scores, labels)
    assert eer == 0.0
    assert 1.0 < threshold <= 2.0
    for p_target in (0.001, 0.01, 0.5):
        assert compute_min_dcf(scores, labels, p_target)[0] == 0.0


def test_perfectly_wrong_scores():
    # Every non-target above every target: EER 1, and the best DCF is a trivial system (1.0).
    scores = [0.0, 0.1, 0.2, 5.0, 6.0]
    labels = [1, 1, 1, 0, 0]
    assert compute_eer(scores, labels)[0] == pytest.approx(1.0)
    assert compute_min_dcf(scores, labels, 0.01)[0] == pytest.approx(1.0)


def test_identical_distributions():
    # Targets and non-targets share the multiset {1, 2, 3, 4}: the curve runs from (0, 1) to (1, 0)
    # along fnr + fpr = 1, so EER = 0.5 exactly and no threshold beats a trivial system (minDCF 1).
    scores = [1, 2, 3, 4, 1, 2, 3, 4]
    labels = [1, 1, 1, 1, 0, 0, 0, 0]
    assert compute_eer(scores, labels)[0] == pytest.approx(0.5)
    for p_target in (0.01, 0.05, 0.5):
        assert compute_min_dcf(scores, labels, p_target)[0] == pytest.approx(1.0)


def test_all_scores_tied():
    scores = np.zeros(10)
    labels = np.arange(10) < 3
    fnr, fpr, thresholds = compute_det_curve(scores, labels)
    np.testing.assert_array_equal(fnr, [0, 1])
    np.testing.assert_array_equal(fpr, [1, 0])
    eer, threshold = compute_eer(scores, labels)
    assert eer == pytest.approx(0.5)
    assert threshold == 0.0
    assert compute_min_dcf(scores, labels, 0.01)[0] == pytest.approx(1.0)


def test_ties_are_never_split():
    # Targets 0.5 0.5, non-targets 0.5 0.1. Distinct thresholds 0.1, 0.5, inf:
    #   t=0.1: fnr 0, fpr 1;  t=0.5: fnr 0, fpr 1/2;  inf: fnr 1, fpr 0.
    # fnr - fpr goes -1/2 -> +1, so EER = 1 + (1 / 1.5) * (0 - 1) = 1/3.
    # A sort that put the tied non-target below the targets would invent the point (0, 0) and report EER 0.
    # minDCF p=0.5: fnr + fpr -> 1, 0.5, 1 -> 0.5 at t=0.5.
    scores = [0.5, 0.5, 0.5, 0.1]
    labels = [1, 1, 0, 0]
    rng = np.random.default_rng(0)
    for _ in range(10):
        order = rng.permutation(4)
        permuted_scores = np.asarray(scores)[order]
        permuted_labels = np.asarray(labels)[order]
        fnr, fpr, thresholds = compute_det_curve(permuted_scores, permuted_labels)
        np.testing.assert_allclose(fnr, [0, 0, 1])
        np.testing.assert_allclose(fpr, [1, 0.5, 0])
        assert compute_eer(permuted_scores, permuted_labels) == pytest.approx((1 / 3, 0.5))
        assert compute_min_dcf(permuted_scores, permuted_labels, 0.5) == pytest.approx((0.5, 0.5))


@pytest.mark.parametrize("quantise", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_against_brute_force(seed, quantise):
    rng = np.random.default_rng(seed)
    num_targets, num_nontargets = 60 + seed * 7, 300 + seed * 11
    scores = np.concatenate([rng.normal(1.5, 1.0, num_targets), rng.normal(0.0, 1.0, num_nontargets)])
    if quantise:  # many ties
        scores = np.round(scores, 1)
    labels = np.arange(scores.size) < num_targets
    order = rng.permutation(scores.size)
    scores, labels = scores[order], labels[order]

    points = brute_force_curve(scores, labels)
    fnr, fpr, thresholds = compute_det_curve(scores, labels)
    np.testing.assert_allclose(fnr, [point[0] for point in points])
    np.testing.assert_allclose(fpr, [point[1] for point in points])
    np.testing.assert_array_equal(thresholds, [point[2] for point in points])

    eer, _ = compute_eer(scores, labels)
    assert eer == pytest.approx(eer_from_points([p[0] for p in points], [p[1] for p in points]), abs=1e-12)
    # The EER lies between the best balanced error and the worse error at the best threshold.
    assert min((p[0] + p[1]) / 2 for p in points) <= eer + 1e-12
    assert eer <= min(max(p[0], p[1]) for p in points) + 1e-12

    for p_target in (0.01, 0.05, 0.3):
        costs = [(p_target * p[0] + (1 - p_target) * p[1]) / min(p_target, 1 - p_target) for p in points]
        min_dcf, threshold = compute_min_dcf(scores, labels, p_target)
        assert min_dcf == pytest.approx(min(costs), abs=1e-12)
        # The returned threshold really achieves that cost.
        accepted = scores >= threshold
        achieved = (p_target * np.mean(~accepted[labels]) + (1 - p_target) * np.mean(accepted[~labels])) / min(
            p_target, 1 - p_target
        )
        assert achieved == pytest.approx(min_dcf, abs=1e-12)


@pytest.mark.parametrize("seed", [3, 4])
def test_eer_against_sklearn_roc(seed):
    rng = np.random.default_rng(seed)
    scores = np.concatenate([rng.normal(2.0, 1.0, 500), rng.normal(0.0, 1.2, 2000)])
    scores = np.round(scores, 2)  # ties too
    labels = np.arange(scores.size) < 500
    # sklearn orders points by decreasing threshold and drops collinear ones (the crossing is unchanged).
    fpr, tpr, _ = roc_curve(labels, scores)
    expected = eer_from_points(list((1 - tpr)[::-1]), list(fpr[::-1]))
    assert compute_eer(scores, labels)[0] == pytest.approx(expected, abs=1e-12)


def test_eer_matches_wespeaker_style_on_untied_scores():
    # Without ties our curve is the cumulative-sum curve with a leading (0, 1) point, so the
    # interpolated EER equals the one computed directly from sorted cumulative counts.
    rng = np.random.default_rng(5)
    scores = np.concatenate([rng.normal(1.0, 1.0, 200), rng.normal(0.0, 1.0, 800)])
    labels = np.arange(scores.size) < 200
    sorted_labels = labels[np.argsort(scores)]
    fnr = np.cumsum(sorted_labels) / 200
    fpr = 1 - np.cumsum(~sorted_labels) / 800
    assert compute_eer(scores, labels)[0] == pytest.approx(eer_from_points(list(fnr), list(fpr)), abs=1e-12)


def test_eer_is_invariant_to_monotone_transforms_and_order():
    rng = np.random.default_rng(6)
    scores = rng.normal(size=400)
    labels = rng.random(400) < 0.3
    eer = compute_eer(scores, labels)[0]
    assert compute_eer(np.exp(scores), labels)[0] == pytest.approx(eer)
    order = rng.permutation(400)
    assert compute_eer(scores[order], labels[order])[0] == pytest.approx(eer)


def test_labels_accept_bools_ints_and_strings():
    strings = ["target" if label else "nontarget" for label in HAND_LABELS]
    for labels in (HAND_LABELS, np.asarray(HAND_LABELS, dtype=bool), strings, np.asarray(strings)):
        assert compute_eer(HAND_SCORES, labels)[0] == pytest.approx(0.25)
    with pytest.raises(ValueError, match="'tgt' at index 1"):
        as_bool_labels(["target", "tgt"])
    with pytest.raises(ValueError, match="0 or 1, got '2' at index 1"):
        as_bool_labels([0, 2])


@pytest.mark.parametrize(
    ("scores", "labels", "message"),
    [
        ([0.1, 0.2], [0, 0], "no target trials"),
        ([0.1, 0.2], [1, 1], "no non-target trials"),
        ([0.1, 0.2], [1], "2 scores but 1 labels"),
        ([0.1, float("nan")], [1, 0], "not finite"),
    ],
)
def test_bad_inputs_raise(scores, labels, message):
    for function in (compute_det_curve, compute_eer, compute_min_dcf, compute_metrics):
        with pytest.raises(ValueError, match=message):
            function(scores, labels)


def test_bad_costs_raise():
    with pytest.raises(ValueError, match="p_target"):
        compute_min_dcf(HAND_SCORES, HAND_LABELS, p_target=1.0)
    with pytest.raises(ValueError, match="costs must be positive"):
        compute_min_dcf(HAND_SCORES, HAND_LABELS, c_fa=0.0)


def test_act_dcf_and_cllr_hand_computed():
    # Bayes threshold at p=0.5 is log(1) = 0. Scores as LLRs: targets 2, -1; non-targets -2, 1.
    # Accept >= 0: miss 1/2, false alarm 1/2 -> cost 0.25 / 0.5 = 1.0.
    scores = [2.0, -1.0, -2.0, 1.0]
    labels = [1, 1, 0, 0]
    assert bayes_threshold(0.5) == 0.0
    assert bayes_threshold(0.01) == pytest.approx(math.log(99))
    assert compute_act_dcf(scores, labels, 0.5) == pytest.approx(1.0)
    # Cllr = [mean(log2(1+e^-2), log2(1+e^1)) + mean(log2(1+e^-2), log2(1+e^1))] / 2.
    expected = (math.log2(1 + math.exp(-2)) + math.log2(1 + math.exp(1))) / 2
    assert compute_cllr(scores, labels) == pytest.approx(expected)
    # Shifting all scores far up makes the system accept everything: act DCF at p=0.5 is then 1.
    assert compute_act_dcf(np.asarray(scores) + 100, labels, 0.5) == pytest.approx(1.0)
    # A well-separated calibrated system: act DCF equals min DCF (0), Cllr near 0.
    assert compute_act_dcf([20.0, 30.0, -20.0, -30.0], labels, 0.5) == 0.0
    assert compute_cllr([20.0, 30.0, -20.0, -30.0], labels) < 1e-8
    # Always outputting 0 costs exactly 1 bit.
    assert compute_cllr([0.0] * 4, labels) == pytest.approx(1.0)


def test_compute_metrics_matches_individual_functions():
    rng = np.random.default_rng(7)
    scores = np.round(np.concatenate([rng.normal(1.0, 1.0, 300), rng.normal(-1.0, 1.0, 700)]), 2)
    labels = np.arange(1000) < 300
    metrics = compute_metrics(scores, labels, p_targets=(0.01, 0.05))
    assert metrics["num_trials"] == 1000
    assert metrics["num_targets"] == 300
    assert metrics["num_nontargets"] == 700
    assert (metrics["eer"], metrics["eer_threshold"]) == pytest.approx(compute_eer(scores, labels))
    for p_target in (0.01, 0.05):
        assert (metrics["min_dcf"][p_target], metrics["min_dcf_threshold"][p_target]) == pytest.approx(
            compute_min_dcf(scores, labels, p_target)
        )
        assert metrics["act_dcf"][p_target] == pytest.approx(compute_act_dcf(scores, labels, p_target))
        assert metrics["min_dcf"][p_target] <= metrics["act_dcf"][p_target] + 1e-12
    assert metrics["cllr"] == pytest.approx(compute_cllr(scores, labels))


def test_format_results_table():
    metrics = compute_metrics(HAND_SCORES, HAND_LABELS)
    table = format_results_table([("vox1_O", metrics), ("longer_name", metrics)])
    lines = table.splitlines()
    assert lines[0].split() == ["name", "#trials", "EER(%)", "minDCF@0.01", "minDCF@0.05"]
    assert lines[1].split() == ["vox1_O", "7", "25.000", "0.3333", "0.3333"]
    assert len(lines) == 3
    assert table.endswith("\n")
