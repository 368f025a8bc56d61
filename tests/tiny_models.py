"""Tiny constructor arguments for every registered model, for tests that must run over all of them.

The sizes keep each model's structure (its blocks, poolings, branches) and shrink its widths, so a
forward and backward pass of a short crop takes milliseconds. Models without width options (the
named RepVGG variants) keep their widths. A model registered without an entry here fails
``test_every_registered_model_has_tiny_args``, so a new model cannot slip past the shared tests.
"""

from __future__ import annotations

from typing import Any

TINY_MODEL_ARGS: dict[str, dict[str, Any]] = {
    "ECAPA_TDNN": {"channels": 16, "embed_dim": 8, "attention_bottleneck": 8, "se_bottleneck": 8},
    "CAMPPlus": {"embed_dim": 8, "growth_rate": 4, "bn_size": 2, "init_channels": 8, "fcm_channels": 4,
                 "block_layers": [2, 2, 2], "seg_len": 10},
    "XVEC": {"hid_dim": 16, "stats_dim": 24, "embed_dim": 8},
    "ResCNN": {"channels": [4, 4, 8, 8], "blocks_per_stage": 1, "embed_dim": 8},
    **{name: {"m_channels": 4, "embed_dim": 8}
       for name in ("ResNet18", "ResNet34", "ResNet50", "ResNet101", "ResNet152", "ResNet221", "ResNet293")},
    **{name: {"embed_dim": 8} for name in ("RepVGG_TINY_A0", "RepVGG_A0", "RepVGG_A1", "RepVGG_B0", "RepVGG_B1")},
}
"""Registered model name -> ``model_args`` of a tiny instance."""

TINY_FEAT_DIM = 20
"""Feature dimension the tiny models are built for (the training tests' data)."""

# A few models stand for the rest in the slower tests (training runs, DDP): one of each family.
FAMILY_REPRESENTATIVES = ("ECAPA_TDNN", "ResNet34", "RepVGG_TINY_A0", "CAMPPlus", "XVEC", "ResCNN")
