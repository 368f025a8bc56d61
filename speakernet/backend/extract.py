"""Embedding extraction: features of a data dir -> ``xvector.ark/scp``, speaker means, global mean."""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterator

import kaldiio
import numpy as np
import torch
from torch import nn

from speakernet.backend.embeddings import global_mean, speaker_means, write_embeddings, write_vector
from speakernet.data.kaldi_dir import DataDirError, read_scp
from speakernet.features.cmn import apply_cmn
from speakernet.utils.faults import fault_point
from speakernet.utils.fileio import ensure_writable_dir
from speakernet.utils.logging import Progress

logger = logging.getLogger(__name__)

FRAME_SHIFT_S = 0.01
MODES = ("full", "multicrop")


def crop_starts(num_frames: int, crop_frames: int, num_crops: int) -> list[int]:
    """Evenly spaced start frames of ``num_crops`` windows covering an utterance.

    Deterministic (no randomness at test time); crops overlap when the utterance is short.

    Args:
        num_frames: Utterance length in frames (at least ``crop_frames``).
        crop_frames: Window length in frames.
        num_crops: Number of windows.

    Returns:
        Start frame of each window.
    """
    last = num_frames - crop_frames
    if num_crops == 1:
        return [last // 2]
    return [round(i * last / (num_crops - 1)) for i in range(num_crops)]


def prepare_features(feats: np.ndarray, vad: np.ndarray | None, min_frames: int) -> np.ndarray:
    """VAD-filters (when given), repeat-pads to ``min_frames`` and mean-normalises an utterance.

    An utterance whose VAD keeps no frame falls back to all its frames (with a warning by the
    caller) rather than producing no embedding.
    """
    if vad is not None:
        voiced = feats[vad > 0.5]
        feats = voiced if len(voiced) > 0 else feats
    if len(feats) < min_frames:
        feats = np.pad(feats, ((0, min_frames - len(feats)), (0, 0)), mode="wrap")
    return apply_cmn(feats.astype(np.float32, copy=False))


#: Full-mode utterances longer than this many frames (60 s) are embedded in equal chunks whose
#: embeddings are averaged: activations grow with the length (a 10-minute file took 3.9 GB whole),
#: and every published evaluation utterance is shorter.
MAX_FULL_FRAMES = 6000


def full_windows(feats: np.ndarray, max_frames: int = MAX_FULL_FRAMES) -> np.ndarray:
    """An utterance as one window, or as equal, evenly spaced chunks of at most ``max_frames`` frames.

    Args:
        feats: Normalised features ``[T, F]``.
        max_frames: Longest window (0: no limit, the whole utterance at once).

    Returns:
        ``[num_windows, frames, F]``; the chunks cover every frame and overlap by less than one chunk.
    """
    if max_frames <= 0 or len(feats) <= max_frames:
        return feats[None]
    count = -(-len(feats) // max_frames)
    length = -(-len(feats) // count)
    return np.stack([feats[start : start + length] for start in crop_starts(len(feats), length, count)])


def forward_windows(model: nn.Module, windows: torch.Tensor, chunked: bool, max_frames: int) -> np.ndarray:
    """Embeddings of ``windows [N, T, F]``; the chunks of a long utterance go through the model a
    few at a time (at most ``max_frames`` frames per pass), so memory stays that of one chunk."""
    if not chunked:
        return model(windows).float().cpu().numpy()
    step = max(1, max_frames // windows.shape[1])
    return torch.cat([model(windows[i : i + step]).float().cpu() for i in range(0, len(windows), step)]).numpy()


def _windows(feats: np.ndarray, mode: str, crop_frames: int, num_crops: int,
             max_frames: int = MAX_FULL_FRAMES) -> np.ndarray:
    if mode == "full":
        return full_windows(feats, max_frames)
    if len(feats) < crop_frames:
        feats = np.pad(feats, ((0, crop_frames - len(feats)), (0, 0)), mode="wrap")
    starts = crop_starts(len(feats), crop_frames, num_crops)
    windows = np.stack([feats[s : s + crop_frames] for s in starts])
    return apply_cmn(windows)  # per-crop CMN, as the training crops have


def _batches(items: list[tuple[str, np.ndarray]], batch_size: int, mode: str) -> Iterator[list[tuple[str, np.ndarray]]]:
    """Groups windows of equal length: multi-crop windows always, full utterances when equally long."""
    if mode == "multicrop":
        per_batch = max(1, batch_size // max(1, items[0][1].shape[0])) if items else 1
        for i in range(0, len(items), per_batch):
            yield items[i : i + per_batch]
        return
    by_length: dict[int, list[tuple[str, np.ndarray]]] = defaultdict(list)
    for item in items:
        by_length[item[1].shape[1]].append(item)
    for group in by_length.values():
        for i in range(0, len(group), batch_size):
            yield group[i : i + batch_size]


@torch.inference_mode()
def extract_embeddings(
    model: nn.Module,
    data_dir: str | Path,
    out_dir: str | Path,
    mode: str = "full",
    use_vad: bool = True,
    num_crops: int = 5,
    crop_frames: int = 300,
    batch_size: int = 32,
    min_frames: int = 50,
    chunk_utts: int = 256,
    device: str = "cpu",
    max_frames: int = MAX_FULL_FRAMES,
) -> dict[str, Any]:
    """Extracts one embedding per utterance of a data dir and writes the embedding tables.

    Writes ``out_dir/xvector.ark/.scp`` (utterances), ``out_dir/spk_xvector.ark/.scp`` (plain
    per-speaker means, when the dir has ``utt2spk``) and ``out_dir/mean.vec`` (global mean).

    Args:
        model: Embedding model, ``[B, T, F] -> [B, D]``; put in eval mode here.
        data_dir: Data dir with ``feats.scp`` (and ``vad.scp`` when ``use_vad``).
        out_dir: Output dir.
        mode: ``full`` (the whole utterance at once) or ``multicrop`` (``num_crops`` evenly
            spaced windows of ``crop_frames``, embeddings averaged).
        use_vad: Drop unvoiced frames first (as in training).
        num_crops: Windows per utterance in ``multicrop`` mode.
        crop_frames: Window length in frames in ``multicrop`` mode.
        batch_size: Windows per forward pass.
        min_frames: Shorter utterances are repeat-padded to this length.
        chunk_utts: Utterances read into memory at a time.
        device: Torch device for the forward pass.
        max_frames: In ``full`` mode, longer utterances are embedded in chunks of at most this many
            frames, their embeddings averaged (:func:`full_windows`; 0: never).

    Returns:
        Counts and throughput figures.

    Raises:
        DataDirError: on a missing ``feats.scp``/``vad.scp`` entry.
        ValueError: on an unknown mode.
    """
    if mode not in MODES:
        raise ValueError(f"unknown extraction mode '{mode}'; choose one of: {', '.join(MODES)}")
    for name, value, lowest in (("num_crops", num_crops, 1), ("crop_frames", crop_frames, 1),
                                ("batch_size", batch_size, 1), ("min_frames", min_frames, 1),
                                ("chunk_utts", chunk_utts, 1), ("max_frames", max_frames, 0)):
        if value < lowest:
            raise ValueError(f"extraction: {name} must be >= {lowest}, got {value}")
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    feats_scp = read_scp(data_dir / "feats.scp")
    vad_scp = read_scp(data_dir / "vad.scp") if use_vad else {}
    if use_vad:
        missing = [utt for utt in feats_scp if utt not in vad_scp]
        if missing:
            message = f"{len(missing)} utterances of feats.scp have no VAD entry"
            raise DataDirError(data_dir / "vad.scp", message, key=missing[0])
    ensure_writable_dir(out_dir)  # a read-only or full output dir fails now, not after the last embedding
    model.eval().to(device)
    utts = list(feats_scp)
    embeddings: dict[str, np.ndarray] = {}
    audio_seconds = 0.0
    started = time.perf_counter()
    progress = Progress(len(utts), f"extracting {data_dir}", "utts", log=logger)
    for first in range(0, len(utts), chunk_utts):
        items = []
        for utt in utts[first : first + chunk_utts]:
            feats = kaldiio.load_mat(feats_scp[utt])
            audio_seconds += len(feats) * FRAME_SHIFT_S
            vad = kaldiio.load_mat(vad_scp[utt]) if use_vad else None
            if vad is not None and not np.any(vad > 0.5):
                logger.warning("%s: VAD marks no frame voiced; using all %d frames", utt, len(feats))
            prepared = prepare_features(np.asarray(feats), vad, min_frames)
            items.append((utt, _windows(prepared, mode, crop_frames, num_crops, max_frames)))
        for batch in _batches(items, batch_size, mode):
            windows = torch.from_numpy(np.concatenate([w for _, w in batch])).to(device)
            output = forward_windows(model, windows, mode == "full" and len(windows) > len(batch), max_frames)
            position = 0
            for utt, w in batch:
                embeddings[utt] = output[position : position + len(w)].mean(axis=0)
                position += len(w)
            fault_point("extract.batch")
        progress.update(len(items))
    progress.close()
    elapsed = time.perf_counter() - started
    keys = list(feats_scp)
    matrix = np.stack([embeddings[utt] for utt in keys])
    write_embeddings(out_dir / "xvector.ark", out_dir / "xvector.scp", keys, matrix)
    write_vector(out_dir / "mean.vec", global_mean(matrix))
    if (data_dir / "utt2spk").is_file():
        spk_keys, means = speaker_means(keys, matrix, read_scp(data_dir / "utt2spk"), data_dir / "utt2spk")
        write_embeddings(out_dir / "spk_xvector.ark", out_dir / "spk_xvector.scp", spk_keys, means)
    stats = {
        "utterances": len(keys),
        "audio_seconds": audio_seconds,
        "seconds": elapsed,
        "utts_per_second": len(keys) / max(elapsed, 1e-9),
        "real_time_factor": audio_seconds / max(elapsed, 1e-9),
    }
    logger.info(
        "extracted %d embeddings (%s mode) from %s in %.1f s: %.1f utts/s, %.1fx real time",
        len(keys), mode, data_dir, elapsed, stats["utts_per_second"], stats["real_time_factor"],
    )
    return stats
