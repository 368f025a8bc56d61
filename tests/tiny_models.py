"""Tiny constructor arguments for every registered model, for tests that must run over all of them.

The sizes keep each model's structure (its blocks, poolings, branches) and shrink its widths, so a
forward and backward pass of a short crop takes milliseconds. Models without width options (the
named RepVGG sizes) keep their widths; the generic ``RepVGG`` gets tiny ones. A model registered
without an entry here fails ``test_every_registered_model_has_tiny_args``
(``tests/models/test_models_common.py``), so a new model cannot slip past the shared tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch

TINY_MODEL_ARGS: dict[str, dict[str, Any]] = {
    "ECAPA_TDNN": {"channels": 16, "embed_dim": 8, "attention_bottleneck": 8, "se_bottleneck": 8},
    "ECAPA_TDNN_SB": {"channels": [16, 16, 16, 16, 48], "embed_dim": 8, "attention_channels": 8, "se_channels": 8},
    "CAMPPlus": {"embed_dim": 8, "growth_rate": 4, "bn_size": 2, "init_channels": 8, "fcm_channels": 4,
                 "block_layers": [2, 2, 2], "seg_len": 10},
    "XVEC": {"hid_dim": 16, "stats_dim": 24, "embed_dim": 8},
    "ResCNN": {"channels": [4, 4, 8, 8], "blocks_per_stage": 1, "embed_dim": 8},
    **{name: {"m_channels": 4, "embed_dim": 8}
       for name in ("ResNet18", "ResNet34", "ResNet50", "ResNet101", "ResNet152", "ResNet221", "ResNet293")},
    "RepVGG": {"num_blocks": [2, 2, 1, 1], "stage_channels": [4, 8, 8, 16], "embed_dim": 8},
    **{name: {"embed_dim": 8} for name in ("RepVGG_TINY_A0", "RepVGG_A0", "RepVGG_A1", "RepVGG_B0", "RepVGG_B1")},
}
"""Registered model name -> ``model_args`` of a tiny instance."""

TINY_FEAT_DIM = 20
"""Feature dimension the tiny models are built for (the training tests' data)."""

# One model of each architecture (block type) stands for its depth and width presets in the slower
# tests (resume, DDP): the presets of a family run the same code with other counts and widths.
FAMILY_REPRESENTATIVES = ("ECAPA_TDNN", "ResNet34", "ResNet50", "RepVGG", "CAMPPlus", "XVEC", "ResCNN")


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """Runs every test of the module that imports this fixture on one torch thread, then restores the count.

    Tiny models on a shared 2-core machine: thread hand-offs cost more than they save (a module of
    model tests runs up to twice as fast).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def randomise_batch_norms(module: torch.nn.Module, seed: int = 0) -> None:
    """Running statistics and affine parameters far from the identity, negative scales included."""
    generator = torch.Generator().manual_seed(seed)
    for norm in module.modules():
        if isinstance(norm, torch.nn.BatchNorm1d):
            size = norm.num_features
            norm.running_mean.copy_(torch.randn(size, generator=generator))
            norm.running_var.copy_(torch.rand(size, generator=generator) + 0.1)
            norm.weight.data.copy_(torch.randn(size, generator=generator))
            norm.bias.data.copy_(torch.randn(size, generator=generator))
