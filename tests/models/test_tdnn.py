"""Tests for the x-vector TDNN."""

from __future__ import annotations

import pytest
import torch

from speakernet.models.pooling import TemporalStatsPool
from speakernet.models.registry import MODELS
from speakernet.models.tdnn import XVEC
from tiny_models import one_thread  # noqa: F401  (autouse: this module's tests run on one torch thread)


def count_parameters(model: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def tiny_model(**overrides: object) -> XVEC:
    args: dict[str, object] = {"feat_dim": 20, "hid_dim": 16, "stats_dim": 24, "embed_dim": 8}
    args.update(overrides)
    return XVEC(**args)


@pytest.fixture(scope="module")
def published() -> XVEC:
    with torch.device("meta"):
        return XVEC()


def test_registered() -> None:
    assert MODELS.get("XVEC") is XVEC


def test_parameter_count_matches_wespeaker(published: XVEC) -> None:
    # WeSpeaker XVEC(feat_dim=80, embed_dim=512): 4.61 M.
    assert abs(count_parameters(published) - 4.61e6) / 4.61e6 < 0.01
    assert count_parameters(published) == 4_610_524


def test_published_layout(published: XVEC) -> None:
    convs = [layer.conv for layer in published.frame_layers]
    assert [conv.kernel_size[0] for conv in convs] == [5, 3, 3, 1, 1]
    assert [conv.dilation[0] for conv in convs] == [1, 2, 3, 1, 1]
    assert [conv.out_channels for conv in convs] == [512, 512, 512, 512, 1500]
    assert all(conv.padding == (0,) and conv.bias is not None for conv in convs)
    assert all(not layer.bn.affine for layer in published.frame_layers)
    assert isinstance(published.pooling, TemporalStatsPool)
    assert (published.seg_1.in_features, published.seg_1.out_features) == (3000, 512)
    assert (published.seg_2.in_features, published.seg_2.out_features) == (512, 512)
    assert not published.seg_bn_1.affine
    assert published.feat_dim == 80 and published.embed_dim == 512 and published.embedding_layer == "b"


@pytest.mark.parametrize("frames", [15, 16, 50, 200, 201])
def test_frame_layers_trim_the_receptive_field(frames: int) -> None:
    model = tiny_model().eval()
    with torch.no_grad():
        assert model.frame_features(torch.randn(2, frames, 20)).shape == (2, 24, frames - 14)


def test_embedding_layer_picks_seg_1_or_seg_2() -> None:
    torch.manual_seed(0)
    model_b = tiny_model().train()
    model_b(torch.randn(6, 40, 20))  # non-trivial batch-norm statistics
    model_b.eval()
    model_a = tiny_model(embedding_layer="a").eval()
    model_a.load_state_dict(model_b.state_dict())  # one checkpoint serves both
    outputs: dict[str, torch.Tensor] = {}
    model_b.seg_1.register_forward_hook(lambda module, args, output: outputs.__setitem__("seg_1", output))
    model_b.seg_2.register_forward_hook(lambda module, args, output: outputs.__setitem__("seg_2", output))
    feats = torch.randn(3, 45, 20)
    with torch.no_grad():
        embedding_b = model_b(feats)
        embedding_a = model_a(feats)
        both = model_b.segment_embeddings(feats)
    torch.testing.assert_close(embedding_b, outputs["seg_2"])
    torch.testing.assert_close(embedding_a, outputs["seg_1"])
    torch.testing.assert_close(both[0], embedding_a)
    torch.testing.assert_close(both[1], embedding_b)
    assert not torch.allclose(embedding_a, embedding_b)


def test_frame_features_check_the_receptive_field_too() -> None:
    with pytest.raises(ValueError, match="XVEC needs at least 15 frames"):
        tiny_model().frame_features(torch.randn(2, 1, 20))


def test_rejects_bad_configs() -> None:
    with pytest.raises(ValueError, match="embedding_layer"):
        XVEC(embedding_layer="c")
    with pytest.raises(ValueError, match="stats_dim"):
        XVEC(stats_dim=0)
    with pytest.raises(ValueError, match="hid_dim"):
        XVEC(hid_dim=2.5)  # type: ignore[arg-type]
