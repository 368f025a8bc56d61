"""Cepstral (feature) mean normalisation: per utterance and Kaldi sliding-window, mean only."""

from __future__ import annotations

from typing import Any

import numpy as np


def _is_torch(value: Any) -> bool:
    return type(value).__module__.startswith("torch")


def apply_cmn(feats: Any) -> Any:
    """Subtracts the per-utterance mean over frames (no variance normalisation).

    Args:
        feats: ``[frames, dim]`` or a batch ``[batch, frames, dim]``, as a numpy array or a
            torch tensor; the mean is taken over the frame axis (``-2``) of each utterance.

    Returns:
        The normalised features, of the same type, shape and dtype.

    Raises:
        ValueError: on input with fewer than 2 dimensions or no frames.
    """
    if feats.ndim < 2:
        raise ValueError(f"feats must be [frames, dim] or [batch, frames, dim], got shape {tuple(feats.shape)}")
    if feats.shape[-2] == 0:
        raise ValueError("feats have no frames")
    if _is_torch(feats):
        return feats - feats.mean(dim=-2, keepdim=True)
    feats = np.asarray(feats)
    # Accumulate in float64 like Kaldi's CMVN stats, then return the input dtype.
    mean = feats.mean(axis=-2, keepdims=True, dtype=np.float64)
    return (feats - mean).astype(feats.dtype, copy=False)


def sliding_window_bounds(
    num_frames: int, window: int = 300, center: bool = True, min_window: int = 100
) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame window ``[start, end)`` of Kaldi's ``apply-cmvn-sliding``.

    Kaldi (``SlidingWindowCmnInternal``): centred windows start at ``t - window // 2``,
    otherwise at ``t - window`` and end after ``t``; a window that starts before frame 0 is
    shifted right; a non-centred window ends at ``max(t + 1, min_window)``; a window that
    ends past the last frame is shifted left and clipped at 0.

    Args:
        num_frames: Utterance length in frames.
        window: Window size in frames (``--cmn-window``).
        center: Centre the window on the frame (``--center``).
        min_window: Minimum window at the start of a non-centred pass (``--min-cmn-window``);
            unused (and, unlike Kaldi, not checked against ``window``) when centred.

    Returns:
        ``(start, end)`` int arrays of length ``num_frames``.

    Raises:
        ValueError: on a non-positive window or min_window.
    """
    if window <= 0:
        raise ValueError(f"window must be positive, got {window}")
    if not center and min_window <= 0:
        raise ValueError(f"min_window must be positive, got {min_window}")
    frames = np.arange(num_frames)
    if center:
        start = frames - window // 2
        end = start + window
    else:
        start = frames - window
        end = frames + 1
    shift = np.minimum(start, 0)
    start, end = start - shift, end - shift
    if not center:
        end = np.maximum(frames + 1, min_window)
    overshoot = np.maximum(end - num_frames, 0)
    start = np.maximum(start - overshoot, 0)
    end = end - overshoot
    return start, end


def sliding_cmn(feats: Any, window: int = 300, center: bool = True, min_window: int = 100) -> Any:
    """Sliding-window mean normalisation with Kaldi ``apply-cmvn-sliding --norm-vars=false``.

    Each frame has the mean of its window (see :func:`sliding_window_bounds`) subtracted.
    Window sums come from one float64 cumulative sum (Kaldi also works in double).

    Args:
        feats: ``[frames, dim]`` numpy array or torch tensor.
        window: Window size in frames.
        center: Centre the window on the frame.
        min_window: Minimum window for non-centred windows.

    Returns:
        The normalised features, of the same type, shape and dtype.

    Raises:
        ValueError: on input that is not 2-D or has no frames, or invalid window options.
    """
    if feats.ndim != 2:
        raise ValueError(f"feats must be [frames, dim], got shape {tuple(feats.shape)}")
    if feats.shape[0] == 0:
        raise ValueError("feats have no frames")
    if _is_torch(feats):
        import torch

        result = sliding_cmn(feats.detach().cpu().numpy(), window, center, min_window)
        return torch.from_numpy(result).to(device=feats.device, dtype=feats.dtype)
    feats = np.asarray(feats)
    start, end = sliding_window_bounds(feats.shape[0], window, center, min_window)
    cumulative = np.zeros((feats.shape[0] + 1, feats.shape[1]), dtype=np.float64)
    np.cumsum(feats, axis=0, dtype=np.float64, out=cumulative[1:])
    means = (cumulative[end] - cumulative[start]) / (end - start)[:, None]
    return (feats - means).astype(feats.dtype, copy=False)
