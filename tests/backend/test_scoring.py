"""Cosine scoring, score files (3 and 4 columns), and the score / compute_metrics commands."""

from __future__ import annotations

import numpy as np
import pytest

from speakernet.backend.embeddings import write_embeddings, write_vector
from speakernet.backend.metrics import compute_act_dcf, compute_cllr, compute_eer, compute_min_dcf
from speakernet.backend.score_files import read_scores, trial_labels, write_scores
from speakernet.backend.scoring import compute_metrics_files, cosine_score_trials, score_trials_files
from speakernet.bin import compute_metrics as compute_metrics_bin
from speakernet.bin import score as score_bin
from speakernet.data.kaldi_dir import DataDirError, write_trials


def test_cosine_hand_computed():
    # enroll a = [3, 4] (unit [0.6, 0.8]); test b = [4, 3] (unit [0.8, 0.6]) -> 0.48 + 0.48 = 0.96;
    # test c = [0, -2] (unit [0, -1]) -> -0.8; a with itself -> 1.
    enroll = {"a": np.array([3.0, 4.0])}
    test = {"b": np.array([4.0, 3.0]), "c": np.array([0.0, -2.0]), "a": np.array([3.0, 4.0])}
    trials = [("a", "b", "target"), ("a", "c", "nontarget"), ("a", "a", "target")]
    scores = cosine_score_trials(trials, enroll, test)
    np.testing.assert_allclose(scores, [0.96, -0.8, 1.0], rtol=1e-6)
    # Mean [1, 1] subtracted first: a -> [2, 3], b -> [3, 2]: 12 / 13; c -> [-1, -3]: (-2 - 9) / sqrt(13 * 10).
    scores = cosine_score_trials(trials, enroll, test, mean=np.array([1.0, 1.0]))
    np.testing.assert_allclose(scores, [12 / 13, -11 / np.sqrt(130), 1.0], rtol=1e-6)


def test_cosine_matches_naive_loop_and_chunking():
    rng = np.random.default_rng(0)
    enroll_keys = [f"e{index}" for index in range(40)]
    test_keys = [f"t{index}" for index in range(70)]
    enroll = rng.standard_normal((40, 16)).astype(np.float32)
    test = rng.standard_normal((70, 16)).astype(np.float32)
    mean = rng.standard_normal(16).astype(np.float32) * 0.1
    trials = [(enroll_keys[rng.integers(40)], test_keys[rng.integers(70)], "nontarget") for _ in range(1000)]
    expected = []
    for enroll_key, test_key, _ in trials:
        x = enroll[enroll_keys.index(enroll_key)].astype(np.float64) - mean
        y = test[test_keys.index(test_key)].astype(np.float64) - mean
        expected.append(x @ y / np.linalg.norm(x) / np.linalg.norm(y))
    for chunk_size in (1, 7, 4096):
        scores = cosine_score_trials(trials, (enroll_keys, enroll), (test_keys, test), mean, chunk_size=chunk_size)
        assert scores.shape == (1000,)
        np.testing.assert_allclose(scores, expected, atol=1e-5)


def test_missing_key_error_names_trial_line_key_and_table():
    table = (["a", "b"], np.eye(2, dtype=np.float32))
    trials = [("a", "b", "target"), ("a", "zz", "nontarget"), ("b", "zz", "nontarget")]
    with pytest.raises(DataDirError, match=r"data/trials:2 \(key 'zz'\): test key has no embedding in test\.scp "
                                           r"\(2 trials affected\)"):
        cosine_score_trials(trials, table, table, trials_path="data/trials", test_source="test.scp")
    with pytest.raises(DataDirError, match=r"data/trials:1 \(key 'q'\): enroll key .* in enroll\.scp"):
        cosine_score_trials([("q", "a", "target")], table, table, trials_path="data/trials",
                            enroll_source="enroll.scp")


def test_degenerate_embeddings():
    table = (["a", "b", "zero"], np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]], dtype=np.float32))
    # An unused zero vector is harmless.
    np.testing.assert_allclose(cosine_score_trials([("a", "b", "nontarget")], table, table), [0.0], atol=1e-7)
    with pytest.raises(DataDirError, match=r"emb\.scp \(key 'zero'\): .*zero or non-finite norm"):
        cosine_score_trials([("a", "zero", "nontarget")], table, table, enroll_source="emb.scp")
    with pytest.raises(ValueError, match="dimension 3 but embeddings 2"):
        cosine_score_trials([("a", "b", "nontarget")], table, table, mean=np.zeros(3))
    with pytest.raises(ValueError, match="dimension 2 but test embeddings 3"):
        cosine_score_trials([("a", "b", "nontarget")], table, (["b"], np.ones((1, 3))))


def test_trial_labels():
    np.testing.assert_array_equal(trial_labels([("a", "b", "target"), ("a", "c", "nontarget")]), [True, False])


TRIALS = [("e1", "t1", "target"), ("e1", "t2", "nontarget"), ("e2", "t1", "nontarget")]


def test_four_column_round_trip(tmp_path):
    path = tmp_path / "scores"
    write_scores(path, TRIALS, [0.123456, -0.5, 1.0])
    assert path.read_text().splitlines() == [
        "e1 t1 0.12346 target", "e1 t2 -0.50000 nontarget", "e2 t1 1.00000 nontarget"
    ]
    trials, scores = read_scores(path)
    assert trials == TRIALS
    np.testing.assert_allclose(scores, [0.12346, -0.5, 1.0])
    # With the trial list: same result; the labels are checked against it.
    write_trials(tmp_path / "trials", TRIALS)
    trials, scores = read_scores(path, tmp_path / "trials")
    assert trials == TRIALS
    np.testing.assert_allclose(scores, [0.12346, -0.5, 1.0])


def test_three_column_join_any_order(tmp_path):
    write_trials(tmp_path / "trials", TRIALS)
    path = tmp_path / "kaldi_scores"
    path.write_text("e2 t1 1.5\ne1 t1 2.5\n\ne1 t2 -3\n")
    trials, scores = read_scores(path, tmp_path / "trials")
    assert trials == TRIALS
    np.testing.assert_array_equal(scores, [2.5, -3.0, 1.5])
    with pytest.raises(DataDirError, match="3-column scores have no labels"):
        read_scores(path)


def test_join_with_repeated_trials(tmp_path):
    # A trial list that repeats a pair: line-by-line scores work, and so do reordered ones when the
    # repeated pair has one score.
    repeated = TRIALS + [("e1", "t1", "target")]
    write_trials(tmp_path / "trials", repeated)
    (tmp_path / "same_order").write_text("e1 t1 0.1\ne1 t2 0.2\ne2 t1 0.3\ne1 t1 0.1\n")
    trials, scores = read_scores(tmp_path / "same_order", tmp_path / "trials")
    assert trials == repeated
    np.testing.assert_array_equal(scores, [0.1, 0.2, 0.3, 0.1])
    (tmp_path / "reordered").write_text("e2 t1 0.3\ne1 t1 0.1\ne1 t2 0.2\n")
    trials, scores = read_scores(tmp_path / "reordered", tmp_path / "trials")
    np.testing.assert_array_equal(scores, [0.1, 0.2, 0.3, 0.1])


@pytest.mark.parametrize(
    ("content", "pattern"),
    [
        ("e1 t1 0.5\ne1 t2 0.1\n", r"trials:3 \(key 'e2 t1'\): trial has no score"),
        ("e1 t1 0.5\ne1 t2 0.1\ne2 t1 0.2\ne9 t9 0.3\n", r"scores:4 \(key 'e9 t9'\): scored pair is not in"),
        ("e1 t1 0.5\ne1 t2 0.1\ne1 t1 0.2\n", r"scores:3 \(key 'e1 t1'\): trial scored twice .*line 1\)"),
        ("e1 t1 0.5 target\ne1 t2 0.1 target\ne2 t1 0.2 nontarget\n", r"scores:2 .*'target' disagrees"),
    ],
)
def test_join_errors(tmp_path, content, pattern):
    write_trials(tmp_path / "trials", TRIALS)
    (tmp_path / "scores").write_text(content)
    with pytest.raises(DataDirError, match=pattern):
        read_scores(tmp_path / "scores", tmp_path / "trials")


@pytest.mark.parametrize(
    ("content", "pattern"),
    [
        ("e1 t1 0.5 target\ne1 t2 0.1\n", r"scores:2 \(key 'e1'\): expected 4 fields like the first line, got 3"),
        ("e1 t1 abc target\n", r"scores:1 \(key 'e1'\): score 'abc' is not a number"),
        ("e1 t1 nan target\n", r"scores:1 .*not finite"),
        ("e1 t1 0.5 1\n", r"scores:1 .*label must be one of"),
        ("e1 t1\n", r"scores:1 .*got 2 fields"),
        ("\n\n", r"no scores in file"),
    ],
)
def test_malformed_score_files(tmp_path, content, pattern):
    (tmp_path / "scores").write_text(content)
    with pytest.raises(DataDirError, match=pattern):
        read_scores(tmp_path / "scores")


def test_write_scores_validates(tmp_path):
    with pytest.raises(ValueError, match="2 scores for 3 trials"):
        write_scores(tmp_path / "s", TRIALS, [0.1, 0.2])
    with pytest.raises(ValueError, match="trial 2 .*e1 t2.* not finite"):
        write_scores(tmp_path / "s", TRIALS, [0.1, np.inf, 0.2])
    assert not (tmp_path / "s").exists()


def make_experiment(tmp_path, seed=0):
    """Embeddings of 6 speakers x 4 utterances around speaker centres, all-pairs trials."""
    rng = np.random.default_rng(seed)
    keys = [f"spk{speaker}-utt{utt}" for speaker in range(6) for utt in range(4)]
    centres = rng.standard_normal((6, 8))
    matrix = (np.repeat(centres, 4, axis=0) + 0.6 * rng.standard_normal((24, 8)) + 3.0).astype(np.float32)
    write_embeddings(tmp_path / "xvector.ark", tmp_path / "xvector.scp", keys, matrix)
    write_vector(tmp_path / "mean.vec", matrix.mean(axis=0))
    trials = [(a, b, "target" if a[:4] == b[:4] else "nontarget") for i, a in enumerate(keys) for b in keys[i + 1:]]
    write_trials(tmp_path / "trials", trials)
    return keys, matrix, trials


def test_score_command_end_to_end(tmp_path):
    keys, matrix, trials = make_experiment(tmp_path)
    scp = str(tmp_path / "xvector.scp")
    code = score_bin.main(["--trials", str(tmp_path / "trials"), "--enroll-scp", scp, "--test-scp", scp,
                           "--mean-vec", str(tmp_path / "mean.vec"), "--out", str(tmp_path / "scores")])
    assert code == 0
    read_trials_back, scores = read_scores(tmp_path / "scores")
    assert read_trials_back == trials
    centred = matrix - matrix.mean(axis=0)
    unit = centred / np.linalg.norm(centred, axis=1, keepdims=True)
    index = {key: row for row, key in enumerate(keys)}
    expected = [unit[index[a]] @ unit[index[b]] for a, b, _ in trials]
    np.testing.assert_allclose(scores, expected, atol=1e-5)  # file keeps 5 decimals
    # Mean subtraction matters here (all embeddings share a +3 offset): it must improve the EER.
    labels = trial_labels(trials)
    raw = score_trials_files(tmp_path / "trials", scp, scp, tmp_path / "raw_scores")
    assert compute_eer(scores, labels)[0] < compute_eer(raw, labels)[0]


def test_score_command_reports_missing_key(tmp_path):
    make_experiment(tmp_path)
    write_trials(tmp_path / "bad_trials", [("spk0-utt0", "spk0-utt1", "target"), ("spk0-utt0", "ghost", "nontarget")])
    scp = str(tmp_path / "xvector.scp")
    pattern = r"bad_trials:2 \(key 'ghost'\): test key has no embedding in .*xvector\.scp"
    with pytest.raises(DataDirError, match=pattern):
        score_trials_files(tmp_path / "bad_trials", scp, scp, tmp_path / "out")
    args = ["--trials", str(tmp_path / "bad_trials"), "--enroll-scp", scp, "--test-scp", scp, "--out",
            str(tmp_path / "out")]
    assert score_bin.main(args) == 1
    assert not (tmp_path / "out").exists()


def test_compute_metrics_command(tmp_path, capsys):
    write_trials(tmp_path / "trials", [("a", "b", "target"), ("a", "c", "nontarget"), ("b", "c", "nontarget"),
                                       ("a", "d", "target"), ("c", "d", "nontarget")])
    # Scores: targets 0.9, 0.4; non-targets 0.5, 0.1, 0.3 -> thresholds 0.1 .. 0.9:
    #   t=0.4: fnr 0, fpr 1/3; t=0.5: fnr 1/2, fpr 1/3; fnr - fpr: -1/3 -> +1/6, a = (1/6) / (1/2) = 1/3,
    #   EER = 1/2 + 1/3 * (0 - 1/2) = 1/3.
    (tmp_path / "four").write_text(
        "a b 0.9 target\na c 0.5 nontarget\nb c 0.1 nontarget\na d 0.4 target\nc d 0.3 nontarget\n"
    )
    (tmp_path / "three").write_text("c d 0.3\na b 0.9\na d 0.4\nb c 0.1\na c 0.5\n")
    out = tmp_path / "results"
    code = compute_metrics_bin.main(["--scores", str(tmp_path / "four"), "--scores", str(tmp_path / "three"),
                                     "--name", "sys4", "--name", "sys3", "--trials", str(tmp_path / "trials"),
                                     "--out", str(out)])
    assert code == 0
    lines = out.read_text().splitlines()
    assert lines[0].split() == ["name", "#trials", "EER(%)", "minDCF@0.01", "minDCF@0.05"]
    expected_dcf = [f"{compute_min_dcf([0.9, 0.5, 0.1, 0.4, 0.3], [1, 0, 0, 1, 0], p)[0]:.4f}" for p in (0.01, 0.05)]
    assert lines[1].split() == ["sys4", "5", "33.333"] + expected_dcf
    assert lines[2].split() == ["sys3", "5", "33.333"] + expected_dcf
    assert capsys.readouterr().out == out.read_text()

    # Default names are the file names; custom priors change the columns.
    table, rows = compute_metrics_files([tmp_path / "four"], p_targets=(0.5,))
    assert table.splitlines()[0].split()[-1] == "minDCF@0.5"
    assert table.splitlines()[1].split()[0] == "four"
    # minDCF at p=0.5 is fnr + fpr at best: t=0.9 gives 1/2 + 0, t=0.4 gives 0 + 1/3 -> 1/3.
    assert rows[0][1]["min_dcf"][0.5] == pytest.approx(1 / 3)

    # Bad input: the error names the file, and nothing is written.
    assert compute_metrics_bin.main(["--scores", str(tmp_path / "three"), "--out", str(tmp_path / "r2")]) == 1
    assert not (tmp_path / "r2").exists()
    (tmp_path / "all_target").write_text("a b 0.9 target\n")
    with pytest.raises(DataDirError, match=r"all_target: no non-target trials"):
        compute_metrics_files([tmp_path / "all_target"])
    with pytest.raises(ValueError, match="1 names for 2 score files"):
        compute_metrics_files([tmp_path / "four", tmp_path / "three"], names=["x"], trials_path=tmp_path / "trials")


def test_metrics_table_with_llr_rows_results_json_and_threshold_of(tmp_path, capsys):
    import json

    (tmp_path / "cos").write_text("a b 0.9 target\na c 0.5 nontarget\nb c 0.1 nontarget\na d 0.4 target\n")
    (tmp_path / "llr").write_text("a b 2.0 target\na c -1.0 nontarget\nb c -3.0 nontarget\na d 0.5 target\n")
    out = tmp_path / "results"
    code = compute_metrics_bin.main([
        "--scores", str(tmp_path / "cos"), str(tmp_path / "llr"), "--name", "trained:cosine:t", "trained:plda:t",
        "--llr", "trained:plda:t", "--out", str(out), "--threshold-out", str(tmp_path / "threshold"),
        "--threshold-of", "trained:cosine:t",
    ])
    assert code == 0
    lines = out.read_text().splitlines()
    assert lines[0].split()[-3:] == ["actDCF@0.01", "actDCF@0.05", "Cllr"]
    assert lines[1].split()[-3:] == ["-", "-", "-"]
    labels = [True, False, False, True]
    llr = [2.0, -1.0, -3.0, 0.5]
    assert float(lines[2].split()[-1]) == pytest.approx(compute_cllr(llr, labels), abs=5e-5)
    records = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert [(r["model"], r["backend"], r["trials"], r["llr"]) for r in records] == [
        ("trained", "cosine", "t", False), ("trained", "plda", "t", True)]
    assert records[1]["act_dcf"]["0.01"] == pytest.approx(compute_act_dcf(llr, labels, 0.01))
    # the threshold written is the named row's (cosine), not the last row's
    assert float((tmp_path / "threshold").read_text().split()[0]) == pytest.approx(
        compute_eer([0.9, 0.5, 0.1, 0.4], labels)[1], abs=1e-6)
    capsys.readouterr()
    assert compute_metrics_bin.main(["--scores", str(tmp_path / "cos"), "--llr", "nope", "--out", str(out)]) == 1
    assert "--llr names no row: nope" in capsys.readouterr().err


def test_side_columns_round_trip_and_follow_the_trial_order(tmp_path):
    from speakernet.backend.score_files import read_scored_trials

    trials = [("a", "b", "target"), ("a", "c", "nontarget"), ("b", "c", "nontarget")]
    side = np.array([[1.0, 2.5, np.nan], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])
    write_scores(tmp_path / "s", trials, [0.5, -0.25, 0.125], side)
    assert (tmp_path / "s").read_text().splitlines()[0] == "a b 0.50000 target 1 2.5 nan"
    read_trials_back, scores, extra = read_scored_trials(tmp_path / "s")
    assert read_trials_back == trials
    np.testing.assert_array_equal(extra, side)
    # Joined with a trial list in another order: the side columns move with their scores.
    write_trials(tmp_path / "t", trials[::-1])
    joined, scores, extra = read_scored_trials(tmp_path / "s", tmp_path / "t")
    assert joined == trials[::-1] and scores.tolist() == [0.125, -0.25, 0.5]
    np.testing.assert_array_equal(extra, side[::-1])
    # 4-column readers ignore the side columns; a non-number there is an error naming the line.
    assert read_scores(tmp_path / "s")[1].tolist() == [0.5, -0.25, 0.125]
    (tmp_path / "bad").write_text("a b 0.5 target 1 x\n")
    with pytest.raises(DataDirError, match=r"bad:1 .*side columns after the label must be numbers"):
        read_scores(tmp_path / "bad")


def test_unwritable_output_is_one_line_naming_it(tmp_path, capsys):
    write_trials(tmp_path / "trials", TRIALS)
    keys = ["e1", "e2", "t1", "t2"]
    write_embeddings(tmp_path / "e.ark", tmp_path / "e.scp", keys, np.eye(4, dtype=np.float32) + 0.1)
    (tmp_path / "a_dir").mkdir()
    (tmp_path / "a_file").write_text("")
    capsys.readouterr()
    for out in (tmp_path / "a_dir", tmp_path / "a_file" / "scores"):
        code = score_bin.main(["--trials", str(tmp_path / "trials"), "--enroll-scp", str(tmp_path / "e.scp"),
                               "--test-scp", str(tmp_path / "e.scp"), "--out", str(out)])
        err = capsys.readouterr().err
        assert code == 1 and f"{out}: cannot write it" in err and "Traceback" not in err and ".tmp" not in err
    assert sorted(p.name for p in (tmp_path / "a_dir").iterdir()) == []


def test_indexed_side_columns_write_what_the_dense_matrix_writes(tmp_path):
    from speakernet.backend.score_files import IndexedColumn

    rng = np.random.default_rng(3)
    trials = [(f"e{i % 5}", f"t{i % 7}", "target" if i % 3 else "nontarget") for i in range(100_003)]  # past one block
    rows = np.arange(len(trials)) % 5
    per_row = np.array([1.5, np.nan, 1e-7, 123456789.0, -0.25])
    raw = rng.normal(size=len(trials))
    columns = [raw, IndexedColumn(per_row, rows), IndexedColumn(per_row, rows[::-1].copy())]
    dense = np.stack([raw, per_row[rows], per_row[rows[::-1]]], axis=1)
    scores = rng.normal(size=len(trials))
    write_scores(tmp_path / "indexed", trials, scores, columns)
    write_scores(tmp_path / "dense", trials, scores, dense)
    assert (tmp_path / "indexed").read_bytes() == (tmp_path / "dense").read_bytes()
    assert " nan " in (tmp_path / "dense").read_text() and "1.23457e+08" in (tmp_path / "dense").read_text()
    with pytest.raises(ValueError, match="side column 1: index must give one row of its 5 values per trial"):
        write_scores(tmp_path / "bad", trials, scores, [raw, IndexedColumn(per_row, rows + 1)])
    with pytest.raises(ValueError, match="side column 0 has 3 values"):
        write_scores(tmp_path / "bad", trials, scores, [raw[:3]])
