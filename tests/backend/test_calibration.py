"""QMF: calibration trials, quality features, the fit, its provenance check, the stage command."""

from __future__ import annotations

import os

import itertools
import json
from collections import Counter

import numpy as np
import pytest

from speakernet.backend.calibration import (
    _distinct_pairs,
    FEATURE_NAMES,
    QMFModel,
    apply_qmf_files,
    fit_qmf,
    make_calibration_set,
    make_calibration_trials,
    quality_features,
    train_qmf_files,
)
from speakernet.backend.metrics import compute_cllr
from speakernet.backend.normalization import SIDE_COLUMNS, read_durations, write_provenance
from speakernet.backend.score_files import read_scores, write_scores
from speakernet.bin import qmf as qmf_bin
from speakernet.data.kaldi_dir import DataDirError, read_trials, write_scp
from speakernet.utils.dropped import read_dropped


def _corpus(num_speakers: int = 30, utts: int = 8, seed: int = 0):
    rng = np.random.default_rng(seed)
    utt2spk, durations = {}, {}
    for s in range(num_speakers):
        for u in range(utts):
            utt = f"spk{s:02d}-{u:02d}"
            utt2spk[utt] = f"spk{s:02d}"
            durations[utt] = float(rng.choice([rng.uniform(2, 6), rng.uniform(6.5, 15)]))
    return utt2spk, durations


def test_calibration_trials_are_seeded_balanced_and_free_of_self_pairs():
    utt2spk, durations = _corpus()
    trials, boundary = make_calibration_trials(utt2spk, durations, num_per_condition=40, seed=3,
                                               exclude_speakers=["spk00", "spk01"])
    assert boundary == 6.0
    again, _ = make_calibration_trials(utt2spk, durations, num_per_condition=40, seed=3,
                                       exclude_speakers=["spk00", "spk01"])
    other, _ = make_calibration_trials(utt2spk, durations, num_per_condition=40, seed=4,
                                       exclude_speakers=["spk00", "spk01"])
    assert trials == again and trials != other
    assert all(a != b for a, b, _ in trials)
    pairs = [frozenset((a, b)) for a, b, _ in trials]
    assert len(set(pairs)) == len(pairs)
    for a, b, label in trials:
        assert (utt2spk[a] == utt2spk[b]) == (label == "target")
        assert utt2spk[a] not in ("spk00", "spk01") and utt2spk[b] not in ("spk00", "spk01")
    def duration_class(utt: str) -> str:
        return "long" if durations[utt] > boundary else "short"

    conditions = Counter((tuple(sorted((duration_class(a), duration_class(b)))), label) for a, b, label in trials)
    for condition in (("short", "short"), ("long", "short"), ("long", "long")):
        assert conditions[(condition, "target")] == conditions[(condition, "nontarget")] == 40


def test_a_small_training_set_gives_every_distinct_pair_once(caplog):
    # 3 speakers x 4 utterances: far fewer distinct pairs than asked for, so each condition
    # holds all of its pairs (counted here by brute force), and the shortfall is logged
    utt2spk, durations = _corpus(3, 4)
    trials, boundary = make_calibration_trials(utt2spk, durations, num_per_condition=1000, max_utts_per_class=10)

    def duration_class(utt: str) -> str:
        return "long" if durations[utt] > boundary else "short"

    drawn = Counter((tuple(sorted((duration_class(a), duration_class(b)))), label) for a, b, label in trials)
    possible = Counter()
    for a, b in itertools.combinations(sorted(utt2spk), 2):
        label = "target" if utt2spk[a] == utt2spk[b] else "nontarget"
        possible[(tuple(sorted((duration_class(a), duration_class(b)))), label)] += 1
    assert drawn == possible and len({frozenset(t[:2]) for t in trials}) == len(trials)
    assert "could be drawn from these speakers" in caplog.text
    # the count the draw stops at is that brute-force count
    by_class = {"short": {}, "long": {}}
    for utt in sorted(utt2spk):
        by_class[duration_class(utt)].setdefault(utt2spk[utt], []).append(utt)
    for first, second in (("short", "short"), ("short", "long"), ("long", "long")):
        for label in ("target", "nontarget"):
            count = _distinct_pairs(by_class[first], by_class[second], label, first == second)
            assert count == possible[(tuple(sorted((first, second))), label)], (first, second, label)


def test_auto_boundary_falls_back_to_the_median_for_short_clips():
    utt2spk, _ = _corpus(10, 6)
    durations = {utt: 1.0 + (index % 7) * 0.5 for index, utt in enumerate(sorted(utt2spk))}
    _, boundary = make_calibration_trials(utt2spk, durations, num_per_condition=5)
    assert boundary == pytest.approx(float(np.median(list(durations.values()))))


def test_too_few_speakers_is_an_error():
    with pytest.raises(ValueError, match="at least two speakers"):
        make_calibration_trials({"a-1": "a", "a-2": "a"}, {"a-1": 3.0, "a-2": 8.0})


def _side(num: int, rng: np.random.Generator, durations: np.ndarray) -> np.ndarray:
    side = np.empty((num, len(SIDE_COLUMNS)))
    column = {name: index for index, name in enumerate(SIDE_COLUMNS)}
    side[:, column["raw_score"]] = rng.normal(size=num)
    side[:, column["enroll_dur"]] = durations[:, 0]
    side[:, column["test_dur"]] = durations[:, 1]
    side[:, column["enroll_norm"]] = rng.uniform(5, 10, num)
    side[:, column["test_norm"]] = rng.uniform(5, 10, num)
    side[:, column["enroll_cohort_mean"]] = rng.uniform(0.1, 0.3, num)
    side[:, column["test_cohort_mean"]] = rng.uniform(0.1, 0.3, num)
    return side


def _quality_dependent_scores(num: int, seed: int):
    """Scores whose offset and spread grow as the shorter side's duration falls."""
    rng = np.random.default_rng(seed)
    durations = rng.uniform(1.0, 12.0, size=(num, 2))
    shortest = durations.min(axis=1)
    labels = rng.random(num) < 0.5
    scores = np.where(labels, 3.0, 0.0) + 6.0 / shortest + rng.normal(size=num) * (0.5 + 2.0 / shortest)
    return scores, labels, _side(num, rng, durations)


def test_qmf_lowers_cllr_on_held_out_scores_whose_quality_varies():
    scores, labels, side = _quality_dependent_scores(6000, seed=1)
    weights, bias = fit_qmf(quality_features(scores, side), labels)
    held_scores, held_labels, held_side = _quality_dependent_scores(6000, seed=2)
    qmf_cllr = compute_cllr(quality_features(held_scores, held_side) @ weights + bias, held_labels)
    # The best the score alone can do: an affine calibration fitted the same way.
    affine_weights, affine_bias = fit_qmf(scores[:, None], labels)
    affine_cllr = compute_cllr(held_scores * affine_weights[0] + affine_bias, held_labels)
    assert qmf_cllr < 0.85 * affine_cllr
    assert affine_cllr < compute_cllr(held_scores, held_labels)


def test_fit_minimises_cllr():
    scores, labels, side = _quality_dependent_scores(3000, seed=5)
    features = quality_features(scores, side)
    weights, bias = fit_qmf(features, labels)
    best = compute_cllr(features @ weights + bias, labels)
    rng = np.random.default_rng(0)
    for _ in range(20):  # any small perturbation of the optimum costs more
        nudged = weights * (1 + 0.05 * rng.normal(size=weights.shape))
        assert compute_cllr(features @ nudged + bias, labels) >= best - 1e-9
    assert compute_cllr(features @ weights + bias + 0.1, labels) > best


@pytest.mark.parametrize("prior", [0.5, 0.1, 0.9])
def test_fit_recovers_the_true_llr_at_any_prior(prior):
    # Scores of N(+1, 1) targets and N(-1, 1) non-targets have the exact LLR 2 s at every prior:
    # the prior-weighted fit must find weight 2 and bias 0, not absorb logit(prior) into the bias.
    rng = np.random.default_rng(11)
    labels = np.arange(40_000) % 4 == 0  # 1 target in 4: the data's own proportion is not the prior
    scores = np.where(labels, 1.0, -1.0) + rng.normal(size=labels.size)
    weights, bias = fit_qmf(scores[:, None], labels, prior=prior)
    assert weights[0] == pytest.approx(2.0, abs=0.06) and bias == pytest.approx(0.0, abs=0.06)


def test_quality_features_follow_the_reference_definition():
    side = np.zeros((1, len(SIDE_COLUMNS)))
    side[0] = [0.4, 30.0, 4.0, 6.0, 9.0, 0.2, -0.0001]  # raw, durations, norms, cohort means
    features = dict(zip(FEATURE_NAMES, quality_features(np.array([1.5]), side)[0]))
    assert features["score"] == 1.5
    assert (features["duration_min"], features["duration_max"]) == (4.0, 20.0)  # capped at 20 s
    assert features["duration_range"] == 16.0 and features["duration_ratio"] == 5.0
    assert features["norm_ratio"] == 1.5
    assert features["cohort_mean_ratio"] == pytest.approx(0.2 / -1e-3)  # the near-zero minimum is floored


PROVENANCE = {"mean_sha256": "ab" * 32, "cohort": "/exp/embeddings/latest/train/xvector.scp",
              "cohort_kind": "speaker", "top_n": 300}


def _write_calibration_scores(path, seed: int, provenance: dict = PROVENANCE):
    scores, labels, side = _quality_dependent_scores(2000, seed)
    trials = [(f"e{i}", f"t{i}", "target" if label else "nontarget") for i, label in enumerate(labels)]
    write_scores(path, trials, scores, side)
    write_provenance(path, provenance)
    return trials


def test_train_and_apply_stage_with_provenance_check(tmp_path, capsys):
    _write_calibration_scores(tmp_path / "cal.score", seed=1)
    trials = _write_calibration_scores(tmp_path / "eval.score", seed=2)
    assert qmf_bin.main(["train", "--scores", str(tmp_path / "cal.score"), "--out", str(tmp_path / "qmf.json")]) == 0
    record = json.loads((tmp_path / "qmf.json").read_text())
    assert record["features"] == list(FEATURE_NAMES) and record["info"]["cllr_calibrated"] < 0.7
    assert record["provenance"] == PROVENANCE
    assert qmf_bin.main(["apply", "--model", str(tmp_path / "qmf.json"), "--scores", str(tmp_path / "eval.score"),
                         "--out", str(tmp_path / "eval.qmf.score")]) == 0
    calibrated_trials, calibrated = read_scores(tmp_path / "eval.qmf.score")
    assert calibrated_trials == trials
    model = QMFModel.load(tmp_path / "qmf.json")
    _, raw = read_scores(tmp_path / "eval.score")
    assert compute_cllr(calibrated, [t[2] for t in trials]) < compute_cllr(raw, [t[2] for t in trials])
    assert model.weights.shape == (len(FEATURE_NAMES),)
    # Scores normalised with another mean (another exp dir or checkpoint), cohort or top-N are refused.
    for key, value in (("mean_sha256", "cd" * 32), ("cohort", "/other/xvector.scp"), ("top_n", 100)):
        _write_calibration_scores(tmp_path / "other.score", seed=3, provenance={**PROVENANCE, key: value})
        capsys.readouterr()
        assert qmf_bin.main(["apply", "--model", str(tmp_path / "qmf.json"), "--scores", str(tmp_path / "other.score"),
                             "--out", str(tmp_path / "out.score")]) == 1
        err = capsys.readouterr().err
        assert "qmf.json" in err and f"made otherwise than {tmp_path / 'other.score'} ({key}" in err
        assert not (tmp_path / "out.score").exists()
    # A score file without its provenance record (not from score_norm) is refused too.
    (tmp_path / "other.score.json").unlink()
    with pytest.raises(DataDirError, match=r"other.score.json: missing: .* was not written by the score_norm stage"):
        apply_qmf_files(tmp_path / "qmf.json", tmp_path / "other.score", tmp_path / "x")


def test_bad_inputs_name_the_file_and_key(tmp_path):
    (tmp_path / "plain.score").write_text("a b 0.5 target\nc d 0.1 nontarget\n")
    write_provenance(tmp_path / "plain.score", PROVENANCE)
    with pytest.raises(DataDirError, match=r"plain.score: has 0 side columns"):
        train_qmf_files(tmp_path / "plain.score", tmp_path / "qmf.json")
    (tmp_path / "nan.score").write_text("a b 0.5 target 0.1 nan 3 4 5 0.1 0.2\nc d nan nontarget 0 1 1 1 1 1 1\n")
    write_provenance(tmp_path / "nan.score", PROVENANCE)
    with pytest.raises(DataDirError, match=r"nan.score:2 \(key 'c'\): score 'nan' is not finite"):
        train_qmf_files(tmp_path / "nan.score", tmp_path / "qmf.json")
    (tmp_path / "nan.score").write_text("a b 0.5 target 0.1 nan 3 4 5 0.1 0.2\nc d 0.1 nontarget 0 1 1 1 1 1 1\n")
    with pytest.raises(DataDirError, match=r"nan.score \(key 'a b'\): side column enroll_dur is not finite"):
        train_qmf_files(tmp_path / "nan.score", tmp_path / "qmf.json")
    with pytest.raises(ValueError, match="prior must be in"):
        train_qmf_files(tmp_path / "nan.score", tmp_path / "qmf.json", prior=1.5)
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(DataDirError, match="broken.json: QMF model is not valid JSON"):
        QMFModel.load(tmp_path / "broken.json")
    (tmp_path / "other.json").write_text('{"format": "something"}')
    with pytest.raises(DataDirError, match="not a speakernet-qmf"):
        QMFModel.load(tmp_path / "other.json")
    good = {"format": "speakernet-qmf", "version": 1, "features": list(FEATURE_NAMES), "weights": [0.1] * 13,
            "bias": 0.0, "prior": 0.5, "duration_cap": 20.0, "provenance": PROVENANCE}
    for change, message in (({"bias": None}, "non-numeric"), ({"weights": ["abc"] * 13}, "non-numeric"),
                            ({"weights": [float("nan")] * 13}, "13 finite weights"), ({"weights": [1.0]}, "13 finite"),
                            ({"provenance": None}, "provenance is not a record")):
        (tmp_path / "m.json").write_text(json.dumps({**good, **change}))
        with pytest.raises(DataDirError, match=f"m.json: QMF model.*{message}"):
            QMFModel.load(tmp_path / "m.json")
    (tmp_path / "m.json").write_text(json.dumps({key: value for key, value in good.items() if key != "bias"}))
    with pytest.raises(DataDirError, match="m.json: QMF model lacks bias"):
        QMFModel.load(tmp_path / "m.json")


def test_calibration_set_writes_trials_and_their_data_dir(tmp_path):
    utt2spk, durations = _corpus(12, 6)
    train = tmp_path / "train"
    train.mkdir()
    write_scp(train / "utt2spk", utt2spk)
    spk2utt: dict[str, list[str]] = {}
    for utt, spk in sorted(utt2spk.items()):
        spk2utt.setdefault(spk, []).append(utt)
    write_scp(train / "spk2utt", {spk: " ".join(utts) for spk, utts in spk2utt.items()})
    write_scp(train / "wav.scp", {utt: f"/nonexistent/{utt}.wav" for utt in utt2spk})
    no_duration = sorted(utt2spk)[0]
    write_scp(train / "utt2num_frames",
              {utt: str(round(d * 100)) for utt, d in durations.items() if utt != no_duration})
    test = tmp_path / "test"
    test.mkdir()
    write_scp(test / "utt2spk", {"spk03-00": "spk03"})
    trials = make_calibration_set(train, tmp_path / "cal", exclude_data=[test], num_per_condition=10,
                                  min_duration=3.0)
    assert read_trials(tmp_path / "cal" / "trials") == trials
    used = {utt for trial in trials for utt in trial[:2]}
    kept = set((tmp_path / "cal" / "data" / "utt2spk").read_text().split()[::2])
    assert kept == used and not any(utt.startswith("spk03") for utt in kept)
    # what the trials could not use, with the reason: evaluation speakers, no duration, too short
    short = {utt: d for utt, d in read_durations(train).items() if d < 3.0 and utt2spk[utt] != "spk03"}
    assert short
    expected = {utt: f"evaluation_speaker {spk}" for utt, spk in utt2spk.items() if spk == "spk03"}
    expected.setdefault(no_duration, "no_duration")
    expected.update({utt: f"too_short {d:.2f}<3.00s" for utt, d in short.items()})
    assert read_dropped(tmp_path / "cal" / "dropped.tsv") == dict(sorted(expected.items()))
    assert not used & set(expected)
    # Drawn again with one more (disjoint) evaluation dir: the same set, and not one file rewritten.
    other = tmp_path / "other"
    other.mkdir()
    write_scp(other / "utt2spk", {"x-1": "x"})
    files = sorted((tmp_path / "cal").rglob("*"))
    stamps = {path: path.stat().st_mtime_ns for path in files if path.is_file() and path.name != "dropped.tsv"}
    for path in stamps:
        os.utime(path, ns=(1, 1))
    assert make_calibration_set(train, tmp_path / "cal", exclude_data=[test, other], num_per_condition=10,
                                min_duration=3.0) == trials
    assert all(path.stat().st_mtime_ns == 1 for path in stamps)
    # Without the exclusion spk03 may be drawn: the changed files are replaced, and only they.
    changed = make_calibration_set(train, tmp_path / "cal", num_per_condition=10, min_duration=3.0) != trials
    assert changed and (tmp_path / "cal" / "trials").stat().st_mtime_ns != 1
    fresh = make_calibration_set(train, tmp_path / "cal2", num_per_condition=10, min_duration=3.0)
    assert read_trials(tmp_path / "cal" / "trials") == fresh


def test_equal_durations_give_one_class_and_still_trials():
    utt2spk = {f"s{s}-{u}": f"s{s}" for s in range(4) for u in range(3)}
    trials, boundary = make_calibration_trials(utt2spk, dict.fromkeys(utt2spk, 2.0), num_per_condition=5)
    assert boundary == 2.0 and trials
    assert {label for *_, label in trials} == {"target", "nontarget"}
