"""Tests for Deep Speaker's ResCNN."""

from __future__ import annotations

import pytest
import torch

from speakernet.models.pooling import TemporalAveragePool
from speakernet.models.registry import MODELS
from speakernet.models.rescnn import ClippedResBlock, ResCNN, ResCNNStage, clipped_relu
from tiny_models import one_thread  # noqa: F401  (autouse: this module's tests run on one torch thread)


def count_parameters(model: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def tiny_model(**overrides: object) -> ResCNN:
    args: dict[str, object] = {"feat_dim": 20, "embed_dim": 8, "channels": (4, 8), "blocks_per_stage": 1}
    args.update(overrides)
    return ResCNN(**args)


def test_registered() -> None:
    assert MODELS.get("ResCNN") is ResCNN


@pytest.mark.parametrize(("feat_dim", "frame_dim", "expected"), [(80, 2560, 24_427_712), (64, 2048, 24_165_568)])
def test_parameter_count_and_affine_input(feat_dim: int, frame_dim: int, expected: int) -> None:
    with torch.device("meta"):
        model = ResCNN(feat_dim=feat_dim)
    # Frequency joins the channels: 512 x ceil(F / 16); at 64 bins the paper's 2048 x 512 affine layer.
    assert model.frame_dim == frame_dim
    assert (model.affine.in_features, model.affine.out_features) == (frame_dim, 512)
    assert count_parameters(model) == expected
    assert abs(count_parameters(model) - 24e6) / 24e6 < 0.02  # Deep Speaker: about 24 M


def test_published_layout() -> None:
    with torch.device("meta"):
        model = ResCNN()
    assert [stage.conv.out_channels for stage in model.stages] == [64, 128, 256, 512]
    assert all(stage.conv.kernel_size == (5, 5) and stage.conv.stride == (2, 2) for stage in model.stages)
    assert all(len(stage.blocks) == 3 for stage in model.stages)
    assert isinstance(model.pooling, TemporalAveragePool)
    assert model.feat_dim == 80 and model.embed_dim == 512


def test_clipped_relu() -> None:
    x = torch.tensor([-5.0, 0.0, 3.0, 20.0, 25.0])
    torch.testing.assert_close(clipped_relu(x), torch.tensor([0.0, 0.0, 3.0, 20.0, 20.0]))


def test_residual_block_shortcut_is_the_identity() -> None:
    block = ClippedResBlock(channels=3).eval()
    with torch.no_grad():
        for conv in (block.conv1, block.conv2):
            conv.weight.zero_()
    x = torch.randn(2, 3, 5, 6) * 30
    torch.testing.assert_close(block(x), clipped_relu(x))  # the branch is 0, so the block clips its input


def test_stage_output_is_clipped_and_halves_both_axes() -> None:
    torch.manual_seed(0)
    # Eval mode with fresh statistics: batch norm is (nearly) the identity, so scale reaches the clip.
    stage = ResCNNStage(in_channels=1, out_channels=4, num_blocks=2).eval()
    with torch.no_grad():
        out = stage(torch.randn(2, 1, 13, 20) * 100)
    assert out.shape == (2, 4, 7, 10)  # ceil(13 / 2), ceil(20 / 2)
    assert out.min() >= 0 and out.max() <= 20
    assert (out == 20).any()  # large inputs do reach the clip


@pytest.mark.parametrize("frames", [1, 4, 5, 50, 161])
def test_outputs_have_unit_norm(frames: int) -> None:
    torch.manual_seed(0)
    model = tiny_model().eval()
    with torch.no_grad():
        embeddings = model(torch.randn(3, frames, 20))
    assert embeddings.shape == (3, 8)
    torch.testing.assert_close(embeddings.norm(dim=1), torch.ones(3))


def test_default_model_on_a_short_crop() -> None:
    torch.manual_seed(0)
    model = ResCNN(feat_dim=64, channels=(8, 16, 32, 64), embed_dim=32).eval()
    with torch.no_grad():
        embeddings = model(torch.randn(2, 50, 64))  # 50 frames -> 4 after four stages
    assert embeddings.shape == (2, 32)
    torch.testing.assert_close(embeddings.norm(dim=1), torch.ones(2))


@pytest.mark.parametrize("pooling", ["TSTP", "ASTP", "MHASP"])
def test_stats_poolings_double_the_affine_input_and_keep_unit_norm(pooling: str) -> None:
    torch.manual_seed(0)
    model = tiny_model(pooling=pooling).eval()
    with torch.no_grad():
        embeddings = model(torch.randn(2, 33, 20))
    assert embeddings.shape == (2, 8)
    assert model.affine.in_features == model.pooling.out_dim == 2 * model.frame_dim
    torch.testing.assert_close(embeddings.norm(dim=1), torch.ones(2))


def test_rejects_bad_configs() -> None:
    with pytest.raises(ValueError, match="embed_dim"):
        ResCNN(embed_dim=0)
    with pytest.raises(ValueError, match="channels"):
        ResCNN(channels=())
    with pytest.raises(ValueError, match="channels"):
        ResCNN(channels=(64, 0))
    with pytest.raises(ValueError, match="blocks_per_stage"):
        ResCNN(blocks_per_stage=-1)
