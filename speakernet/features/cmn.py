"""Cepstral (feature) mean normalisation per utterance (mean only)."""

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
