"""Diagnostic plots (speakernet.backend.plots) and the HTML report (speakernet.backend.report)."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path

import kaldiio
import matplotlib.image
import numpy as np
import pytest
import torch
from scipy.stats import norm

from speakernet.backend import plots
from speakernet.backend.embeddings import write_embeddings
from speakernet.backend.metrics import compute_eer
from speakernet.backend.report import SECTIONS, build_report, read_score_columns, throughput_lines
from speakernet.bin.report import main as report_main
from speakernet.config import load_config, save_config
from speakernet.data.kaldi_dir import write_scp
from speakernet.models import build_model
from speakernet.training import checkpoint as ckpt

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FEAT_DIM = 20
TINY_MODEL = ["data.feat_dim=20", "model_args={channels: 16, embed_dim: 8, attention_bottleneck: 8, se_bottleneck: 8, "
              "aggregation_channels: 48}"]


def _assert_png(path: Path) -> np.ndarray:
    """Checks a file is a PNG with more than one colour; returns its pixels."""
    assert path.read_bytes()[:8] == PNG_SIGNATURE, path
    pixels = matplotlib.image.imread(path)
    assert np.any(pixels != pixels[:1, :1]), f"{path} is blank"  # more than one distinct colour
    return pixels


def _trials(num: int, separation: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.random(num) < 0.3
    return rng.normal(0.0, 1.0, num) + separation * labels, labels


@pytest.fixture
def captured_axes(monkeypatch: pytest.MonkeyPatch) -> list:
    """Keeps the axes of each figure a plot function saves (they are closed after saving)."""
    kept: list = []
    original = plots._save

    def save(figure, path):
        kept.append(figure.axes)
        return original(figure, path)

    monkeypatch.setattr(plots, "_save", save)
    return kept


# --- plots ------------------------------------------------------------------------------------


def test_det_has_probit_axes_and_eer_points(tmp_path: Path, captured_axes: list) -> None:
    systems = [("good", *_trials(3000, 3.0)), ("weak", *_trials(3000, 1.0, seed=1))]
    path = plots.plot_det(systems, tmp_path / "det.png")
    assert path == tmp_path / "det.png"
    _assert_png(path)
    (axes,) = captured_axes[0]
    expected = norm.ppf(np.asarray(plots.DET_TICKS_PERCENT) / 100.0)
    np.testing.assert_allclose(axes.get_xticks(), expected)
    np.testing.assert_allclose(axes.get_yticks(), expected)
    assert [t.get_text() for t in axes.get_xticklabels()] == ["0.1", "0.2", "0.5", "1", "2", "5", "10", "20", "40"]
    # the EER marker of each system sits at norm.ppf(EER) on both axes
    markers = [line for line in axes.get_lines() if line.get_marker() == "o"]
    for (name, scores, labels), marker in zip(systems, markers):
        eer = compute_eer(scores, labels)[0]
        np.testing.assert_allclose(marker.get_xdata(), [norm.ppf(eer)])
        np.testing.assert_allclose(marker.get_ydata(), [norm.ppf(eer)])
    assert "good (EER" in axes.get_legend().get_texts()[0].get_text()


def test_det_thins_million_trial_curves(tmp_path: Path, captured_axes: list) -> None:
    scores, labels = _trials(1_000_000, 2.0)
    plots.plot_det([("big", scores, labels)], tmp_path / "det.png")
    curve = max(captured_axes[0][0].get_lines(), key=lambda line: len(line.get_xdata()))
    assert len(curve.get_xdata()) <= plots.MAX_CURVE_POINTS + 1
    x, y = curve.get_xdata(), curve.get_ydata()
    assert np.all(np.diff(x) <= 0) and np.all(np.diff(y) >= 0)  # still a monotone DET curve


def test_roc_and_histograms(tmp_path: Path, captured_axes: list) -> None:
    scores, labels = _trials(2000, 2.0)
    _assert_png(plots.plot_roc([("a", scores, labels), ("b", *_trials(2000, 0.5, 1))], tmp_path / "roc.png"))
    assert "AUC" in captured_axes[0][0].get_legend().get_texts()[0].get_text()
    big_scores, big_labels = _trials(300_000, 2.0)
    path = plots.plot_score_histograms("sys", big_scores, big_labels, 0.7, tmp_path / "hist.png", max_points=50_000)
    _assert_png(path)
    (axes,) = captured_axes[1]
    assert "50000 of 300000 trials" in axes.get_title()
    assert any(np.allclose(line.get_xdata(), 0.7) for line in axes.get_lines())  # the threshold line
    with pytest.raises(ValueError, match="both target and non-target"):
        plots.plot_score_histograms("sys", scores, np.ones(2000, bool), 0.0, tmp_path / "bad.png")


def test_tsne_is_deterministic_and_handles_tiny_sets(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    keys = [f"u{i:03d}" for i in range(60)]
    utt2spk = {key: f"spk{i % 15:02d}" for i, key in enumerate(keys)}
    embeddings = rng.normal(size=(15, 16))[[i % 15 for i in range(60)]] + 0.1 * rng.normal(size=(60, 16))
    a = _assert_png(plots.plot_tsne(keys, embeddings, utt2spk, tmp_path / "a.png", max_speakers=10))
    b = _assert_png(plots.plot_tsne(keys, embeddings, utt2spk, tmp_path / "b.png", max_speakers=10))
    assert np.array_equal(a, b)
    _assert_png(plots.plot_tsne(keys[:4], embeddings[:4], ["x", "x", "y", "y"], tmp_path / "tiny.png"))
    with pytest.raises(ValueError, match="at least 3"):
        plots.plot_tsne(keys[:2], embeddings[:2], ["x", "y"], tmp_path / "two.png")


def test_speaker_cosine_statistic(tmp_path: Path) -> None:
    orthogonal = np.eye(64)[:60] * 3.0
    keys = [f"s{i}" for i in range(60)]
    path, raw = plots.plot_speaker_cosine_matrix(keys, orthogonal, tmp_path / "c.png", max_speakers=10,
                                                 subtract_mean=False)
    _assert_png(path)
    assert raw == pytest.approx(0.0, abs=1e-12)
    # mean subtraction leaves K orthogonal speakers at cosine -1/(K-1): close to orthogonal
    _, centred = plots.plot_speaker_cosine_matrix(keys, orthogonal + 5.0, tmp_path / "c2.png", max_speakers=20)
    assert centred == pytest.approx(1.0 / 59, rel=1e-6)
    identical = np.tile(np.arange(1.0, 9.0), (10, 1))
    _, same = plots.plot_speaker_cosine_matrix(keys[:10], identical, tmp_path / "c3.png", max_speakers=4,
                                               subtract_mean=False)
    assert same == pytest.approx(1.0)
    with pytest.raises(ValueError, match="same vector"):
        plots.plot_speaker_cosine_matrix(keys[:10], identical, tmp_path / "c4.png")


def _write_metrics(path: Path, margin: bool = True) -> None:
    lines = []
    for step in range(1, 31):
        lines.append({"epoch": (step - 1) // 10 + 1, "progress": step / 10, "step": step, "loss": 8.0 / step,
                      "accuracy": min(100.0, 3.0 * step), "lr": 0.1 * 0.9**step,
                      "margin": min(0.2, step / 100) if margin else None, "utts_per_s": 50.0, "seconds": 2.0 * step})
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))


def test_training_curves(tmp_path: Path, captured_axes: list) -> None:
    _write_metrics(tmp_path / "m.jsonl", margin=False)
    _assert_png(plots.plot_training_curves(tmp_path / "m.jsonl", tmp_path / "curves.png"))
    panels = captured_axes[0]
    assert [a.get_ylabel() for a in panels] == ["loss", "accuracy (%)", "learning rate", "margin"]
    assert panels[2].get_yscale() == "log"
    assert any("no margin" in text.get_text() for text in panels[3].texts)


def _ecapa() -> torch.nn.Module:
    torch.manual_seed(0)
    config = load_config(None, TINY_MODEL)
    return build_model(config["model"], feat_dim=FEAT_DIM, **config["model_args"]).eval()


def test_attention_weights_on_the_vad_timeline(tmp_path: Path) -> None:
    model = _ecapa()
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(120, FEAT_DIM)).astype(np.float32)
    vad = np.ones(120, np.float32)
    vad[:15] = 0
    vad[60:70] = 0
    timeline, seen = plots._attention_on_timeline(model, feats, vad, use_vad=True, min_frames=50)
    assert seen == 95 and timeline.shape == (48, 120)
    assert np.isnan(timeline[:, :15]).all() and np.isnan(timeline[:, 60:70]).all()
    np.testing.assert_allclose(np.nansum(timeline, axis=1), 1.0, rtol=1e-5)  # each channel's weights sum to 1
    short = rng.normal(size=(30, FEAT_DIM)).astype(np.float32)  # repeat-padded to 50 frames
    padded, seen = plots._attention_on_timeline(model, short, None, use_vad=True, min_frames=50)
    assert seen == 50 and not np.isnan(padded).any()
    np.testing.assert_allclose(padded.sum(axis=1), 1.0, rtol=1e-5)

    path = plots.plot_attention(model, [feats, short], [vad, None], ["a", "b"], tmp_path / "att.png")
    _assert_png(path)
    pool = plots._attention_pool(model)
    assert pool.keep_attention is False and pool.last_attention is None  # left as found
    with pytest.raises(ValueError, match="no attentive pooling"):
        plots.plot_attention(torch.nn.Sequential(torch.nn.Linear(FEAT_DIM, 4)), [feats], [vad], ["a"],
                             tmp_path / "none.png")


# --- report -----------------------------------------------------------------------------------


def _write_scores(path: Path, scores: np.ndarray, labels: np.ndarray, extra_columns: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = " 0.1 0.2" if extra_columns else ""
    path.write_text("".join(f"e{i % 7} t{i} {s:.5f} {'target' if lab else 'nontarget'}{extra}\n"
                            for i, (s, lab) in enumerate(zip(scores, labels))))


def _metrics_row(name: str, scores_path: str, scores: np.ndarray, labels: np.ndarray, llr: bool) -> dict:
    eer, threshold = compute_eer(scores, labels)
    model, backend, trials = name.split(":")
    return {"name": name, "model": model, "backend": backend, "trials": trials, "scores": scores_path, "llr": llr,
            "num_trials": len(scores), "num_targets": int(labels.sum()), "num_nontargets": int((~labels).sum()),
            "eer": eer, "eer_threshold": threshold, "min_dcf": {"0.01": 0.9, "0.05": 0.7},
            "act_dcf": {"0.01": 0.95, "0.05": 0.75}, "cllr": 0.654321}


def _make_exp(root: Path) -> tuple[Path, Path]:
    """A synthetic exp dir (tiny model, embeddings, scores, logs) and test data dir under ``root``."""
    rng = np.random.default_rng(0)
    data = root / "data" / "test"
    data.mkdir(parents=True)
    utt2spk = {f"spk{s}-u{u}": f"spk{s}" for s in range(4) for u in range(4)}
    with kaldiio.WriteHelper(f"ark,scp:{root / 'feats.ark'},{data / 'feats.scp'}") as feats_writer, \
            kaldiio.WriteHelper(f"ark,scp:{root / 'vad.ark'},{data / 'vad.scp'}") as vad_writer:
        for utt in sorted(utt2spk):
            frames = int(rng.integers(80, 150))
            feats_writer(utt, rng.normal(size=(frames, FEAT_DIM)).astype(np.float32))
            vad = np.ones(frames, np.float32)
            vad[:10] = 0
            vad_writer(utt, vad)
    write_scp(data / "utt2spk", utt2spk)

    exp = root / "exp"
    config = load_config(None, TINY_MODEL)
    save_config(config, exp / "config.yaml")
    model = build_model(config["model"], feat_dim=FEAT_DIM, **config["model_args"])
    checkpoint = exp / ckpt.CHECKPOINT_DIR / "epoch_001.pt"
    ckpt.save_checkpoint({"model": model.state_dict(), "step": 10, "config": config}, checkpoint)
    ckpt.mark_latest(exp, checkpoint)

    embed_dir = exp / "embeddings" / "latest" / "test"
    centres = rng.normal(size=(4, 8))
    keys = sorted(utt2spk)
    matrix = centres[[int(utt2spk[k][3]) for k in keys]] + 0.3 * rng.normal(size=(16, 8))
    write_embeddings(embed_dir / "xvector.ark", embed_dir / "xvector.scp", keys, matrix)
    write_embeddings(embed_dir / "spk_xvector.ark", embed_dir / "spk_xvector.scp", [f"spk{s}" for s in range(4)],
                     centres)
    _write_metrics(exp / "train_metrics.jsonl")

    rows = []
    for name, separation, extra, llr in [("trained:cosine:trials", 2.5, False, False),
                                         ("trained:asnorm<b>:trials", 3.0, True, True)]:
        scores, labels = _trials(4000, separation, seed=len(rows))
        relative = f"exp/scores/{len(rows)}.score"  # as the recipe gave it, relative to its dir
        _write_scores(root / relative, scores, labels, extra_columns=extra)
        rows.append(_metrics_row(name, relative, scores, labels, llr))
    (exp / "results.json").write_text(json.dumps({"p_targets": [0.01, 0.05], "rows": rows}))
    (exp / "log").mkdir()
    (exp / "log" / "extract.log").write_text("start\n... extracted 16 embeddings ... 650.1x real time\n"
                                             "... extracted 16 embeddings ... 700.5x real time\ndone\n")
    (exp / "log" / "score.log").write_text("Read 4000 scores (123456 trials/s)\n")
    (exp / "log" / "other.log").write_text("nothing here\n")
    return exp, data


@pytest.fixture(scope="module")
def full_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("report")
    exp, data = _make_exp(root)
    assert report_main(["--exp-dir", str(exp), "--data-dir", str(data), "--checkpoint", "latest"]) == 0
    page = exp / "report.html"
    return page, page.read_text(encoding="utf-8")


def test_report_has_every_section_with_embedded_images(full_report: tuple[Path, str]) -> None:
    _, page = full_report
    for anchor, title, _ in SECTIONS:
        assert f'<section id="{anchor}">' in page, f"section {title} missing"
    assert "left out" not in page
    sources = re.findall(r'<img [^>]*src="([^"]*)"', page)
    assert len(sources) == 8  # DET, ROC, 2 histograms, t-SNE, cosine, training, attention
    for source in sources:
        prefix = "data:image/png;base64,"
        assert source.startswith(prefix)
        assert base64.b64decode(source[len(prefix):])[:8] == PNG_SIGNATURE
    for external in ('src="http', "file:", 'href="http', "<link", "<script"):
        assert external not in page
    # escaped names, llr-only columns, config, throughput, training time
    assert "asnorm&lt;b&gt;" in page and "asnorm<b>" not in page
    assert page.count("0.6543") == 1 and page.count("\u2013") >= 3  # Cllr only for the llr row
    assert "model: ECAPA_TDNN" in page
    assert "700.5x real time" in page and "650.1x" not in page and "trials/s" in page
    assert "60.0 s" in page and "Mean |off-diagonal cosine|" in page


def test_report_of_results_only_exp_dir(tmp_path: Path) -> None:
    exp = tmp_path / "bare"
    exp.mkdir()
    row = _metrics_row("untrained:cosine:trials", "missing.score", *_trials(100, 1.0), llr=False)
    (exp / "results.json").write_text(json.dumps({"p_targets": [0.01], "rows": [row]}))
    page = build_report(exp, out=tmp_path / "bare.html").read_text()
    assert '<section id="results">' in page and "untrained" in page
    for anchor in ("det", "roc", "histograms", "tsne", "cosine", "training", "attention", "config",
                   "training-time", "throughput"):
        assert f'<p class="note" id="{anchor}">' in page, anchor
    assert "missing.score not found" in page and "--data-dir" in page
    assert "<img" not in page
    # no results.json at all: still a page; a missing exp dir is an error (exit status 1)
    (exp / "results.json").unlink()
    assert '<p class="note" id="results">' in build_report(exp).read_text()
    assert report_main(["--exp-dir", str(tmp_path / "nowhere")]) == 1


def test_score_columns_and_throughput_lines(tmp_path: Path) -> None:
    path = tmp_path / "s.score"
    # same column count on every line (the fast path), mixed counts and a blank line (line by line)
    for text in ("a b 0.5 target 1.0\na c -0.25 nontarget 2.0\n", "a b 0.5 target 1.0 2.0\n\na c -0.25 nontarget"):
        path.write_text(text)
        scores, labels = read_score_columns(path)
        assert scores.tolist() == [0.5, -0.25] and labels.tolist() == [True, False]
    path.write_text("a b 0.5 maybe\n")
    with pytest.raises(ValueError, match=":1:"):
        read_score_columns(path)
    (tmp_path / "log").mkdir()
    (tmp_path / "log" / "a.log").write_text("x 10 utts/s\ny 20 utts/s\n")
    assert throughput_lines(tmp_path) == [("a.log", "y 20 utts/s")]


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed")
def test_report_renders_in_headless_chromium(full_report: tuple[Path, str], tmp_path: Path) -> None:
    page, _ = full_report
    shot = tmp_path / "shot.png"
    command = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'p'}",
               f"--screenshot={shot}", "--window-size=1200,3000", page.resolve().as_uri()]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert shot.is_file(), result.stderr[-2000:]
    _assert_png(shot)
