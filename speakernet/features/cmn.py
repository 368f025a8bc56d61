"""Cepstral (feature) mean normalisation per utterance (mean only)."""

from __future__ import annotations

from typing import Any

import numpy as np


def _is_torch(value: Any) -> bool:
    return type(value).__module__.startswith("torch")


def apply_cmn(feats: Any, in_place: bool = False) -> Any:
    """Subtracts the per-utterance mean over frames (no variance normalisation).

    Args:
        feats: ``[frames, dim]`` or a batch ``[batch, frames, dim]``, as a numpy array or a
            torch tensor; the mean is taken over the frame axis (``-2``) of each utterance.
        in_place: Overwrite ``feats`` (a writable float numpy array) instead of returning a new
            array: a long recording's features are then not copied. Bit-identical to the copy.

    Returns:
        The normalised features, of the same type, shape and dtype (``feats`` itself when
        ``in_place``).

    Raises:
        ValueError: on input with fewer than 2 dimensions or no frames.
    """
    if feats.ndim < 2:
        raise ValueError(f"feats must be [frames, dim] or [batch, frames, dim], got shape {tuple(feats.shape)}")
    if feats.shape[-2] == 0:
        raise ValueError("feats have no frames")
    if _is_torch(feats):
        if in_place:
            raise ValueError("apply_cmn: in_place is for numpy arrays")
        return feats - feats.mean(dim=-2, keepdim=True)
    feats = np.asarray(feats)
    # Accumulate in float64 like Kaldi's CMVN stats, then return the input dtype.
    mean = feats.mean(axis=-2, keepdims=True, dtype=np.float64)
    if in_place:
        if not np.issubdtype(feats.dtype, np.floating):
            raise ValueError(f"apply_cmn: in_place needs float features, got {feats.dtype}")
        # Subtracted in float64 and rounded on the way out, block by block: the copy's arithmetic.
        return np.subtract(feats, mean, out=feats, casting="same_kind")
    return (feats - mean).astype(feats.dtype, copy=False)
