"""PLDA back-end: LDA, EM, output transform, LLR, model files and the train_plda / score_plda commands."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from speakernet.backend.embeddings import speaker_means, write_embeddings, write_vector
from speakernet.backend.lda import compute_lda, length_normalize
from speakernet.backend.plda import (
    PLDABackend,
    plda_em_step,
    plda_output_transform,
    score_plda_files,
    train_plda_backend,
    train_plda_files,
)
from speakernet.backend.score_files import read_scores
from speakernet.bin import score_plda as score_plda_bin
from speakernet.bin import train_plda as train_plda_bin
from speakernet.data.kaldi_dir import DataDirError, write_scp, write_spk2utt, write_trials


def random_spd(rng: np.random.Generator, dim: int, scale: float) -> np.ndarray:
    factor = rng.standard_normal((dim, dim)) * scale / np.sqrt(dim)
    return factor @ factor.T + 0.3 * scale ** 2 * np.eye(dim)


def two_cov_model(seed: int = 0, dim: int = 8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal(dim) * 2.0, random_spd(rng, dim, 2.0), random_spd(rng, dim, 1.0)


def draw(rng: np.random.Generator, mu, between, within, num_classes: int, per_class: int):
    """Samples ``per_class`` vectors of each of ``num_classes`` classes; returns (matrix, labels, class_means)."""
    centres = rng.multivariate_normal(mu, between, size=num_classes)
    noise = rng.multivariate_normal(np.zeros(mu.size), within, size=(num_classes, per_class))
    matrix = (centres[:, None, :] + noise).reshape(-1, mu.size)
    labels = [f"spk{index:04d}" for index in range(num_classes) for _ in range(per_class)]
    return matrix, labels, centres


def full_llr(enroll, test, mu, between, within, num_utts: int = 1) -> np.ndarray:
    """LLR from the joint Gaussian: the mean of n same-class samples has covariance B + W/n."""
    enroll_cov, test_cov = between + within / num_utts, between + within
    joint = multivariate_normal(np.r_[mu, mu], np.block([[enroll_cov, between], [between, test_cov]]))
    return (joint.logpdf(np.hstack([enroll, test])) - multivariate_normal(mu, enroll_cov).logpdf(enroll)
            - multivariate_normal(mu, test_cov).logpdf(test))


def pairs(rng, mu, between, within, count: int, num_utts: int = 1):
    """``count`` target then ``count`` non-target (enrolment mean of n, test) pairs, as trials and tables."""
    centres = rng.multivariate_normal(mu, between, size=3 * count)
    zero = np.zeros(mu.size)
    enroll = centres[:2 * count] + rng.multivariate_normal(zero, within, size=(2 * count, num_utts)).mean(axis=1)
    test = np.vstack([centres[:count], centres[2 * count:]]) + rng.multivariate_normal(zero, within, size=2 * count)
    keys_e = [f"e{index}" for index in range(2 * count)]
    keys_t = [f"t{index}" for index in range(2 * count)]
    trials = [(keys_e[index], keys_t[index], "target" if index < count else "nontarget") for index in range(2 * count)]
    return trials, (keys_e, enroll), (keys_t, test)


@pytest.fixture(scope="module")
def fitted():
    mu, between, within = two_cov_model()
    matrix, labels, _ = draw(np.random.default_rng(1), mu, between, within, 300, 20)
    backend = train_plda_backend(matrix, labels, lda_dim=None, num_iters=10, length_norm=False)
    return (mu, between, within), backend


def test_llr_matches_the_true_model(fitted):
    (mu, between, within), backend = fitted
    trials, enroll, test = pairs(np.random.default_rng(2), mu, between, within, 300)
    scores = backend.score_trials(trials, enroll, test, normalize_length=False)
    truth = full_llr(enroll[1], test[1], mu, between, within)
    assert np.corrcoef(scores, truth)[0, 1] > 0.999
    assert np.mean(np.abs(scores - truth)) < 0.03 * np.std(truth)
    # Sanity of the synthetic task: targets score far above non-targets.
    assert scores[:300].mean() > scores[300:].mean() + 5


@pytest.mark.parametrize("num_utts", [1, 3])
def test_diagonalised_llr_equals_full_formula_with_fitted_parameters(fitted, num_utts):
    (mu, between, within), backend = fitted
    trials, enroll, test = pairs(np.random.default_rng(3 + num_utts), mu, between, within, 100, num_utts)
    counts = {key: num_utts for key in enroll[0]}
    scores = backend.score_trials(trials, enroll, test, enroll_num_utts=counts, normalize_length=False)
    # Without LDA and length norm the model space is the input space shifted by the subtracted mean.
    fitted_mu = backend.mean + backend.plda_mean
    expected = full_llr(enroll[1], test[1], fitted_mu, backend.between, backend.within, num_utts)
    np.testing.assert_allclose(scores, expected, rtol=1e-6, atol=1e-6)
    # The fitted model is close to the truth it was drawn from.
    np.testing.assert_allclose(fitted_mu, mu, atol=0.5)
    np.testing.assert_allclose(backend.within, within, atol=0.1)


def test_output_transform_diagonalises_both_covariances(fitted):
    _, backend = fitted
    transform, psi = plda_output_transform(backend.between, backend.within)
    np.testing.assert_allclose(transform @ backend.within @ transform.T, np.eye(psi.size), atol=1e-10)
    np.testing.assert_allclose(transform @ backend.between @ transform.T, np.diag(psi), atol=1e-9)
    assert np.all(np.diff(psi) <= 0) and psi[-1] >= 0


def test_vectorised_scoring_matches_per_trial_kaldi_formula_with_mixed_counts(fitted):
    _, backend = fitted
    rng = np.random.default_rng(5)
    enroll = ([f"e{index}" for index in range(30)], rng.standard_normal((30, 8)) * 3)
    test = ([f"t{index}" for index in range(40)], rng.standard_normal((40, 8)) * 3)
    counts = {key: int(rng.choice([1, 2, 5])) for key in enroll[0]}
    trials = [(enroll[0][rng.integers(30)], test[0][rng.integers(40)], "nontarget") for _ in range(500)]
    psi = backend.psi
    expected = []
    for enroll_key, test_key, _ in trials:
        n = counts[enroll_key]
        u = backend.transform_embeddings(enroll[1][[enroll[0].index(enroll_key)]], n)[0]
        v = backend.transform_embeddings(test[1][[test[0].index(test_key)]], 1)[0]
        same_var = 1 + psi / (n * psi + 1)
        expected.append(multivariate_normal(n * psi / (n * psi + 1) * u, np.diag(same_var)).logpdf(v)
                        - multivariate_normal(np.zeros(8), np.diag(1 + psi)).logpdf(v))
    for chunk_size in (1, 7, 4096):
        scores = backend.score_trials(trials, enroll, test, enroll_num_utts=counts, chunk_size=chunk_size)
        np.testing.assert_allclose(scores, expected, rtol=1e-9, atol=1e-9)
    # One table for both sides (enrolment rows normalised with their n, test rows with 1), and n = 1 throughout.
    shared = (enroll[0] + test[0], np.vstack([enroll[1], test[1]]))
    np.testing.assert_allclose(backend.score_trials(trials, shared, shared, enroll_num_utts=counts), expected,
                               rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(backend.score_trials(trials, shared, shared),
                               backend.score_trials(trials, enroll, test), rtol=1e-9, atol=1e-9)
    # Kaldi's --normalize-length: sum v_i^2 / (psi_i + 1/n) equals the dimension.
    u = backend.transform_embeddings(enroll[1], 5)
    np.testing.assert_allclose((u ** 2 / (psi + 1 / 5)).sum(axis=1), 8.0)
    with pytest.raises(DataDirError, match=r"counts\.txt \(key 'e\d+'\): enrolment id of the trials has no"):
        backend.score_trials(trials, enroll, test, enroll_num_utts={}, num_utts_source="counts.txt")


def direct_em_step(matrix, labels, between, within):
    classes = sorted(set(labels))
    members = [matrix[[index for index, label in enumerate(labels) if label == name]] for name in classes]
    mu = np.mean([rows.mean(axis=0) for rows in members], axis=0)
    between_stats = np.zeros_like(between)
    within_stats = sum((rows - rows.mean(axis=0)).T @ (rows - rows.mean(axis=0)) for rows in members)
    for rows in members:
        n, m = len(rows), rows.mean(axis=0) - mu
        sigma = np.linalg.inv(np.linalg.inv(between) + n * np.linalg.inv(within))
        w = sigma @ (n * np.linalg.inv(within) @ m)
        between_stats += sigma + np.outer(w, w)
        within_stats += n * (sigma + np.outer(m - w, m - w))
    return between_stats / len(classes), within_stats / len(matrix)


def class_loglikelihood(matrix, labels, mu, between, within):
    """Exact log-likelihood of the data: each class's samples are jointly Gaussian."""
    total = 0.0
    for name in sorted(set(labels)):
        rows = matrix[[index for index, label in enumerate(labels) if label == name]]
        n = len(rows)
        cov = np.kron(np.eye(n), within) + np.kron(np.ones((n, n)), between)
        total += multivariate_normal(np.tile(mu, n), cov).logpdf(rows.reshape(-1))
    return total


def test_em_step_matches_direct_implementation_and_increases_likelihood():
    rng = np.random.default_rng(6)
    dim, sizes = 3, [1, 2, 2, 3, 4, 5, 1, 6, 3, 2, 4, 7]
    labels = [f"c{index:02d}" for index, size in enumerate(sizes) for _ in range(size)]
    matrix = rng.standard_normal((len(labels), dim)) + np.repeat(rng.standard_normal((len(sizes), dim)) * 2, sizes, 0)
    _, index = np.unique(labels, return_inverse=True)
    counts = np.bincount(index).astype(float)
    means = np.array([matrix[index == c].mean(axis=0) for c in range(len(sizes))])
    scatter = sum((matrix[index == c] - means[c]).T @ (matrix[index == c] - means[c]) for c in range(len(sizes)))
    start_b, start_w = random_spd(rng, dim, 1.5), random_spd(rng, dim, 0.7)
    for between, within in ((np.eye(dim), np.eye(dim)), (start_b, start_w)):
        got = plda_em_step(counts, means, scatter, between, within)
        want = direct_em_step(matrix, labels, between, within)
        np.testing.assert_allclose(got[0], want[0], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(got[1], want[1], rtol=1e-10, atol=1e-12)
    mu = means.mean(axis=0)
    between = within = np.eye(dim)
    likelihoods = [class_loglikelihood(matrix, labels, mu, between, within)]
    for _ in range(6):
        between, within = plda_em_step(counts, means, scatter, between, within)
        likelihoods.append(class_loglikelihood(matrix, labels, mu, between, within))
    assert np.all(np.diff(likelihoods) > -1e-9), likelihoods
    assert likelihoods[-1] > likelihoods[0] + 1
    # Training starts from W = B = I: one iteration is one direct step from there (the mean shift is immaterial).
    one = train_plda_backend(matrix, labels, lda_dim=None, num_iters=1, length_norm=False)
    want = direct_em_step(matrix, labels, np.eye(dim), np.eye(dim))
    np.testing.assert_allclose(one.between, want[0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(one.within, want[1], rtol=1e-10, atol=1e-12)


def test_lda_whitens_within_class_and_sorts_by_between_class_variance(caplog):
    rng = np.random.default_rng(7)
    mu, between, within = rng.standard_normal(12), random_spd(rng, 12, 2.0), random_spd(rng, 12, 1.0)
    matrix, labels, _ = draw(rng, mu, between, within, 10, 15)
    matrix, labels = np.vstack([matrix, rng.standard_normal(12)]), labels + ["lonely"]  # a 1-utterance speaker
    centred = matrix - matrix.mean(axis=0)
    lda = compute_lda(centred, labels, 5)
    assert lda.shape == (5, 12)
    projected = centred @ lda.T
    label_array = np.asarray(labels)
    speaker_rows = [projected[label_array == name] for name in sorted(set(labels))]
    offsets = np.vstack([rows - rows.mean(axis=0) for rows in speaker_rows])
    np.testing.assert_allclose(offsets.T @ offsets / len(projected), np.eye(5), atol=1e-9)
    means = np.array([rows.mean(axis=0) for rows in speaker_rows])
    sizes = np.array([len(rows) for rows in speaker_rows])
    between_proj = (means * sizes[:, None]).T @ means / len(projected)
    np.testing.assert_allclose(between_proj, np.diag(np.diag(between_proj)), atol=1e-9)
    assert np.all(np.diff(np.diag(between_proj)) < 0)
    # 11 speakers allow at most 10 directions.
    with caplog.at_level(logging.WARNING, logger="speakernet.backend.lda"):
        assert compute_lda(centred, labels, 200).shape == (10, 12)
    assert "LDA dimension 200 capped at 10" in caplog.text
    np.testing.assert_allclose(np.linalg.norm(length_normalize(centred), axis=1), np.sqrt(12))


def small_backend(seed: int = 8, dim: int = 16):
    rng = np.random.default_rng(seed)
    mu, between, within = rng.standard_normal(dim), random_spd(rng, dim, 2.0), random_spd(rng, dim, 1.0)
    matrix, labels, _ = draw(rng, mu, between, within, 40, 6)
    return train_plda_backend(matrix, labels, lda_dim=6, num_iters=5), rng, (mu, between, within)


def test_save_load_round_trip_and_bad_files(tmp_path):
    backend, rng, _ = small_backend()
    table = ([f"u{index}" for index in range(20)], rng.standard_normal((20, 16)).astype(np.float32))
    trials = [(table[0][i], table[0][j], "nontarget") for i in range(20) for j in range(20)]
    backend.save(tmp_path / "plda.npz")
    with np.load(tmp_path / "plda.npz", allow_pickle=False) as archive:
        assert int(archive["format_version"]) == 1 and int(archive["embed_dim"]) == 16
        assert archive["lda"].shape == (6, 16)
    loaded = PLDABackend.load(tmp_path / "plda.npz")
    assert loaded.source == str(tmp_path / "plda.npz")
    assert np.array_equal(loaded.score_trials(trials, table, table), backend.score_trials(trials, table, table))
    # Without LDA the model round-trips too.
    plain = PLDABackend(**{**vars(backend), "lda": None, "mean": backend.mean[:6], "source": "x"})
    plain.save(tmp_path / "plain.npz")
    assert PLDABackend.load(tmp_path / "plain.npz").lda is None

    (tmp_path / "corrupt.npz").write_bytes(b"not a zip file at all")
    with pytest.raises(DataDirError, match=r"corrupt\.npz: cannot read PLDA model"):
        PLDABackend.load(tmp_path / "corrupt.npz")
    (tmp_path / "truncated.npz").write_bytes((tmp_path / "plda.npz").read_bytes()[:500])
    with pytest.raises(DataDirError, match=r"truncated\.npz"):
        PLDABackend.load(tmp_path / "truncated.npz")
    with pytest.raises(DataDirError, match=r"missing\.npz: PLDA model file does not exist"):
        PLDABackend.load(tmp_path / "missing.npz")
    arrays = dict(np.load(tmp_path / "plda.npz", allow_pickle=False))
    np.savez(tmp_path / "wrong_dim.npz", **{**arrays, "mean": np.zeros(15)})
    with pytest.raises(DataDirError, match=r"wrong_dim\.npz: PLDA model array 'mean' must be finite of shape \(16,\) "
                                           r"\(embedding dimension 16, LDA dimension 6\), got shape \(15,\)"):
        PLDABackend.load(tmp_path / "wrong_dim.npz")
    np.savez(tmp_path / "partial.npz", **{key: value for key, value in arrays.items() if key != "psi"})
    with pytest.raises(DataDirError, match=r"partial\.npz: not a PLDA model: missing psi"):
        PLDABackend.load(tmp_path / "partial.npz")
    # Embeddings of another dimension than the model's.
    other = ([f"v{index}" for index in range(3)], np.ones((3, 12), dtype=np.float32))
    with pytest.raises(DataDirError, match=r"test\.scp: embeddings have dimension 12 but the PLDA model "
                                           r".*plda\.npz expects 16"):
        loaded.score_trials([("v0", "v1", "target")], other, other, test_source="test.scp", enroll_source="test.scp")


def test_zero_embedding_is_named(tmp_path):
    backend, _, _ = small_backend()
    table = (["a", "b"], np.vstack([backend.mean, backend.mean + 1]))
    with pytest.raises(DataDirError, match=r"e\.scp \(key 'a'\): embedding has zero or non-finite norm"):
        backend.score_trials([("a", "b", "target")], table, table, enroll_source="e.scp")
    enroll = (["c"], backend.mean[None] + 1)
    with pytest.raises(DataDirError, match=r"t\.scp \(key 'a'\): embedding has zero or non-finite norm"):
        backend.score_trials([("c", "b", "target"), ("c", "a", "target")], enroll, table, test_source="t.scp")


def write_table(directory, name, keys, matrix):
    write_embeddings(directory / f"{name}.ark", directory / f"{name}.scp", keys, matrix)
    return str(directory / f"{name}.scp")


def test_train_and_score_commands_end_to_end(tmp_path, capsys):
    backend, rng, (mu, between, within) = small_backend()
    train, train_labels, _ = draw(rng, mu, between, within, 30, 5)
    train_keys = [f"{label}-u{index}" for index, label in enumerate(train_labels)]
    train_scp = write_table(tmp_path, "train", train_keys, train)
    write_scp(tmp_path / "utt2spk", dict(zip(train_keys, train_labels)))
    model = tmp_path / "plda.npz"
    assert train_plda_bin.main(["--scp", train_scp, "--utt2spk", str(tmp_path / "utt2spk"), "--out", str(model),
                                "--lda-dim", "6", "--num-iters", "4"]) == 0
    trained = PLDABackend.load(model)
    expected = train_plda_backend(train, train_labels, lda_dim=6, num_iters=4)
    np.testing.assert_allclose(trained.transform, expected.transform, rtol=1e-4, atol=1e-6)  # float32 on disk
    np.testing.assert_allclose(trained.mean, train.astype(np.float32).mean(axis=0), rtol=1e-5, atol=1e-6)
    write_vector(tmp_path / "mean.vec", np.full(16, 0.25, dtype=np.float32))
    assert train_plda_bin.main(["--scp", train_scp, "--utt2spk", str(tmp_path / "utt2spk"), "--out",
                                str(tmp_path / "given_mean.npz"), "--mean-vec", str(tmp_path / "mean.vec")]) == 0
    given = PLDABackend.load(tmp_path / "given_mean.npz")
    assert np.array_equal(given.mean, np.full(16, 0.25)) and given.lda.shape == (16, 16)  # 200 capped at dim
    assert (tmp_path / "plda.npz.dropped.tsv").read_text() == ""  # every utterance used: an empty list
    # utterances of utt2spk without an embedding: skipped, counted in a warning and listed
    write_scp(tmp_path / "more_utt2spk", {**dict(zip(train_keys, train_labels)), "zz-1": "zz", "zz-2": "zz"})
    capsys.readouterr()
    assert train_plda_bin.main(["--scp", train_scp, "--utt2spk", str(tmp_path / "more_utt2spk"), "--out",
                                str(tmp_path / "more.npz"), "--lda-dim", "6", "--num-iters", "4"]) == 0
    assert (tmp_path / "more.npz.dropped.tsv").read_text() == "zz-1\tno_embedding\nzz-2\tno_embedding\n"
    lines = [line for line in capsys.readouterr().err.splitlines() if "left out" in line]
    assert len(lines) == 1 and "WARNING [plda.py:" in lines[0]  # the stage's own file:line, not the helper's
    assert f"PLDA training: 2 of {len(train_keys) + 2} utterances left out (2 no_embedding), listed in " in lines[0]

    test, test_labels, _ = draw(rng, mu, between, within, 8, 4)
    test_keys = [f"{label}-t{index}" for index, label in enumerate(test_labels)]
    test_scp = write_table(tmp_path, "test", test_keys, test)
    trials = [(a, b, "target" if la == lb else "nontarget")
              for a, la in zip(test_keys, test_labels) for b, lb in zip(test_keys, test_labels) if a < b]
    write_trials(tmp_path / "trials", trials)
    out = tmp_path / "scores"
    assert score_plda_bin.main(["--trials", str(tmp_path / "trials"), "--enroll-scp", test_scp, "--test-scp",
                                test_scp, "--model", str(model), "--out", str(out)]) == 0
    read_back, scores = read_scores(out)
    assert read_back == trials
    table = (test_keys, test.astype(np.float32))
    np.testing.assert_allclose(scores, trained.score_trials(trials, table, table), atol=1e-5)
    labels = np.array([label == "target" for _, _, label in trials])
    assert scores[labels].mean() > scores[~labels].mean() + 3

    # Speaker-averaged enrolment with its spk2utt: n utterances per enrolment id.
    spk2utt = {}
    for key, label in zip(test_keys, test_labels):
        spk2utt.setdefault(label, []).append(key)
    write_spk2utt(tmp_path / "spk2utt", spk2utt)
    spk_keys, spk_means = speaker_means(test_keys, test, dict(zip(test_keys, test_labels)))
    spk_scp = write_table(tmp_path, "spk", spk_keys, spk_means)
    spk_trials = [(spk, utt, "target" if utt.startswith(spk + "-") else "nontarget")
                  for spk in spk_keys for utt in test_keys]
    write_trials(tmp_path / "spk_trials", spk_trials)
    assert score_plda_bin.main(["--trials", str(tmp_path / "spk_trials"), "--enroll-scp", spk_scp, "--test-scp",
                                test_scp, "--model", str(model), "--out", str(tmp_path / "spk_scores"),
                                "--enroll-spk2utt", str(tmp_path / "spk2utt")]) == 0
    direct = score_plda_files(tmp_path / "spk_trials", spk_scp, test_scp, model, tmp_path / "direct",
                              enroll_num_utts={spk: 4 for spk in spk_keys})
    np.testing.assert_allclose(read_scores(tmp_path / "spk_scores")[1], direct, atol=1e-5)
    single = score_plda_files(tmp_path / "spk_trials", spk_scp, test_scp, model, tmp_path / "single")
    assert not np.allclose(direct, single)  # n changes the LLR

    # A trial key without an embedding: exit status 1, the trial file, line and key in the message.
    write_trials(tmp_path / "bad_trials", trials[:2] + [(test_keys[0], "ghost", "nontarget")])
    capsys.readouterr()
    assert score_plda_bin.main(["--trials", str(tmp_path / "bad_trials"), "--enroll-scp", test_scp, "--test-scp",
                                test_scp, "--model", str(model), "--out", str(tmp_path / "bad")]) == 1
    assert "bad_trials:3 (key 'ghost'): test key has no embedding in" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
    with pytest.raises(DataDirError, match=r"bad_trials:3 \(key 'ghost'\)"):
        score_plda_files(tmp_path / "bad_trials", test_scp, test_scp, model, tmp_path / "bad")

    # An embedded training utterance without a speaker, and a corrupt model, are exit status 1 too.
    write_scp(tmp_path / "short_utt2spk", dict(zip(train_keys[1:], train_labels[1:])))
    assert train_plda_bin.main(["--scp", train_scp, "--utt2spk", str(tmp_path / "short_utt2spk"), "--out",
                                str(tmp_path / "other.npz")]) == 1
    assert f"(key '{train_keys[0]}'): utterance has an embedding" in capsys.readouterr().err
    with pytest.raises(DataDirError, match=r"short_utt2spk"):
        train_plda_files(train_scp, tmp_path / "short_utt2spk", tmp_path / "other.npz")
    (tmp_path / "broken.npz").write_bytes(b"\0" * 64)
    assert score_plda_bin.main(["--trials", str(tmp_path / "trials"), "--enroll-scp", test_scp, "--test-scp",
                                test_scp, "--model", str(tmp_path / "broken.npz"), "--out", str(out)]) == 1
    assert "broken.npz: cannot read PLDA model" in capsys.readouterr().err


def test_lda_on_fewer_utterances_than_dimensions_is_regularised(caplog):
    rng = np.random.default_rng(3)
    matrix = rng.normal(size=(12, 16))  # 4 speakers x 3: 8 within-class degrees of freedom for 16 dims
    labels = [f"s{i // 3}" for i in range(12)]
    with caplog.at_level(logging.WARNING, logger="speakernet.backend.lda"):
        lda = compute_lda(matrix - matrix.mean(axis=0), labels, 3)
    assert "within-class covariance is singular" in caplog.text and "adding" in caplog.text
    assert lda.shape == (3, 16) and np.all(np.isfinite(lda))
