"""Tests for the ResNet speaker models (speakernet.models.resnet)."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import torch

from speakernet.models import MODELS, build_model
from speakernet.models.resnet import BasicBlock, Bottleneck, ResNet, ResNet34

RESNET_NAMES = ["ResNet18", "ResNet34", "ResNet50", "ResNet101", "ResNet152", "ResNet221", "ResNet293"]


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    # Tiny models: on a shared 2-core machine, thread hand-offs cost more than they save.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def count_parameters(model: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def tiny_resnet(block: str = "basic", **overrides: object) -> ResNet:
    args = {"feat_dim": 80, "embed_dim": 16, "m_channels": 4}
    args.update(overrides)
    return ResNet(block, (1, 2, 1, 1), **args)


def test_every_depth_is_registered_and_builds_by_name() -> None:
    for name in RESNET_NAMES:
        assert name in MODELS.names()
    model = build_model("ResNet18", m_channels=4, embed_dim=8)
    assert isinstance(model, ResNet) and model.feat_dim == 80 and model.embed_dim == 8
    with pytest.raises(TypeError, match="ResNet34"):
        build_model("ResNet34", m_chanels=4)


@pytest.mark.parametrize(("name", "expected"), [("ResNet34", 6.634e6), ("ResNet221", 23.792e6),
                                                ("ResNet293", 28.626e6)])
def test_parameter_count_matches_wespeaker(name: str, expected: float) -> None:
    # WeSpeaker at feat_dim 80, embed_dim 256, m_channels 32, TSTP; the meta device skips allocation.
    with torch.device("meta"):
        model = build_model(name)
    assert abs(count_parameters(model) - expected) / expected < 0.01


def test_published_layout_and_map_shapes() -> None:
    with torch.device("meta"):
        resnet34 = build_model("ResNet34")
        resnet293 = build_model("ResNet293")
        map34 = resnet34.frame_features(torch.empty(2, 200, 80))
        map293 = resnet293.frame_features(torch.empty(2, 200, 80))
    assert [len(stage) for stage in resnet34.stages] == [3, 4, 6, 3]
    assert [len(stage) for stage in resnet293.stages] == [10, 20, 64, 3]
    assert all(isinstance(block, BasicBlock) for stage in resnet34.stages for block in stage)
    assert all(isinstance(block, Bottleneck) for stage in resnet293.stages for block in stage)
    assert resnet34.stem_conv.kernel_size == (3, 3) and resnet34.stem_conv.out_channels == 32
    # Strides 1/2/2/2, carried by the first block of each stage only.
    assert [stage[0].conv1.stride for stage in resnet34.stages] == [(1, 1), (2, 2), (2, 2), (2, 2)]
    assert all(block.conv1.stride == (1, 1) for stage in resnet34.stages for block in stage[1:])
    assert [stage[0].conv2.stride for stage in resnet293.stages] == [(1, 1), (2, 2), (2, 2), (2, 2)]
    assert [stage[-1].conv2.out_channels for stage in resnet34.stages] == [32, 64, 128, 256]
    # Projection shortcuts exactly where the shape changes.
    assert isinstance(resnet34.stages[0][0].shortcut, torch.nn.Identity)
    assert not isinstance(resnet34.stages[1][0].shortcut, torch.nn.Identity)
    assert not isinstance(resnet293.stages[0][0].shortcut, torch.nn.Identity)  # 32 -> 128 channels
    assert isinstance(resnet293.stages[0][1].shortcut, torch.nn.Identity)
    assert map34.shape == (2, 256 * 10, 25) and map293.shape == (2, 1024 * 10, 25)
    assert resnet34.pooling.out_dim == 5120 and resnet293.pooling.out_dim == 20480
    assert resnet293.embedding.out_features == 256 and resnet293.second_embedding is None


@pytest.mark.parametrize("block", ["basic", "bottleneck"])
@pytest.mark.parametrize("frames", [1, 7, 9, 50, 201, 333])
def test_output_shapes_for_various_lengths(block: str, frames: int) -> None:
    torch.manual_seed(0)
    model = tiny_resnet(block).eval()
    feats = torch.randn(3, frames, 80)
    with torch.no_grad():
        embeddings = model(feats)
        frame_map = model.frame_features(feats)
    assert embeddings.shape == (3, 16)
    assert torch.isfinite(embeddings).all()
    channels = 32 if block == "basic" else 128
    assert frame_map.shape == (3, channels * 10, math.ceil(frames / 8))


def test_odd_feature_dimension_rounds_the_strides_up() -> None:
    model = tiny_resnet(feat_dim=41).eval()
    assert model.out_freq == 6  # 41 -> 21 -> 11 -> 6
    with torch.no_grad():
        assert model(torch.randn(2, 30, 41)).shape == (2, 16)


def test_base_64_channels() -> None:
    model = ResNet34(m_channels=64, embed_dim=32).eval()
    assert model.stages[3][0].conv1.out_channels == 512
    assert model.pooling.out_dim == 2 * 512 * 10
    with torch.no_grad():
        assert model(torch.randn(1, 16, 80)).shape == (1, 32)


@pytest.mark.parametrize(("block_type", "in_channels", "planes", "stride", "projected"), [
    (BasicBlock, 8, 8, 1, False), (BasicBlock, 8, 8, 2, True), (BasicBlock, 4, 8, 1, True),
    (Bottleneck, 8, 2, 1, False), (Bottleneck, 8, 2, 2, True), (Bottleneck, 4, 2, 1, True),
])
def test_blocks_project_the_shortcut_only_when_the_shape_changes(
    block_type: type, in_channels: int, planes: int, stride: int, projected: bool
) -> None:
    block = block_type(in_channels, planes, stride).eval()
    assert isinstance(block.shortcut, torch.nn.Identity) != projected
    with torch.no_grad():
        out = block(torch.randn(2, in_channels, 9, 7))
    assert out.shape == (2, planes * block_type.expansion, math.ceil(9 / stride), math.ceil(7 / stride))
    assert (out >= 0).all()


@pytest.mark.parametrize("block", ["basic", "bottleneck"])
def test_backward_reaches_every_parameter(block: str) -> None:
    torch.manual_seed(0)
    model = tiny_resnet(block, two_emb_layer=True).train()
    embeddings = model(torch.randn(4, 41, 80))
    (embeddings**2).sum().backward()
    missing = [name for name, parameter in model.named_parameters() if parameter.grad is None]
    assert not missing, f"no gradient for {missing}"
    zero = [name for name, parameter in model.named_parameters() if not parameter.grad.abs().sum() > 0]
    assert not zero, f"all-zero gradient for {zero}"


def test_two_emb_layer_returns_the_second_embedding() -> None:
    torch.manual_seed(0)
    model = tiny_resnet(two_emb_layer=True)
    model.train()
    model(torch.randn(6, 20, 80))  # non-trivial running statistics for the affine-free batch norm
    model.eval()
    assert isinstance(model.second_embedding_bn, torch.nn.BatchNorm1d)
    assert not model.second_embedding_bn.affine
    assert model.second_embedding.in_features == model.second_embedding.out_features == 16
    feats = torch.randn(2, 30, 80)
    with torch.no_grad():
        first = model.embedding(model.pooling(model.frame_features(feats)))
        expected = model.second_embedding(model.second_embedding_bn(torch.relu(first)))
        embeddings = model(feats)
    assert isinstance(embeddings, torch.Tensor)
    torch.testing.assert_close(embeddings, expected)
    plain = tiny_resnet()
    assert count_parameters(model) - count_parameters(plain) == 16 * 16 + 16


@pytest.mark.parametrize(("pooling", "pooling_args"), [("TAP", None), ("ASTP", {"bottleneck_dim": 8}),
                                                       ("MHASP", {"num_heads": 2, "bottleneck_dim": 8})])
def test_pooling_by_name(pooling: str, pooling_args: dict | None) -> None:
    torch.manual_seed(0)
    model = tiny_resnet(pooling=pooling, pooling_args=pooling_args).eval()
    in_dim = 32 * 10
    assert model.pooling.out_dim == (in_dim if pooling == "TAP" else 2 * in_dim)
    assert model.embedding.in_features == model.pooling.out_dim
    with torch.no_grad():
        embeddings = model(torch.randn(2, 45, 80))
    assert embeddings.shape == (2, 16) and torch.isfinite(embeddings).all()
    with pytest.raises(KeyError, match="TSTP"):
        tiny_resnet(pooling="STATS")


def test_frame_features_flatten_channel_major() -> None:
    torch.manual_seed(0)
    model = tiny_resnet().eval()
    feats = torch.randn(2, 24, 80)
    with torch.no_grad():
        hidden = torch.relu(model.stem_bn(model.stem_conv(feats.transpose(1, 2).unsqueeze(1))))
        expected = model.stages(hidden)  # [B, C, F', T']
        flat = model.frame_features(feats)
    torch.testing.assert_close(flat[:, 3 * 10 + 7], expected[:, 3, 7])


def test_eval_mode_is_deterministic_and_batch_independent() -> None:
    torch.manual_seed(0)
    model = tiny_resnet("bottleneck")
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


def test_rejects_bad_configs() -> None:
    with pytest.raises(ValueError, match="m_channels"):
        ResNet34(m_channels=0)
    with pytest.raises(ValueError, match="embed_dim"):
        ResNet34(embed_dim=-1)
    with pytest.raises(ValueError, match="feat_dim"):
        ResNet34(feat_dim=4)
    with pytest.raises(ValueError, match="feat_dim"):
        ResNet34(feat_dim=80.0)
    with pytest.raises(ValueError, match="block"):
        ResNet("wide", (1, 1, 1, 1))
    with pytest.raises(ValueError, match="num_blocks"):
        ResNet("basic", (1, 1, 1))
    with pytest.raises(ValueError, match="num_blocks"):
        ResNet("basic", (1, 0, 1, 1))


def test_rejects_bad_inputs() -> None:
    model = tiny_resnet()
    with pytest.raises(ValueError, match=r"ResNet expects feats \[batch, frames, 80\]"):
        model(torch.randn(2, 30, 40))
    with pytest.raises(ValueError, match=r"feats \[batch, frames, 80\]"):
        model(torch.randn(30, 80))
    with pytest.raises(ValueError, match=r"feats \[batch, frames, 80\]"):
        model(torch.randn(2, 1, 30, 80))
    with pytest.raises(ValueError, match="at least one frame"):
        model(torch.randn(2, 0, 80))
    with pytest.raises(ValueError, match=r"ResNet34 expects feats \[batch, frames, 80\]"):
        ResNet34(m_channels=4)(torch.randn(2, 80, 30))


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_torchscript_matches_eager() -> None:
    torch.manual_seed(0)
    model = tiny_resnet("bottleneck", two_emb_layer=True).eval()
    scripted = torch.jit.script(model)
    feats = torch.randn(2, 45, 80)
    with torch.no_grad():
        torch.testing.assert_close(scripted(feats), model(feats))


def test_torch_export_with_dynamic_frames_matches_eager() -> None:
    torch.manual_seed(0)
    model = tiny_resnet(two_emb_layer=True).eval()
    exported = torch.export.export(model, (torch.randn(2, 50, 80),),
                                   dynamic_shapes={"feats": {1: torch.export.Dim.DYNAMIC}})
    for frames in (9, 123, 200):
        feats = torch.randn(2, frames, 80)
        with torch.no_grad():
            torch.testing.assert_close(exported.module()(feats), model(feats))
