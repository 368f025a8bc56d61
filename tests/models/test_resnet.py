"""Tests for the ResNet speaker models (speakernet.models.resnet)."""

from __future__ import annotations

import math
import pickle

import pytest
import torch

from speakernet.models import MODELS, build_model
from speakernet.models import resnet
from speakernet.models.resnet import RESNET_DEPTHS, BasicBlock, Bottleneck, ResNet, ResNet18, ResNet34, ResNetVariant
from tiny_models import one_thread  # noqa: F401  (autouse: this module's tests run on one torch thread)

RESNET_NAMES = ["ResNet18", "ResNet34", "ResNet50", "ResNet101", "ResNet152", "ResNet221", "ResNet293"]


def count_parameters(model: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def tiny_resnet(block: str = "basic", **overrides: object) -> ResNet:
    args = {"feat_dim": 80, "embed_dim": 16, "m_channels": 4}
    args.update(overrides)
    return ResNet(block, (1, 2, 1, 1), **args)


def test_every_depth_is_registered_importable_and_documented() -> None:
    assert list(RESNET_DEPTHS) == RESNET_NAMES
    for name, (block, num_blocks) in RESNET_DEPTHS.items():
        depth = getattr(resnet, name)
        assert MODELS.get(name) is depth and issubclass(depth, ResNetVariant)
        assert depth.__name__ == depth.__qualname__ == name and depth.__module__ == "speakernet.models.resnet"
        assert (depth.BLOCK, depth.NUM_BLOCKS) == (block, num_blocks)
        assert depth.__doc__.startswith(f"{name}: {block} blocks ``{list(num_blocks)}``")
    assert "6.634 M parameters" in ResNet34.__doc__
    model = build_model("ResNet18", m_channels=4, embed_dim=8)
    assert type(model) is ResNet18 and model.feat_dim == 80 and model.embed_dim == 8
    assert type(pickle.loads(pickle.dumps(model))) is ResNet18  # torch.save of a whole model pickles the class by name


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
def test_frame_map_has_an_eighth_of_the_frames_rounded_up(block: str, frames: int) -> None:
    torch.manual_seed(0)
    model = tiny_resnet(block).eval()
    with torch.no_grad():
        frame_map = model.frame_features(torch.randn(3, frames, 80))
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


def test_frame_features_flatten_channel_major() -> None:
    torch.manual_seed(0)
    model = tiny_resnet().eval()
    feats = torch.randn(2, 24, 80)
    with torch.no_grad():
        hidden = torch.relu(model.stem_bn(model.stem_conv(feats.transpose(1, 2).unsqueeze(1))))
        expected = model.stages(hidden)  # [B, C, F', T']
        flat = model.frame_features(feats)
    torch.testing.assert_close(flat[:, 3 * 10 + 7], expected[:, 3, 7])


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


def test_the_unregistered_generic_class_names_itself_in_errors() -> None:
    # The registered depths' input checks are in test_models_common.py.
    with pytest.raises(ValueError, match=r"ResNet expects feats \[batch, frames, 80\]"):
        tiny_resnet()(torch.randn(2, 30, 40))
    with pytest.raises(ValueError, match="ResNet needs at least one frame"):
        tiny_resnet()(torch.randn(2, 0, 80))
