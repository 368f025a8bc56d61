"""Tests for the CAM++ model."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from speakernet.models.campplus import CAMLayer, CAMPPlus, segment_mean
from speakernet.models.pooling import TemporalStatsPool
from speakernet.models.registry import MODELS
from tiny_models import one_thread  # noqa: F401  (autouse: this module's tests run on one torch thread)


def count_parameters(model: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def tiny_model(**overrides: object) -> CAMPPlus:
    args: dict[str, object] = {"feat_dim": 80, "embed_dim": 16, "growth_rate": 8, "bn_size": 2, "init_channels": 16,
                               "block_layers": (2, 2, 2), "fcm_channels": 4, "seg_len": 20}
    args.update(overrides)
    return CAMPPlus(**args)


def reference_segment_mean(x: torch.Tensor, seg_len: int) -> torch.Tensor:
    """CAM++'s segment pooling written the obvious way: ceil-mode average pooling, repeated back."""
    pooled = F.avg_pool1d(x, kernel_size=seg_len, stride=seg_len, ceil_mode=True)
    return pooled.repeat_interleave(seg_len, dim=2)[:, :, : x.shape[2]]


@pytest.fixture(scope="module")
def published() -> CAMPPlus:
    # On the meta device: the full model is only inspected, never run.
    with torch.device("meta"):
        return CAMPPlus()


def test_registered() -> None:
    assert MODELS.get("CAMPPlus") is CAMPPlus


def test_parameter_count_matches_wespeaker(published: CAMPPlus) -> None:
    # WeSpeaker CAMPPlus(feat_dim=80, embed_dim=512) without the classifier: 7.176 M.
    assert abs(count_parameters(published) - 7.176e6) / 7.176e6 < 0.01
    assert count_parameters(published) == 7_176_224


def test_published_layout(published: CAMPPlus) -> None:
    assert published.head.out_dim == 32 * 10  # 80 bins -> 10 after three frequency strides
    assert published.tdnn.kernel_size == (5,) and published.tdnn.stride == (2,) and published.tdnn.bias is None
    assert [len(block.layers) for block in published.blocks] == [12, 24, 16]
    assert [block.layers[0].cam.local.dilation[0] for block in published.blocks] == [1, 2, 2]
    assert published.blocks[0].layers[0].bottleneck.out_channels == 128  # bn_size * growth_rate
    assert [(t.conv.in_channels, t.conv.out_channels) for t in published.transits] == [(512, 256), (1024, 512),
                                                                                       (1024, 512)]
    assert isinstance(published.pooling, TemporalStatsPool)
    assert published.embedding.in_features == 1024 and published.embedding.out_features == 512
    assert published.embedding.bias is None and not published.embedding_bn.affine
    assert published.blocks[0].layers[0].cam.seg_len == 100
    assert published.feat_dim == 80 and published.embed_dim == 512


@pytest.mark.parametrize("frames", [1, 7, 99, 100, 101, 250, 300])
def test_segment_mean_matches_ceil_mode_average_pooling(frames: int) -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 3, frames) * 3 + 5
    torch.testing.assert_close(segment_mean(x, 100), reference_segment_mean(x, 100))
    torch.testing.assert_close(segment_mean(x, 7), reference_segment_mean(x, 7))


def test_segment_mean_by_hand() -> None:
    x = torch.arange(7, dtype=torch.float32).reshape(1, 1, 7)
    expected = torch.tensor([[[1.0, 1.0, 1.0, 4.0, 4.0, 4.0, 6.0]]])  # segments {0,1,2} {3,4,5} {6}
    torch.testing.assert_close(segment_mean(x, 3), expected)
    torch.testing.assert_close(segment_mean(x, 10), torch.full((1, 1, 7), 3.0))  # one short segment


def test_segment_mean_stays_accurate_on_long_inputs() -> None:
    torch.manual_seed(0)
    x = torch.relu(torch.randn(1, 2, 100_000)) * 10 + 50  # large, non-negative, like post-ReLU activations
    torch.testing.assert_close(segment_mean(x, 100), reference_segment_mean(x, 100), rtol=1e-5, atol=1e-4)


def test_cam_layer_is_half_the_local_convolution_with_zero_context_weights() -> None:
    torch.manual_seed(0)
    cam = CAMLayer(in_channels=8, out_channels=4, kernel_size=3, dilation=2, seg_len=5)
    with torch.no_grad():
        for layer in (cam.context_hidden, cam.context_out):
            layer.weight.zero_()
            layer.bias.zero_()
    x = torch.randn(2, 8, 13)
    torch.testing.assert_close(cam(x), 0.5 * cam.local(x))


def test_cam_mask_is_constant_within_segments() -> None:
    torch.manual_seed(0)
    cam = CAMLayer(in_channels=8, out_channels=4, kernel_size=3, dilation=1, seg_len=10).eval()
    logits: list[torch.Tensor] = []
    cam.context_out.register_forward_hook(lambda module, args, output: logits.append(output))
    cam(torch.randn(1, 8, 25))  # segments of 10, 10 and 5 frames
    mask = logits[0]
    assert mask.shape == (1, 4, 25)
    for start, stop in ((0, 10), (10, 20), (20, 25)):
        torch.testing.assert_close(mask[:, :, start:stop], mask[:, :, start:start + 1].expand(-1, -1, stop - start))
    assert not torch.allclose(mask[:, :, 0], mask[:, :, 10])
    assert not torch.allclose(mask[:, :, 10], mask[:, :, 20])


@pytest.mark.parametrize("frames", [150, 263])
def test_default_seg_len_below_and_above(frames: int) -> None:
    torch.manual_seed(0)
    model = tiny_model(seg_len=100).eval()
    with torch.no_grad():
        assert model(torch.randn(2, frames, 80)).shape == (2, 16)


def test_feat_dim_not_a_multiple_of_eight() -> None:
    model = tiny_model(feat_dim=30).eval()
    assert model.head.out_dim == 4 * 4  # 30 -> 15 -> 8 -> 4 bins
    with torch.no_grad():
        assert model(torch.randn(2, 41, 30)).shape == (2, 16)


def test_rejects_bad_configs() -> None:
    with pytest.raises(ValueError, match="embed_dim"):
        CAMPPlus(embed_dim=0)
    with pytest.raises(ValueError, match="seg_len"):
        CAMPPlus(seg_len=0)
    with pytest.raises(ValueError, match="block_layers"):
        CAMPPlus(block_layers=(12, 24), block_dilations=(1, 2, 2))
    with pytest.raises(ValueError, match="block_dilations"):
        CAMPPlus(block_dilations=(1, 0, 2))
