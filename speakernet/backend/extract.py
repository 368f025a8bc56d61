"""Embedding extraction: features of a data dir -> ``xvector.ark/scp``, speaker means, global mean."""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterator, Sequence

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


def prepare_features(feats: np.ndarray, vad: np.ndarray | None, min_frames: int,
                     overwrite: bool = False) -> np.ndarray:
    """VAD-filters (when given), repeat-pads to ``min_frames`` and mean-normalises an utterance.

    An utterance whose VAD keeps no frame falls back to all its frames (with a warning by the
    caller) rather than producing no embedding. The result is float32 and, unless ``overwrite``,
    a new array: the VAD filter or padding makes the one copy and CMN works on it in place.

    Args:
        feats: Features ``[frames, dim]``.
        vad: Per-frame voiced flags ``[frames]`` (> 0.5: voiced), or None.
        min_frames: Shorter results are repeat-padded to this many frames.
        overwrite: ``feats`` may be normalised in place when nothing else copies it (no VAD, no
            padding, float32): a long recording's features are then not copied at all.

    Returns:
        float32 ``[max(voiced frames, min_frames), dim]``.
    """
    feats = np.asarray(feats)
    copied = False
    if vad is not None:
        voiced = vad > 0.5
        if voiced.any():
            feats, copied = feats[voiced], True
    if len(feats) < min_frames:
        feats, copied = np.pad(feats, ((0, min_frames - len(feats)), (0, 0)), mode="wrap"), True
    if feats.dtype != np.float32 or not (copied or (overwrite and feats.flags.writeable)):
        feats = feats.astype(np.float32)
    return apply_cmn(feats, in_place=True)


#: Full-mode utterances longer than this many frames (60 s) are embedded in equal chunks whose
#: embeddings are averaged: activations grow with the length (a 10-minute file took 3.9 GB whole),
#: and every published evaluation utterance is shorter.
MAX_FULL_FRAMES = 6000


def full_windows(feats: np.ndarray, max_frames: int = MAX_FULL_FRAMES) -> list[np.ndarray]:
    """An utterance as one window, or as equal, evenly spaced chunks of at most ``max_frames`` frames.

    Args:
        feats: Normalised features ``[T, F]``.
        max_frames: Longest window (0: no limit, the whole utterance at once).

    Returns:
        The windows ``[frames, F]``, all of one length, as views of ``feats`` (no copy of a long
        recording); the chunks cover every frame and overlap by less than one chunk.
    """
    if max_frames <= 0 or len(feats) <= max_frames:
        return [feats]
    count = -(-len(feats) // max_frames)
    length = -(-len(feats) // count)
    return [feats[start : start + length] for start in crop_starts(len(feats), length, count)]


def forward_windows(model: nn.Module, windows: Sequence[np.ndarray], max_frames: int, device: str = "cpu",
                    progress: Progress | None = None) -> np.ndarray:
    """Embeddings of equally long windows, a few at a time, so memory stays that of one pass.

    Args:
        model: Embedding model, ``[B, T, F] -> [B, D]``.
        windows: Windows ``[T, F]`` of one length (e.g. from :func:`full_windows`); each pass
            stacks only its own windows.
        max_frames: At most this many frames per pass, and at least one window (0: all at once).
        device: Torch device of the model.
        progress: Told of every window done.

    Returns:
        float32 ``[len(windows), D]``.
    """
    step = max(1, max_frames // len(windows[0])) if max_frames > 0 else len(windows)
    outputs = []
    for first in range(0, len(windows), step):
        group = windows[first : first + step]
        batch = np.ascontiguousarray(group[0])[None] if len(group) == 1 else np.stack(group)
        outputs.append(model(torch.from_numpy(batch).to(device)).float().cpu())
        if progress is not None:
            progress.update(len(group))
    return torch.cat(outputs).numpy()


#: An utterance in at least this many windows (10 minutes at the default ``max_frames``) says so
#: and gets a progress bar of its own.
MANY_WINDOWS = 10


def embed_long(model: nn.Module, windows: Sequence[np.ndarray], name: str, max_frames: int,
               device: str = "cpu", announce_from: int = MANY_WINDOWS) -> np.ndarray:
    """The averaged embedding of one utterance's windows, logging how many there are when many.

    Args:
        model: Embedding model, ``[B, T, F] -> [B, D]``.
        windows: The utterance's windows (:func:`full_windows`).
        name: How messages name the utterance.
        max_frames: At most this many frames per pass (see :func:`forward_windows`).
        device: Torch device of the model.
        announce_from: From this many windows on, log how many and show a progress bar.

    Returns:
        float32 ``[D]``, the mean of the windows' embeddings.
    """
    if len(windows) < max(announce_from, 2):
        return forward_windows(model, windows, max_frames, device).mean(axis=0)
    frames = len(windows[0])
    logger.info("%s: embedding %d windows of %d frames (%.0f s each; extract.max_frames %d), averaged",
                name, len(windows), frames, frames * FRAME_SHIFT_S, max_frames)
    with Progress(len(windows), f"embedding {name}", "windows", log=logger) as progress:
        return forward_windows(model, windows, max_frames, device, progress).mean(axis=0)


def _windows(feats: np.ndarray, mode: str, crop_frames: int, num_crops: int) -> np.ndarray:
    """``[windows, frames, F]``: the utterance whole (``full``, short enough) or its multi-crop windows."""
    if mode == "full":
        return feats[None]
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

    Every utterance of ``feats.scp`` gets an embedding: none is left out. One whose VAD keeps no
    frame is embedded from all its frames (counted in the summary and ``unvoiced_utterances``),
    one shorter than ``min_frames`` is repeat-padded.

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
    long_utts = long_windows = 0
    unvoiced: list[str] = []  # VAD on, but no frame voiced: embedded from all frames, not left out
    progress = Progress(len(utts), f"extracting {data_dir}", "utts", log=logger)
    for first in range(0, len(utts), chunk_utts):
        items = []
        for utt in utts[first : first + chunk_utts]:
            feats = kaldiio.load_mat(feats_scp[utt])
            audio_seconds += len(feats) * FRAME_SHIFT_S
            vad = kaldiio.load_mat(vad_scp[utt]) if use_vad else None
            if vad is not None and not np.any(vad > 0.5):
                logger.warning("%s: VAD marks no frame voiced; using all %d frames", utt, len(feats))
                unvoiced.append(utt)
            prepared = prepare_features(np.asarray(feats), vad, min_frames, overwrite=True)  # feats is ours
            del feats
            chunks = full_windows(prepared, max_frames) if mode == "full" else []
            if len(chunks) > 1:  # a long utterance: now, alone, a chunk per pass (views, no stacked copy)
                embeddings[utt] = embed_long(model, chunks, utt, max_frames, device)
                long_utts, long_windows = long_utts + 1, long_windows + len(chunks)
                progress.update(1)
                fault_point("extract.batch")
                continue
            items.append((utt, _windows(prepared, mode, crop_frames, num_crops)))
        for batch in _batches(items, batch_size, mode):
            windows = torch.from_numpy(np.concatenate([w for _, w in batch])).to(device)
            output = model(windows).float().cpu().numpy()
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
        "chunked_utterances": long_utts,
        "chunked_windows": long_windows,
        "unvoiced_utterances": len(unvoiced),
    }
    logger.info(
        "extracted %d embeddings (%s mode, VAD %s) from %s in %.1f s: %.1f utts/s, %.1fx real time",
        len(keys), mode, "on" if use_vad else "off", data_dir, elapsed, stats["utts_per_second"],
        stats["real_time_factor"],
    )
    if unvoiced:  # none is left out, but these embeddings include silence
        logger.warning("%d of %d utterances have no voiced frame and were embedded from all their frames (e.g. %s); "
                       "check their audio, or lower the VAD threshold of the features", len(unvoiced), len(keys),
                       unvoiced[0])
    if long_utts:
        logger.info("%d utterances longer than %d frames were embedded in %d windows, averaged per utterance",
                    long_utts, max_frames, long_windows)
    return stats
