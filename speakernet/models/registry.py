"""The model and head registries.

Kept in a module of its own, free of model code, so that ``speakernet.losses`` can register its
heads without importing the model families (and so without an import cycle).
"""

from __future__ import annotations

from torch import nn

from speakernet.registry import Registry

MODELS: Registry[nn.Module] = Registry("model")
"""Embedding extractors: ``model(feats [B, T, F]) -> embeddings [B, embed_dim]``."""

HEADS: Registry[nn.Module] = Registry("head")
"""Training heads: ``head(embeddings [B, D], labels [B]) -> (loss, logits)``, and ``head.correct(logits, labels)
-> hits [N] bool`` for the accuracy (classifier heads: ``logits [B, num_classes]``, ``N = B``)."""
