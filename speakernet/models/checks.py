"""The input check every model's forward starts with (one message format for all of them)."""

from __future__ import annotations

import torch


def check_feats(feats: torch.Tensor, feat_dim: int, model: str, min_frames: int = 1, why: str = "") -> None:
    """Checks that ``feats`` is ``[batch, frames, feat_dim]`` with at least ``min_frames`` frames.

    Args:
        feats: The model's input.
        feat_dim: The feature dimension the model was built for.
        model: The model's name, for the message.
        min_frames: Fewest frames the model can take.
        why: Why that many, appended to the message (e.g. " (its receptive field)").

    Raises:
        ValueError: naming the model and the expected shape.
    """
    if feats.dim() != 3 or feats.shape[2] != feat_dim:
        raise ValueError(f"{model} expects feats [batch, frames, {feat_dim}], got {list(feats.shape)}")
    if feats.shape[1] < min_frames:
        fewest = "one frame" if min_frames == 1 else f"{min_frames} frames"
        raise ValueError(f"{model} needs at least {fewest}{why}, got feats with {feats.shape[1]} frames")
