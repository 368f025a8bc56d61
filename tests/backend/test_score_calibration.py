"""Score calibration of a model dir: affine LLR fit, minCllr, FAR thresholds, the file and the stage."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from speakernet.backend.embeddings import write_embeddings, write_vector
from speakernet.backend.metrics import compute_cllr
from speakernet.backend.score_calibration import (
    CALIBRATION_NAME, CalibrationError, ScoreCalibration, fit_affine, fit_score_calibration, min_cllr,
)
from speakernet.bin import calibrate

# Equal-variance Gaussian scores: the true LLR is affine, llr(s) = (m1 - m0) / v * s - (m1^2 - m0^2) / (2 v).
TARGET_MEAN, NONTARGET_MEAN, STD = 0.6, 0.1, 0.15
TRUE_SCALE = (TARGET_MEAN - NONTARGET_MEAN) / STD**2
TRUE_OFFSET = -(TARGET_MEAN**2 - NONTARGET_MEAN**2) / (2 * STD**2)


def _gaussian_trials(num_targets: int, num_nontargets: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    scores = np.concatenate([rng.normal(TARGET_MEAN, STD, num_targets),
                             rng.normal(NONTARGET_MEAN, STD, num_nontargets)])
    return scores, np.arange(len(scores)) < num_targets


@pytest.mark.parametrize("num_targets, num_nontargets", [(20000, 20000), (4000, 40000)])
def test_the_affine_fit_recovers_the_known_llr_whatever_the_class_proportions(num_targets: int,
                                                                               num_nontargets: int) -> None:
    scores, labels = _gaussian_trials(num_targets, num_nontargets)
    scale, offset = fit_affine(scores, labels, prior=0.5)
    assert scale == pytest.approx(TRUE_SCALE, rel=0.05) and offset == pytest.approx(TRUE_OFFSET, rel=0.05)
    for score in (0.1, 0.35, 0.6):  # the LLR itself, where the scores are
        assert scale * score + offset == pytest.approx(TRUE_SCALE * score + TRUE_OFFSET, abs=0.15)
    # calibrated: Cllr near the true LLR's and near minCllr (the best any monotonic map reaches)
    cllr = compute_cllr(scale * scores + offset, labels)
    assert cllr == pytest.approx(compute_cllr(TRUE_SCALE * scores + TRUE_OFFSET, labels), abs=0.005)
    assert min_cllr(scores, labels) <= cllr <= min_cllr(scores, labels) + 0.02
    # a badly scaled score is far from calibrated, and minCllr does not care about scale
    assert compute_cllr(scores, labels) > cllr + 0.3
    assert min_cllr(10 * scores - 3, labels) == pytest.approx(min_cllr(scores, labels), abs=1e-9)


def test_a_fit_at_another_prior_still_gives_an_llr_on_gaussian_scores() -> None:
    scores, labels = _gaussian_trials(20000, 20000, seed=1)
    scale, offset = fit_affine(scores, labels, prior=0.1)
    assert scale == pytest.approx(TRUE_SCALE, rel=0.06) and offset == pytest.approx(TRUE_OFFSET, rel=0.06)


def test_probability_is_the_posterior_at_the_prior() -> None:
    scores, labels = _gaussian_trials(2000, 2000)
    calibration = fit_score_calibration(scores, labels, "trials")
    score = 0.4
    llr = calibration.llr(score)
    assert calibration.probability(score, 0.5) == pytest.approx(1 / (1 + math.exp(-llr)))
    assert calibration.probability(score, 0.01) == pytest.approx(1 / (1 + math.exp(-(llr + math.log(0.01 / 0.99)))))
    assert calibration.probability(-50.0, 0.5) >= 0.0 and calibration.probability(50.0, 0.5) <= 1.0
    with pytest.raises(ValueError, match="prior must be in"):
        calibration.probability(score, 1.0)


@pytest.mark.parametrize("far", [0.1, 0.01, 0.001])
def test_far_threshold_gives_that_false_accept_rate_on_the_non_targets(far: float) -> None:
    scores, labels = _gaussian_trials(3000, 30000, seed=2)
    calibration = fit_score_calibration(scores, labels, "trials")
    chosen = calibration.far_threshold(far)
    nontargets = scores[~labels]
    accepted = int(np.sum(nontargets >= chosen.threshold))
    assert accepted == chosen.false_accepts == int(far * 30000) and chosen.num_nontargets == 30000
    assert chosen.empirical_far <= far
    next_lower = nontargets[nontargets < chosen.threshold].max()  # the lowest such threshold: one step down
    assert np.sum(nontargets >= next_lower) > far * 30000  # accepts one non-target too many
    assert chosen.reliable is (far * 30000 >= 30)
    # on fresh non-targets of the same distribution the FAR is close to the one asked for
    fresh = np.random.default_rng(9).normal(NONTARGET_MEAN, STD, 200000)
    assert np.mean(fresh >= chosen.threshold) == pytest.approx(far, rel=0.35 if far == 0.001 else 0.15)


def test_far_threshold_with_ties_and_below_one_non_target() -> None:
    calibration = fit_score_calibration(np.array([0.9, 0.8, 0.5, 0.5, 0.5, 0.2, 0.1, 0.0]),
                                        np.array([True, True, False, False, False, False, False, False]), "t")
    chosen = calibration.far_threshold(2 / 6)  # two of six allowed, but three share the score 0.5
    assert chosen.threshold > 0.5 and chosen.false_accepts == 0
    assert calibration.far_threshold(0.5).false_accepts == 3  # 0.5 itself: three of six
    none = calibration.far_threshold(0.01)
    assert none.threshold > 0.5 and none.false_accepts == 0 and not none.reliable
    with pytest.raises(ValueError, match="false-accept rate must be in"):
        calibration.far_threshold(0.0)


def test_the_file_round_trips_and_bad_files_are_named(tmp_path: Path) -> None:
    scores, labels = _gaussian_trials(500, 1500)
    calibration = fit_score_calibration(scores, labels, "exp/calibration/trials", 0.5, {"mean_sha256": "ab"})
    path = tmp_path / CALIBRATION_NAME
    calibration.save(path)
    loaded = ScoreCalibration.load(path)
    assert loaded.scale == calibration.scale and loaded.offset == calibration.offset
    assert loaded.num_targets == 500 and loaded.num_nontargets == 1500 and loaded.provenance == {"mean_sha256": "ab"}
    np.testing.assert_allclose(loaded.nontarget_scores, np.sort(scores[~labels]), atol=1e-7)
    assert loaded.far_threshold(0.01).false_accepts == calibration.far_threshold(0.01).false_accepts
    with pytest.raises(CalibrationError, match="does not exist: the model dir has no score calibration; stage 8"):
        ScoreCalibration.load(tmp_path / "missing.json")
    record = json.loads(path.read_text())
    for change, message in (({"version": 2}, "version 2"), ({"format": "x"}, "is not a"),
                            ({"num_nontargets": 3}, "needs num_nontargets")):
        (tmp_path / "bad.json").write_text(json.dumps({**record, **change}))
        with pytest.raises(CalibrationError, match=message):
            ScoreCalibration.load(tmp_path / "bad.json")
    (tmp_path / "bad.json").write_text(json.dumps({key: value for key, value in record.items() if key != "scale"}))
    with pytest.raises(CalibrationError, match="missing or malformed field"):
        ScoreCalibration.load(tmp_path / "bad.json")


def test_the_stage_scores_the_trials_by_mean_subtracted_cosine_and_records_its_inputs(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(6, 16))
    keys, vectors, speakers = [], [], []
    for speaker, centre in enumerate(centres):
        for take in range(4):
            keys.append(f"s{speaker}-{take}")
            vectors.append(centre + 0.7 * rng.normal(size=16) + 2.0)  # + an offset the mean removes
            speakers.append(speaker)
    matrix = np.asarray(vectors, dtype=np.float32)
    write_embeddings(tmp_path / "xvector.ark", tmp_path / "xvector.scp", keys, matrix)
    mean = matrix.mean(axis=0)
    write_vector(tmp_path / "mean.vec", mean)
    lines = [f"{keys[i]} {keys[j]} {'target' if speakers[i] == speakers[j] else 'nontarget'}"
             for i in range(len(keys)) for j in range(i + 1, len(keys))]
    (tmp_path / "trials").write_text("\n".join(lines) + "\n")
    out = tmp_path / CALIBRATION_NAME
    assert calibrate.main(["--trials", str(tmp_path / "trials"), "--scp", str(tmp_path / "xvector.scp"),
                           "--mean-vec", str(tmp_path / "mean.vec"), "--out", str(out)]) == 0
    calibration = ScoreCalibration.load(out)
    unit = (matrix - mean) / np.linalg.norm(matrix - mean, axis=1, keepdims=True)
    expected = sorted(float(unit[i] @ unit[j]) for i in range(len(keys)) for j in range(i + 1, len(keys))
                      if speakers[i] != speakers[j])
    np.testing.assert_allclose(calibration.nontarget_scores, expected, atol=1e-6)
    assert calibration.num_targets == 6 * 6 and calibration.num_nontargets == len(expected)
    assert calibration.scale > 0 and calibration.min_cllr <= calibration.cllr < 1.0
    assert calibration.trials == str(tmp_path / "trials") and len(calibration.provenance["mean_sha256"]) == 64
    # trials of one class cannot be calibrated: one line, exit 1
    (tmp_path / "targets").write_text("\n".join(line for line in lines if line.endswith(" target")) + "\n")
    assert calibrate.main(["--trials", str(tmp_path / "targets"), "--scp", str(tmp_path / "xvector.scp"),
                           "--mean-vec", str(tmp_path / "mean.vec"), "--out", str(tmp_path / "x.json")]) == 1
    assert not (tmp_path / "x.json").exists()
