"""AS-norm / S-norm against a direct per-trial loop, cohort exclusion, side columns, stage errors."""

from __future__ import annotations

import hashlib
import json
import logging

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from speakernet.backend.embeddings import write_embeddings, write_vector
from speakernet.backend.normalization import (
    SIDE_COLUMNS,
    as_norm_trials,
    build_cohort,
    cohort_statistics,
    read_durations,
)
from speakernet.backend.topn import top_values
from speakernet.backend.score_files import read_scored_trials
from speakernet.bin import score_norm as score_norm_bin
from speakernet.data.kaldi_dir import DataDirError, write_scp, write_trials

DIM = 24


def _unit(vector: np.ndarray, mean: np.ndarray) -> np.ndarray:
    centred = vector.astype(np.float64) - mean.astype(np.float64)
    return centred / np.linalg.norm(centred)


def _reference(trials, table, cohort_vectors, mean, top_n, exclude=lambda key, member: False):
    """Direct per-trial loop: cohort scores of both sides for every trial, top-N, then s'."""
    keys, matrix = table
    cohort_keys, cohort_matrix = cohort_vectors
    cohort_units = [_unit(vector, mean) for vector in cohort_matrix]
    out = []
    for enroll, test, _ in trials:
        e = _unit(matrix[keys.index(enroll)], mean)
        t = _unit(matrix[keys.index(test)], mean)
        score = float(e @ t)
        stats = []
        for key, side in ((enroll, e), (test, t)):
            cohort_scores = [float(side @ unit) for member, unit in zip(cohort_keys, cohort_units)
                             if not exclude(key, member)]
            top = np.sort(cohort_scores)[::-1][:top_n]
            stats.append((np.mean(top), np.std(top)))
        out.append(0.5 * ((score - stats[0][0]) / stats[0][1] + (score - stats[1][0]) / stats[1][1]))
    return np.array(out)


@pytest.fixture
def embeddings():
    rng = np.random.default_rng(7)
    keys = [f"u{i:02d}" for i in range(30)]
    matrix = rng.normal(size=(30, DIM)).astype(np.float32)
    cohort_keys = [f"c{i:02d}" for i in range(60)]
    cohort_matrix = rng.normal(size=(60, DIM)).astype(np.float32)
    mean = (0.3 * rng.normal(size=DIM)).astype(np.float32)
    trials = [(keys[i], keys[j], "target" if (i * j) % 4 == 0 else "nontarget")
              for i in range(30) for j in range(30) if i != j][::7]
    return keys, matrix, cohort_keys, cohort_matrix, mean, trials


@pytest.mark.parametrize("top_n", [2, 5, 59, 60])
def test_utterance_cohort_matches_per_trial_loop(embeddings, top_n):
    keys, matrix, cohort_keys, cohort_matrix, mean, trials = embeddings
    cohort = build_cohort(cohort_keys, cohort_matrix, mean)
    expected = _reference(trials, (keys, matrix), (cohort_keys, cohort_matrix), mean, top_n)
    exact = as_norm_trials(trials, (keys, matrix), (keys, matrix), cohort, mean, top_n, chunk_size=7, exact=True)
    np.testing.assert_allclose(exact.scores, expected, rtol=0, atol=1e-6)
    # The default float32 cohort product: float32 rounding of the top-N scores only, amplified by
    # 1 / sigma (so not checked for the tiny spread of a top-2).
    if top_n > 2:
        fast = as_norm_trials(trials, (keys, matrix), (keys, matrix), cohort, mean, top_n, chunk_size=7)
        np.testing.assert_allclose(fast.scores, expected, rtol=0, atol=1e-4)
    assert cohort.kind == "utterance"


@pytest.mark.parametrize("threads", [None, 3])
@pytest.mark.parametrize("width,k", [(6000, 300), (1003, 7), (50, 2), (40, 39), (9, 1), (5, 5)])
def test_top_values_equal_a_full_selection_with_ties_and_excluded_members(width, k, threads):
    rng = np.random.default_rng(width + k)
    scores = rng.normal(size=(64, width)).astype(np.float32)
    scores[:8] = rng.integers(0, 4, size=(8, width)).astype(np.float32)  # heavy ties
    scores[8:16, : width // 2] = -np.inf  # excluded members (-inf), as cohort_statistics marks them
    scores[16, :] = 0.25  # one value everywhere
    scores[17, -1] = 100.0  # the highest value in the last column (past the last whole block)
    scores[18, 0] = 50.0  # and in the first
    before = scores.copy()
    with ThreadPoolExecutor(threads or 1) as pool:
        got = np.sort(top_values(scores, k, pool if threads else None), axis=1)
    expected = np.sort(scores, axis=1)[:, width - k:]
    assert got.shape == (64, k) and np.array_equal(got, expected)
    assert np.array_equal(scores, before)  # the cohort scores are not reordered in place


@pytest.mark.parametrize("top_n", [3, 12])
def test_speaker_cohort_is_the_normalised_speaker_means(embeddings, top_n):
    keys, matrix, cohort_keys, cohort_matrix, mean, trials = embeddings
    utt2spk = {key: f"spk{index % 12:02d}" for index, key in enumerate(cohort_keys)}
    cohort = build_cohort(cohort_keys, cohort_matrix, mean, utt2spk)
    speakers = sorted(set(utt2spk.values()))
    speaker_means = np.stack([
        np.mean([cohort_matrix[i].astype(np.float64) for i, key in enumerate(cohort_keys) if utt2spk[key] == spk],
                axis=0) for spk in speakers
    ])
    table = (keys, matrix)
    result = as_norm_trials(trials, table, table, cohort, mean, top_n, exact=True)  # 12: the whole cohort, S-norm
    expected = _reference(trials, table, (speakers, speaker_means), mean, top_n)
    np.testing.assert_allclose(result.scores, expected, rtol=0, atol=1e-6)
    assert cohort.keys == speakers


def test_own_utterance_and_own_speaker_are_left_out(embeddings):
    keys, matrix, _, _, mean, trials = embeddings
    # The evaluation utterances themselves as an unlabelled cohort: each is left out of its own.
    cohort = build_cohort(keys, matrix, mean)
    table = (keys, matrix)
    for top_n in (4, 29, 30):
        result = as_norm_trials(trials, table, table, cohort, mean, top_n, exact=True)
        expected = _reference(trials, table, (keys, matrix), mean, top_n, exclude=lambda key, member: key == member)
        np.testing.assert_allclose(result.scores, expected, rtol=0, atol=1e-6)
    # A labelled cohort of the same utterances leaves out the speaker mean that holds the utterance.
    utt2spk = {key: f"s{index // 3}" for index, key in enumerate(keys)}
    cohort = build_cohort(keys, matrix, mean, utt2spk)
    speakers = sorted(set(utt2spk.values()))
    means = np.stack([np.mean([matrix[i].astype(np.float64) for i, key in enumerate(keys) if utt2spk[key] == spk],
                              axis=0) for spk in speakers])
    result = as_norm_trials(trials, table, table, cohort, mean, 3, exact=True)
    expected = _reference(trials, table, (speakers, means), mean, 3, exclude=lambda key, member: utt2spk[key] == member)
    np.testing.assert_allclose(result.scores, expected, rtol=0, atol=1e-6)


def test_chunking_does_not_change_statistics(embeddings):
    keys, matrix, cohort_keys, cohort_matrix, mean, _ = embeddings
    cohort = build_cohort(cohort_keys, cohort_matrix, mean)
    unit = np.stack([_unit(vector, mean) for vector in matrix])
    for exact in (True, False):
        whole = cohort_statistics(unit, keys, cohort, 10, chunk_size=1000, exact=exact)
        chunked = cohort_statistics(unit, keys, cohort, 10, chunk_size=4, exact=exact)
        for a, b in zip(whole, chunked):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-7 if not exact else 1e-12)


def test_side_columns_hold_raw_scores_norms_cohort_means_and_durations(embeddings):
    keys, matrix, cohort_keys, cohort_matrix, mean, trials = embeddings
    cohort = build_cohort(cohort_keys, cohort_matrix, mean)
    durations = {key: 1.0 + index for index, key in enumerate(keys)}
    result = as_norm_trials(trials, (keys, matrix), (keys, matrix), cohort, mean, 5, durations, durations, exact=True)
    column = {name: result.side[:, index] for index, name in enumerate(SIDE_COLUMNS)}
    enroll, test = trials[3][0], trials[3][1]
    e, t = matrix[keys.index(enroll)], matrix[keys.index(test)]
    assert column["raw_score"][3] == pytest.approx(float(_unit(e, mean) @ _unit(t, mean)), abs=1e-12)
    assert column["enroll_norm"][3] == pytest.approx(np.linalg.norm(e.astype(np.float64) - mean), rel=1e-9)
    assert column["test_dur"][3] == durations[test]
    cohort_units = np.stack([_unit(vector, mean) for vector in cohort_matrix])
    assert column["enroll_cohort_mean"][3] == pytest.approx(np.sort(cohort_units @ _unit(e, mean))[-5:].mean())


def test_top_n_above_cohort_size_is_capped_with_a_warning(embeddings, caplog):
    keys, matrix, cohort_keys, cohort_matrix, mean, trials = embeddings
    cohort = build_cohort(cohort_keys[:5], cohort_matrix[:5], mean)
    with caplog.at_level(logging.WARNING):
        capped = as_norm_trials(trials, (keys, matrix), (keys, matrix), cohort, mean, 300)
    assert "top-N 300 is more than the 5 members" in caplog.text
    whole = as_norm_trials(trials, (keys, matrix), (keys, matrix), cohort, mean, 5)
    np.testing.assert_array_equal(capped.scores, whole.scores)


def test_far_cohort_is_warned_about(embeddings, caplog):
    keys, matrix, cohort_keys, cohort_matrix, mean, trials = embeddings
    # Evaluation embeddings share a channel offset that the (out-of-domain) cohort lacks, so their
    # non-target scores sit far above the cohort scores.
    offset = np.zeros(DIM, dtype=np.float32)
    offset[0] = 5.0
    table = (keys, matrix + offset)
    cohort = build_cohort(cohort_keys, cohort_matrix, None)
    with caplog.at_level(logging.INFO):
        as_norm_trials(trials, table, table, cohort, None, 10)
    assert "does not look like this evaluation set's impostors" in caplog.text
    caplog.clear()
    in_domain = build_cohort(cohort_keys, cohort_matrix + offset, None)
    with caplog.at_level(logging.INFO):
        as_norm_trials(trials, table, table, in_domain, None, 10)
    assert "shift" in caplog.text and "does not look like" not in caplog.text


def _write_stage_inputs(tmp_path, embeddings):
    keys, matrix, cohort_keys, cohort_matrix, mean, trials = embeddings
    write_embeddings(tmp_path / "test.ark", tmp_path / "test.scp", keys, matrix)
    write_embeddings(tmp_path / "cohort.ark", tmp_path / "cohort.scp", cohort_keys, cohort_matrix)
    write_vector(tmp_path / "mean.vec", mean)
    write_trials(tmp_path / "trials", trials)
    data = tmp_path / "data"
    data.mkdir()
    write_scp(data / "utt2num_frames", {key: str(100 + index) for index, key in enumerate(keys)})
    return data


def test_stage_writes_documented_columns_and_reports_bad_input(tmp_path, embeddings, capsys):
    data = _write_stage_inputs(tmp_path, embeddings)
    out = tmp_path / "asnorm.score"
    args = ["--trials", str(tmp_path / "trials"), "--enroll-scp", str(tmp_path / "test.scp"),
            "--test-scp", str(tmp_path / "test.scp"), "--cohort-scp", str(tmp_path / "cohort.scp"),
            "--mean-vec", str(tmp_path / "mean.vec"), "--enroll-data", str(data), "--test-data", str(data),
            "--top-n", "5", "--out", str(out)]
    assert score_norm_bin.main(args) == 0
    trials, scores, side = read_scored_trials(out)
    assert side.shape == (len(embeddings[5]), len(SIDE_COLUMNS))
    assert len(out.read_text().splitlines()[0].split()) == 4 + len(SIDE_COLUMNS)
    assert side[0, SIDE_COLUMNS.index("enroll_dur")] == pytest.approx(1.0 + embeddings[0].index(trials[0][0]) * 0.01)
    # what the scores were made with, for QMF's check
    provenance = json.loads((tmp_path / "asnorm.score.json").read_text())
    assert provenance == {"mean_sha256": hashlib.sha256((tmp_path / "mean.vec").read_bytes()).hexdigest(),
                          "cohort": str((tmp_path / "cohort.scp").resolve()), "cohort_kind": "utterance", "top_n": 5}
    assert (tmp_path / "asnorm.score.dropped.tsv").read_text() == ""  # an utterance cohort: nothing to leave out
    # a speaker cohort whose utt2spk lists an utterance without an embedding: left out, listed
    cohort_keys = embeddings[2]
    write_scp(tmp_path / "cohort_utt2spk", {**{key: f"s{index % 3}" for index, key in enumerate(cohort_keys)},
                                            "ghost-1": "s0"})
    assert score_norm_bin.main(args + ["--cohort-utt2spk", str(tmp_path / "cohort_utt2spk")]) == 0
    assert (tmp_path / "asnorm.score.dropped.tsv").read_text() == "ghost-1\tno_embedding\n"
    # A trial key missing from the embeddings: one line naming the trial file, line and key.
    with open(tmp_path / "trials", "a") as handle:
        handle.write("u00 nobody nontarget\n")
    capsys.readouterr()
    assert score_norm_bin.main(args) == 1
    err = capsys.readouterr().err
    assert "nobody" in err and f"{tmp_path / 'trials'}:{len(embeddings[5]) + 1}" in err and "Traceback" not in err


def test_read_durations_prefers_utt2dur_and_sums_speakers(tmp_path):
    write_scp(tmp_path / "utt2num_frames", {"a-1": "150", "a-2": "250"})
    write_scp(tmp_path / "spk2utt", {"a": "a-1 a-2"})
    assert read_durations(tmp_path) == pytest.approx({"a-1": 1.5, "a-2": 2.5, "a": 4.0})
    write_scp(tmp_path / "utt2dur", {"a-1": "1.52", "a-2": "2.53"})
    assert read_durations(tmp_path)["a-1"] == pytest.approx(1.52)
    with pytest.raises(DataDirError, match="no duration"):
        read_durations(tmp_path, ["a-3"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataDirError, match="neither utt2dur nor utt2num_frames"):
        read_durations(tmp_path / "empty")
