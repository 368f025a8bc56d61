"""Tests for the ECAPA-TDNN model and the model registry."""

from __future__ import annotations

import pytest
import torch

from speakernet.models import MODELS, build_model
from speakernet.models.ecapa_tdnn import ECAPA_TDNN, Res2Conv, SqueezeExcitation


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


def test_registry_builds_and_rejects_unknown_names() -> None:
    assert "ECAPA_TDNN" in MODELS.names()
    assert isinstance(build_model("ECAPA_TDNN", channels=64), ECAPA_TDNN)
    with pytest.raises(KeyError, match="ECAPA_TDNN"):
        build_model("ECAPA")
    with pytest.raises(TypeError, match="ECAPA_TDNN"):
        build_model("ECAPA_TDNN", chanels=64)


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


@pytest.mark.parametrize("frames", [50, 200, 1000])
def test_variable_lengths(frames: int) -> None:
    torch.manual_seed(0)
    model = tiny_model().eval()
    with torch.no_grad():
        embeddings = model(torch.randn(3, frames, 80))
    assert embeddings.shape == (3, 32)
    assert torch.isfinite(embeddings).all()


def test_backward_reaches_every_parameter() -> None:
    torch.manual_seed(0)
    model = tiny_model(embed_bn=True).train()
    embeddings = model(torch.randn(4, 60, 80))
    (embeddings**2).sum().backward()
    missing = [name for name, parameter in model.named_parameters() if parameter.grad is None]
    assert not missing, f"no gradient for {missing}"
    zero = [name for name, parameter in model.named_parameters() if not parameter.grad.abs().sum() > 0]
    assert not zero, f"all-zero gradient for {zero}"


def test_eval_mode_is_deterministic_and_batch_independent() -> None:
    torch.manual_seed(0)
    model = tiny_model()
    model.train()
    model(torch.randn(8, 30, 80))  # move the batch-norm statistics away from their initial values
    model.eval()
    feats = torch.randn(3, 70, 80)
    with torch.no_grad():
        first = model(feats)
        second = model(feats)
        alone = model(feats[1:2])
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    torch.testing.assert_close(first[1:2], alone, rtol=1e-5, atol=1e-5)


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


def test_rejects_bad_configs_and_inputs() -> None:
    with pytest.raises(ValueError, match="divisible by scale"):
        ECAPA_TDNN(channels=60, scale=8)
    with pytest.raises(ValueError, match="embed_dim"):
        ECAPA_TDNN(channels=64, embed_dim=0)
    model = tiny_model()
    with pytest.raises(ValueError, match=r"feats \[batch, frames, 80\]"):
        model(torch.randn(2, 30, 40))
    with pytest.raises(ValueError, match=r"feats \[batch, frames, 80\]"):
        model(torch.randn(30, 80))


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_torchscript_matches_eager() -> None:
    torch.manual_seed(0)
    model = tiny_model().eval()
    scripted = torch.jit.script(model)
    feats = torch.randn(2, 45, 80)
    with torch.no_grad():
        torch.testing.assert_close(scripted(feats), model(feats))


def test_torch_export_with_dynamic_frames_matches_eager() -> None:
    torch.manual_seed(0)
    model = tiny_model(channels=32).eval()
    frames = torch.export.Dim("frames", min=2, max=100_000)
    exported = torch.export.export(model, (torch.randn(2, 50, 80),), dynamic_shapes={"feats": {1: frames}})
    feats = torch.randn(2, 123, 80)
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(feats), model(feats))
