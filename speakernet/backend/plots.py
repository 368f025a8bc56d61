"""Diagnostic plots of a speaker-verification experiment, each written to a PNG file.

Every function draws one figure, saves it (atomically) to the given path, closes it and returns
the path. Score inputs follow :mod:`speakernet.backend.metrics`: higher scores mean "same
speaker", labels are booleans, 0/1 or ``target``/``nontarget``.

Plotting stays fast on million-trial lists: DET and ROC curves are computed exactly from all
trials and then thinned to a few thousand points that trace the same line, and histograms use a
seeded random subset.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Union

import matplotlib

matplotlib.use("Agg")  # no display: files only, and safe in worker processes

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy.stats import norm  # noqa: E402

from speakernet.backend.metrics import as_bool_labels, compute_det_curve, compute_eer  # noqa: E402
from speakernet.utils.fileio import PathLike, atomic_write  # noqa: E402

Scores = Union[Sequence[float], np.ndarray]
Labels = Union[Sequence, np.ndarray]  # booleans, 0/1 or "target"/"nontarget"
System = tuple[str, Scores, Labels]  # (name, scores, labels) of one scored trial list

DET_TICKS_PERCENT = (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 40)
DET_LIMITS = (0.0005, 0.6)  # error-rate range shown on both DET axes (fractions)
MAX_CURVE_POINTS = 3000
MAX_HISTOGRAM_POINTS = 200_000
FRAME_SHIFT_S = 0.01


def _finish(figure: plt.Figure, axes: plt.Axes, path: PathLike, legend: str) -> Path:
    axes.grid(True, color="0.9")
    axes.legend(loc=legend, fontsize=8)
    return _save(figure, path)


def _save(figure: plt.Figure, path: PathLike) -> Path:
    path = Path(path)
    try:
        with atomic_write(path, "wb") as handle:
            figure.savefig(handle, format="png", dpi=100, bbox_inches="tight")
    finally:
        plt.close(figure)
    return path


def _thin_curve(x: np.ndarray, y: np.ndarray, max_points: int = MAX_CURVE_POINTS) -> np.ndarray:
    """Indices of at most about ``max_points`` points spread evenly along the drawn curve's length.

    Keeping the first point of each equal stretch of arc length (rather than every n-th point)
    keeps the sparse tails of a DET curve, where few trials decide its shape.
    """
    if len(x) <= max_points:
        return np.arange(len(x))
    arc = np.concatenate(([0.0], np.cumsum(np.hypot(np.diff(x), np.diff(y)))))
    bins = np.floor(arc / max(arc[-1], 1e-12) * (max_points - 1)).astype(np.int64)
    keep = np.flatnonzero(np.r_[True, bins[1:] != bins[:-1]])
    return np.unique(np.r_[keep, len(x) - 1])


def plot_det(systems: Sequence[System], path: PathLike, title: str = "DET") -> Path:
    """Draws the DET curves of several systems on normal-deviate (probit) axes, as NIST does.

    Both axes show ``norm.ppf(error rate)`` with ticks labelled in percent at 0.1 ... 40 %;
    each system's EER point sits on the diagonal and its EER is given in the legend.

    Args:
        systems: ``(name, scores, labels)`` per system.
        path: Output PNG.
        title: Figure title.

    Returns:
        ``path``.

    Raises:
        ValueError: on no systems or invalid scores/labels (see :func:`compute_det_curve`).
    """
    if not systems:
        raise ValueError("plot_det needs at least one system")
    figure, axes = plt.subplots(figsize=(6.5, 6.5))
    low, high = norm.ppf(DET_LIMITS[0]), norm.ppf(DET_LIMITS[1])
    axes.plot([low, high], [low, high], color="0.75", linestyle=":", linewidth=1)
    # Clipped just outside the axes so curves leave the frame instead of ending at +-inf.
    clip = (norm.cdf(low - 1.0), norm.cdf(high + 1.0))
    for index, (name, scores, labels) in enumerate(systems):
        fnr, fpr, _ = compute_det_curve(scores, labels)
        eer, _ = compute_eer(scores, labels)
        x, y = norm.ppf(np.clip(fpr, *clip)), norm.ppf(np.clip(fnr, *clip))
        keep = _thin_curve(x, y)
        color = f"C{index % 10}"
        axes.plot(x[keep], y[keep], color=color, linewidth=1.5, label=f"{name} (EER {eer * 100:.2f}%)")
        point = norm.ppf(np.clip(eer, *clip))
        axes.plot([point], [point], marker="o", color=color, markersize=6, markeredgecolor="black")
    ticks = norm.ppf(np.asarray(DET_TICKS_PERCENT) / 100.0)
    axes.set_xticks(ticks, [f"{t:g}" for t in DET_TICKS_PERCENT])
    axes.set_yticks(ticks, [f"{t:g}" for t in DET_TICKS_PERCENT])
    axes.set(xlim=(low, high), ylim=(low, high), xlabel="False alarm rate (%)", ylabel="Miss rate (%)", title=title)
    return _finish(figure, axes, path, "upper right")


def plot_roc(systems: Sequence[System], path: PathLike, title: str = "ROC") -> Path:
    """Draws ROC curves (hit rate against false alarm rate, linear axes) with each system's AUC.

    Args:
        systems: ``(name, scores, labels)`` per system.
        path: Output PNG.
        title: Figure title.

    Returns:
        ``path``.

    Raises:
        ValueError: on no systems or invalid scores/labels.
    """
    if not systems:
        raise ValueError("plot_roc needs at least one system")
    figure, axes = plt.subplots(figsize=(6.0, 6.0))
    axes.plot([0, 1], [0, 1], color="0.75", linestyle=":", linewidth=1)
    for index, (name, scores, labels) in enumerate(systems):
        fnr, fpr, _ = compute_det_curve(scores, labels)
        hit = 1.0 - fnr
        auc = float(np.sum((fpr[:-1] - fpr[1:]) * (hit[:-1] + hit[1:]) / 2.0))  # fpr falls along the curve
        keep = _thin_curve(fpr, hit)
        axes.plot(fpr[keep], hit[keep], color=f"C{index % 10}", linewidth=1.5, label=f"{name} (AUC {auc:.4f})")
    axes.set(xlim=(0, 1), ylim=(0, 1), xlabel="False alarm rate", ylabel="Hit rate (1 - miss rate)", title=title)
    return _finish(figure, axes, path, "lower right")


def plot_score_histograms(name: str, scores: Scores, labels: Labels, threshold: float, path: PathLike,
                          max_points: int = MAX_HISTOGRAM_POINTS, seed: int = 0) -> Path:
    """Draws the target and non-target score densities and a decision threshold.

    Args:
        name: System name for the title.
        scores: Trial scores.
        labels: Trial labels.
        threshold: Where to draw the threshold line (e.g. the EER threshold).
        path: Output PNG.
        max_points: Longer trial lists are randomly subsampled to this many trials.
        seed: Seed of that subsampling.

    Returns:
        ``path``.

    Raises:
        ValueError: if the lengths differ or a class has no trials.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = as_bool_labels(labels)
    if scores.shape != labels.shape:
        raise ValueError(f"got {scores.shape[0]} scores but {labels.shape[0]} labels")
    if labels.all() or not labels.any():
        raise ValueError("score histograms need both target and non-target trials")
    total = len(scores)
    if total > max_points:
        chosen = np.sort(np.random.default_rng(seed).choice(total, size=max_points, replace=False))
        scores, labels = scores[chosen], labels[chosen]
    edges = np.histogram_bin_edges(scores, bins=80)
    figure, axes = plt.subplots(figsize=(7.0, 4.0))
    axes.hist(scores[~labels], bins=edges, density=True, alpha=0.55, color="C3",
              label=f"non-target ({np.count_nonzero(~labels)})")
    axes.hist(scores[labels], bins=edges, density=True, alpha=0.55, color="C0",
              label=f"target ({np.count_nonzero(labels)})")
    axes.axvline(threshold, color="black", linestyle="--", linewidth=1.2, label=f"threshold {threshold:.4g}")
    shown = f", {len(scores)} of {total} trials shown" if len(scores) < total else ""
    axes.set(xlabel="score", ylabel="density")
    axes.set_title(f"{name}{shown}", fontsize=10)
    return _finish(figure, axes, path, "upper right")


def plot_tsne(keys: Sequence[str], embeddings: np.ndarray, speakers: Mapping[str, str] | Sequence[str], path: PathLike,
              max_speakers: int = 20, seed: int = 0, max_utts_per_speaker: int = 50) -> Path:
    """Draws a 2-d t-SNE map of length-normalised utterance embeddings, coloured by speaker.

    The speakers with the most utterances (ties in name order) are shown, each with at most
    ``max_utts_per_speaker`` utterances chosen with ``seed``. The perplexity is 30, capped at a
    third of the points for tiny sets. The map is deterministic for a given seed.

    Args:
        keys: Utterance key of each row of ``embeddings``.
        embeddings: ``[num_utts, dim]``.
        speakers: utt2spk mapping, or one speaker per key.
        path: Output PNG.
        max_speakers: Most speakers to show.
        seed: Seed of the utterance choice and of t-SNE.
        max_utts_per_speaker: Most utterances per speaker (bounds the t-SNE cost).

    Returns:
        ``path``.

    Raises:
        ValueError: on mismatched inputs or fewer than 3 utterances to map.
    """
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits  # a scikit-learn dependency

    embeddings = np.asarray(embeddings, dtype=np.float64)
    if embeddings.ndim != 2 or embeddings.shape[0] != len(keys):
        raise ValueError(f"got {len(keys)} keys for embeddings of shape {embeddings.shape}")
    speaker_of = [speakers.get(key) for key in keys] if isinstance(speakers, Mapping) else list(speakers)
    if len(speaker_of) != len(keys) or None in speaker_of:
        raise ValueError(f"need one speaker per key: got {len(speaker_of)} for {len(keys)} keys, or some missing")
    by_speaker: dict[str, list[int]] = {}
    for row, speaker in enumerate(speaker_of):
        by_speaker.setdefault(speaker, []).append(row)
    chosen = sorted(by_speaker, key=lambda s: (-len(by_speaker[s]), s))[:max_speakers]
    rng = np.random.default_rng(seed)
    rows, colours = [], []
    for index, speaker in enumerate(sorted(chosen)):
        members = by_speaker[speaker]
        if len(members) > max_utts_per_speaker:
            members = sorted(rng.choice(members, size=max_utts_per_speaker, replace=False).tolist())
        rows += members
        colours += [index] * len(members)
    if len(rows) < 3:
        raise ValueError(f"t-SNE needs at least 3 utterances, got {len(rows)}")
    points = embeddings[rows]
    points /= np.maximum(np.linalg.norm(points, axis=1, keepdims=True), 1e-12)
    perplexity = float(min(30.0, max(1.0, (len(rows) - 1) / 3.0)))
    # One thread: after torch has run, its spinning OpenMP workers and scikit-learn's own OpenMP
    # runtime fight over the cores, which measured 20-100x slower than a single thread.
    with threadpool_limits(limits=1):
        mapped = TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto",
                      random_state=seed).fit_transform(points)
    figure, axes = plt.subplots(figsize=(7.5, 6.0))
    colour_map = plt.get_cmap("tab20")
    colours = np.asarray(colours)
    for index, speaker in enumerate(sorted(chosen)):
        mask = colours == index
        axes.scatter(mapped[mask, 0], mapped[mask, 1], s=14, color=colour_map(index % 20), label=speaker)
    axes.set_title(f"t-SNE of {len(rows)} utterances of {len(chosen)} speakers (perplexity {perplexity:.0f})",
                   fontsize=10)
    axes.set(xticks=[], yticks=[])
    if len(chosen) <= 20:
        axes.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    return _save(figure, path)


def read_train_metrics(path: PathLike) -> list[dict]:
    """Reads a ``train_metrics.jsonl`` written by the trainer, skipping unreadable lines.

    Returns:
        One dict per logged interval, in file order.
    """
    records = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:  # a line cut short by a killed run
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def plot_training_curves(metrics_jsonl: PathLike, path: PathLike) -> Path:
    """Draws loss, accuracy, learning rate and margin against (fractional) epochs, 4 panels.

    Args:
        metrics_jsonl: The trainer's ``train_metrics.jsonl``.
        path: Output PNG.

    Returns:
        ``path``.

    Raises:
        FileNotFoundError: if the metrics file does not exist.
        ValueError: if it holds no readable line.
    """
    records = read_train_metrics(metrics_jsonl)
    if not records:
        raise ValueError(f"{metrics_jsonl} holds no metrics line")

    def column(key: str) -> np.ndarray:
        return np.array([np.nan if r.get(key) is None else float(r[key]) for r in records])

    progress = column("progress")
    figure, panels = plt.subplots(2, 2, figsize=(10.0, 6.5), sharex=True)
    for axes, (key, label) in zip(panels.flat, [("loss", "loss"), ("accuracy", "accuracy (%)"),
                                                ("lr", "learning rate"), ("margin", "margin")]):
        values = column(key)
        axes.plot(progress, values, marker="." if len(values) < 60 else None, linewidth=1.2)
        axes.set_ylabel(label)
        axes.grid(True, color="0.9")
        if key == "lr" and np.nanmin(values, initial=np.inf) > 0:
            axes.set_yscale("log")
        if np.all(np.isnan(values)):
            axes.text(0.5, 0.5, f"no {key} logged", transform=axes.transAxes, ha="center", color="0.5")
    for axes in panels[1]:
        axes.set_xlabel("epoch")
    figure.suptitle(f"training: {len(records)} logged intervals, step {records[-1].get('step', '?')}")
    return _save(figure, path)


def _attention_pool(model: object) -> object:
    from speakernet.models.pooling import AttentiveStatsPool

    pools = [module for module in model.modules() if isinstance(module, AttentiveStatsPool)]
    if not pools:
        raise ValueError(f"{type(model).__name__} has no attentive pooling (AttentiveStatsPool) to plot")
    return pools[-1]  # the one nearest the embedding, if there are several


def _attention_on_timeline(model: object, feats: np.ndarray, vad: np.ndarray | None, use_vad: bool,
                           min_frames: int) -> tuple[np.ndarray, int]:
    """Runs the model on one utterance prepared as extraction does.

    Returns ``([C, num_frames] weights placed back on the original frames, NaN for frames the
    model did not see; frames the model saw)``.
    """
    import torch

    from speakernet.backend.extract import prepare_features

    frames = len(feats)
    seen = np.flatnonzero(vad > 0.5) if (use_vad and vad is not None) else np.arange(frames)
    if len(seen) == 0:  # extraction falls back to every frame too
        seen = np.arange(frames)
    prepared = prepare_features(np.asarray(feats), vad if use_vad else None, min_frames)
    pool = _attention_pool(model)
    device = next(model.parameters()).device
    pool.keep_attention = True
    try:
        with torch.no_grad():
            model(torch.from_numpy(prepared)[None].to(device))
        alpha = pool.last_attention[0].float().cpu().numpy()  # [C, T_pool]
    finally:
        pool.keep_attention, pool.last_attention = False, None
    # Models that subsample in time give fewer pooled positions than input frames.
    model_frames = len(prepared)
    position = np.minimum(np.arange(model_frames) * alpha.shape[1] // model_frames, alpha.shape[1] - 1)
    per_frame = alpha[:, position] * (alpha.shape[1] / model_frames)
    timeline = np.zeros((alpha.shape[0], frames), dtype=np.float32)
    # repeat-padding wraps around the voiced frames: the weight of a copy goes to its source frame
    np.add.at(timeline.T, seen[np.arange(model_frames) % len(seen)], per_frame.T)
    timeline[:, np.setdiff1d(np.arange(frames), seen)] = np.nan
    return timeline, model_frames


def plot_attention(model: object, feats_list: Sequence[np.ndarray], vad_list: Sequence[np.ndarray | None],
                   names: Sequence[str], path: PathLike, use_vad: bool = True, min_frames: int = 50,
                   max_frames: int = 3000) -> Path:
    """Draws the attentive pooling's weights over time beside the VAD decisions, per utterance.

    Utterances are prepared as extraction does (VAD, repeat padding, CMN). Top panel: the mean
    over channels of the weights times the frames the model saw (1 = uniform), 10-90 % range of
    the channels shaded, on the original time axis (gaps where VAD dropped frames). Lower panel:
    the VAD decisions and the frame energy (mean log-mel).

    Args:
        model: Embedding model (``[B, T, F] -> [B, D]``) holding an ``AttentiveStatsPool``.
        feats_list: Raw features ``[T, F]`` per utterance (as in ``feats.scp``).
        vad_list: VAD decisions ``[T]`` per utterance, or None entries.
        names: Utterance keys for the panel titles.
        path: Output PNG.
        use_vad: Drop unvoiced frames first, as extraction does when the config's ``use_vad`` is on.
        min_frames: Extraction's repeat-padding length.
        max_frames: Only the first this many frames of each utterance are used (keeps it fast).

    Returns:
        ``path``.

    Raises:
        ValueError: if the model has no attentive pooling, or the lists differ in length.
    """
    pool = _attention_pool(model)
    if not (len(feats_list) == len(vad_list) == len(names)) or not feats_list:
        raise ValueError("plot_attention needs one vad entry and one name per feature matrix")
    was_training = model.training
    model.eval()
    rows = len(feats_list)
    figure = plt.figure(figsize=(10.0, 3.2 * rows), constrained_layout=True)
    grid = figure.add_gridspec(rows * 2, 1, height_ratios=[3, 1] * rows)
    try:
        for index, (feats, vad, name) in enumerate(zip(feats_list, vad_list, names)):
            feats = np.asarray(feats)[:max_frames]
            vad = None if vad is None else np.asarray(vad).reshape(-1)[: len(feats)]
            timeline, seen = _attention_on_timeline(model, feats, vad, use_vad, min_frames)
            seconds = np.arange(len(feats)) * FRAME_SHIFT_S
            relative = timeline * seen
            top = figure.add_subplot(grid[2 * index])
            bottom = figure.add_subplot(grid[2 * index + 1], sharex=top)
            with warnings.catch_warnings():  # "all-NaN slice" at frames the model did not see
                warnings.simplefilter("ignore", RuntimeWarning)
                low, high = np.nanpercentile(relative, [10, 90], axis=0)
                mean = np.nanmean(relative, axis=0)
            top.fill_between(seconds, low, high, color="C0", alpha=0.25, linewidth=0, label="10-90 % of channels")
            top.plot(seconds, mean, color="C0", linewidth=1.0, label="mean over channels")
            top.axhline(1.0, color="0.6", linestyle=":", linewidth=1)
            top.set_ylabel("weight x frames")
            top.set_title(f"{name}: {len(feats)} frames, {seen} seen by the model ({pool.in_dim} channels)",
                          fontsize=9)
            top.legend(fontsize=7, loc="upper right")
            top.tick_params(labelbottom=False)  # the VAD panel below carries the time axis
            energy = feats.mean(axis=1)
            span = max(float(energy.max() - energy.min()), 1e-9)
            bottom.plot(seconds, (energy - energy.min()) / span, color="0.45", linewidth=0.8, label="energy")
            if vad is not None:
                bottom.fill_between(seconds, 0, (vad > 0.5).astype(float), step="mid", color="C2", alpha=0.35,
                                    linewidth=0, label="VAD speech")
            bottom.set(ylim=(-0.05, 1.05), yticks=[], xlabel="time (s)" if index == rows - 1 else None)
            bottom.legend(fontsize=7, loc="upper right")
    finally:
        model.train(was_training)
    return _save(figure, path)


def plot_speaker_cosine_matrix(spk_keys: Sequence[str], spk_means: np.ndarray, path: PathLike, max_speakers: int = 50,
                               subtract_mean: bool = True) -> tuple[Path, float]:
    """Draws the cosine matrix of speaker-mean embeddings and the histogram of its off-diagonal.

    The statistic and the histogram cover every speaker (computed in blocks, so thousands of
    speakers fit in memory); the heat map shows the first ``max_speakers``.

    Args:
        spk_keys: Speaker of each row.
        spk_means: Speaker-mean embeddings ``[num_speakers, dim]``.
        path: Output PNG.
        max_speakers: Speakers shown in the heat map.
        subtract_mean: Subtract the mean of the speaker means first (as cosine scoring with a
            mean vector does); for K orthogonal speakers this leaves cosines of -1/(K-1).

    Returns:
        ``(path, mean |off-diagonal cosine|)``: 0 for orthogonal speakers, 1 for identical ones.

    Raises:
        ValueError: on fewer than 2 speakers, mismatched inputs, or means that are all identical
            once the mean is subtracted.
    """
    means = np.asarray(spk_means, dtype=np.float64)
    if means.ndim != 2 or means.shape[0] != len(spk_keys) or means.shape[0] < 2:
        raise ValueError(f"need 2+ speakers, one key per row: got {len(spk_keys)} keys, shape {means.shape}")
    if subtract_mean:
        means = means - means.mean(axis=0)
    norms = np.linalg.norm(means, axis=1, keepdims=True)
    if norms.max() <= 1e-12:
        raise ValueError("every speaker mean is the same vector: the cosine matrix is undefined")
    unit = means / np.maximum(norms, 1e-12)
    count = len(unit)
    edges = np.linspace(-1.0, 1.0, 101)
    histogram = np.zeros(len(edges) - 1, dtype=np.int64)
    absolute_sum = 0.0
    for first in range(0, count, 1024):
        block = np.clip(unit[first : first + 1024] @ unit.T, -1.0, 1.0)
        rows = np.arange(block.shape[0])
        upper = np.arange(count)[None, :] > (first + rows)[:, None]  # each pair once, no diagonal
        values = block[upper]
        absolute_sum += float(np.abs(values).sum())
        histogram += np.histogram(values, bins=edges)[0]
    pairs = count * (count - 1) // 2
    mean_abs = absolute_sum / pairs
    shown = min(count, max_speakers)
    matrix = unit[:shown] @ unit[:shown].T
    figure, (left, right) = plt.subplots(1, 2, figsize=(12.0, 5.2), gridspec_kw={"width_ratios": [1.15, 1]},
                                         constrained_layout=True)
    image = left.imshow(matrix, cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
    figure.colorbar(image, ax=left, fraction=0.046, pad=0.04)
    left.set_title(f"cosine of speaker means ({shown} of {count} speakers)", fontsize=10)
    if shown <= 30:
        left.set_xticks(range(shown), list(spk_keys)[:shown], rotation=90, fontsize=6)
        left.set_yticks(range(shown), list(spk_keys)[:shown], fontsize=6)
    right.stairs(histogram, edges, fill=True, color="C0", alpha=0.7)
    right.axvline(0.0, color="0.5", linestyle=":", linewidth=1)
    right.set(xlabel="off-diagonal cosine", ylabel="speaker pairs")
    right.set_title(f"{pairs} pairs, mean |cosine| {mean_abs:.3f}", fontsize=10)
    return _save(figure, path), mean_abs


__all__ = ["plot_det", "plot_roc", "plot_score_histograms", "plot_tsne", "read_train_metrics", "plot_training_curves",
           "plot_attention", "plot_speaker_cosine_matrix", "DET_TICKS_PERCENT"]
