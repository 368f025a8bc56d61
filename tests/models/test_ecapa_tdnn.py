"""Tests for the ECAPA-TDNN model."""

from __future__ import annotations

import pytest
import torch

from speakernet.models import build_model
from speakernet.models.ecapa_tdnn import ECAPA_TDNN, Res2Conv, SqueezeExcitation
from tiny_models import one_thread  # noqa: F401  (autouse: this module's tests run on one torch thread)


def count_parameters(model: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def tiny_model(**overrides: object) -> ECAPA_TDNN:
    args = {"feat_dim": 80, "channels": 64, "embed_dim": 32, "aggregation_channels": None}
    args.update(overrides)
    return build_model("ECAPA_TDNN", **args)


@pytest.fixture(scope="module")
def ecapa_c512() -> ECAPA_TDNN:
    torch.manual_seed(0)
    return build_model("ECAPA_TDNN", channels=512).eval()


@pytest.fixture(scope="module")
def ecapa_c1024() -> ECAPA_TDNN:
    torch.manual_seed(0)
    return build_model("ECAPA_TDNN", channels=1024).eval()


@pytest.mark.parametrize(("fixture", "expected"), [("ecapa_c512", 6.19e6), ("ecapa_c1024", 14.65e6)])
def test_parameter_count_matches_wespeaker(fixture: str, expected: float, request: pytest.FixtureRequest) -> None:
    # WeSpeaker ECAPA_TDNN_GLOB_c512 / _c1024 without the classifier: 6.19 M and 14.65 M.
    model = request.getfixturevalue(fixture)
    assert abs(count_parameters(model) - expected) / expected < 0.005


def test_published_layout(ecapa_c1024: ECAPA_TDNN) -> None:
    assert ecapa_c1024.input_layer.conv.kernel_size == (5,)
    assert [block.body[1].convs[0].conv.dilation[0] for block in ecapa_c1024.blocks] == [2, 3, 4]
    assert len(ecapa_c1024.blocks[0].body[1].convs) == 7
    assert ecapa_c1024.aggregation.out_channels == 1536  # 1536 also for C = 1024
    assert ecapa_c1024.pooling.attention_hidden.in_channels == 3 * 1536  # global context
    assert ecapa_c1024.embedding.out_features == 192
    assert isinstance(ecapa_c1024.embedding_bn, torch.nn.Identity)


@pytest.mark.parametrize("fixture", ["ecapa_c512", "ecapa_c1024"])
def test_forward_shape_published_sizes(fixture: str, request: pytest.FixtureRequest) -> None:
    model = request.getfixturevalue(fixture)
    with torch.no_grad():
        embeddings = model(torch.randn(2, 40, 80))
    assert embeddings.shape == (2, 192)
    assert torch.isfinite(embeddings).all()


def test_train_mode_updates_batch_norm_statistics() -> None:
    model = tiny_model().train()
    before = model.pooling_bn.running_mean.clone()
    model(torch.randn(4, 30, 80))
    assert not torch.equal(before, model.pooling_bn.running_mean)


def test_res2_last_group_passes_through() -> None:
    res2 = Res2Conv(channels=16, kernel_size=3, dilation=2, scale=4)
    x = torch.randn(2, 16, 11)
    out = res2(x)
    assert out.shape == x.shape
    torch.testing.assert_close(out[:, 12:], x[:, 12:])
    assert len(res2.convs) == 3


def test_res2_groups_are_chained() -> None:
    torch.manual_seed(0)
    res2 = Res2Conv(channels=8, kernel_size=3, dilation=1, scale=4).eval()
    x = torch.randn(1, 8, 9)
    changed = x.clone()
    changed[:, 0:2] += 1.0  # group 0 feeds every later convolved group, but not the pass-through one
    difference = (res2(changed) - res2(x)).abs().amax(dim=(0, 2))
    assert (difference[:6] > 0).all()
    assert (difference[6:] == 0).all()


def test_squeeze_excitation_gate_is_half_with_zero_weights() -> None:
    se = SqueezeExcitation(channels=6, bottleneck=3)
    with torch.no_grad():
        for parameter in se.parameters():
            parameter.zero_()
    x = torch.randn(2, 6, 5)
    torch.testing.assert_close(se(x), 0.5 * x)


def test_aggregation_channels_default_to_three_times_channels_when_none() -> None:
    model = tiny_model(channels=32, aggregation_channels=None)
    assert model.aggregation.out_channels == 96
    assert model.pooling_bn.num_features == 192


def test_rejects_bad_configs() -> None:
    with pytest.raises(ValueError, match="divisible by scale"):
        ECAPA_TDNN(channels=60, scale=8)
    with pytest.raises(ValueError, match="embed_dim"):
        ECAPA_TDNN(channels=64, embed_dim=0)
