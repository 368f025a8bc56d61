"""Speaker-embedding models.

Importing this package registers every model family in :data:`MODELS`; configs then name a
model (``model: ECAPA_TDNN``) and its arguments (``model_args: {...}``). Training heads are
registered by ``speakernet.losses`` (``speakernet.losses.HEADS``, built with
``speakernet.losses.build_head``). Temporal poolings are components of their own
(:data:`POOLINGS`, :func:`build_pooling`) that any model takes by name.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from speakernet.models import (  # noqa: F401  (each registers its models)
    campplus, ecapa_sb, ecapa_tdnn, repvgg, rescnn, resnet, tdnn)
from speakernet.models.pooling import POOLINGS, AttentiveStatsPool, TemporalStatsPool, build_pooling
from speakernet.models.registry import MODELS

__all__ = ["MODELS", "POOLINGS", "AttentiveStatsPool", "TemporalStatsPool", "build_model", "build_pooling"]


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

