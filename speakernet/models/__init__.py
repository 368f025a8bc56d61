"""Speaker-embedding models.

Importing this package registers every model family in :data:`MODELS`; configs then name a
model (``model: ECAPA_TDNN``) and its arguments (``model_args: {...}``). Training heads are
registered by ``speakernet.losses`` (``speakernet.losses.HEADS``); :func:`build_head` here
imports it first.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from speakernet.models import ecapa_tdnn  # noqa: F401  (registers ECAPA_TDNN)
from speakernet.models.pooling import AttentiveStatsPool, TemporalStatsPool
from speakernet.models.registry import MODELS

__all__ = ["MODELS", "AttentiveStatsPool", "TemporalStatsPool", "build_head", "build_model"]


def build_model(name: str, **args: Any) -> nn.Module:
    """Builds the registered model ``name``.

    Args:
        name: Registered model name, e.g. ``"ECAPA_TDNN"``.
        **args: The model's constructor arguments (``model_args`` in a config).

    Returns:
        The model, mapping ``feats [B, T, F]`` to ``embeddings [B, embed_dim]``.

    Raises:
        KeyError: if ``name`` is unknown; the message lists the registered models.
        TypeError: if ``args`` holds an argument the model does not take.
    """
    return MODELS.build(name, **args)

