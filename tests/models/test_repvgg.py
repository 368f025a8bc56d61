"""Tests for the RepVGG speaker models and their re-parameterisation (speakernet.models.repvgg)."""

from __future__ import annotations

import inspect
import math

import pytest
import torch

from speakernet.models import MODELS, build_model
from speakernet.models.repvgg import RepVGG, RepVGG_TINY_A0, RepVGGBlock, load_deployed
from tiny_models import one_thread  # noqa: F401  (autouse: this module's tests run on one torch thread)

REPVGG_NAMES = ["RepVGG", "RepVGG_TINY_A0", "RepVGG_A0", "RepVGG_A1", "RepVGG_B0", "RepVGG_B1"]


def count_parameters(model: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def tiny_repvgg(**overrides: object) -> RepVGG:
    # Stage 0 has 4 channels = stage 1's, so stage 1 has identity branches; stages 2-4 start strided.
    args = {"feat_dim": 80, "embed_dim": 16}
    args.update(overrides)
    return RepVGG((2, 2, 1, 1), (4, 8, 8, 16), **args)


def randomise_batch_norms(model: torch.nn.Module) -> None:
    """Gives every batch norm non-trivial affine parameters and running statistics."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0.0, 0.3)
    model.train()
    for _ in range(3):
        model(torch.randn(4, 37, 80))


def test_every_size_is_registered_and_builds_by_name() -> None:
    for name in REPVGG_NAMES:
        assert name in MODELS.names()
    assert MODELS.get("RepVGG") is RepVGG
    with torch.device("meta"):
        model = build_model("RepVGG_TINY_A0", embed_dim=8)
    assert isinstance(model, RepVGG) and model.feat_dim == 80 and model.embed_dim == 8


def test_generic_repvgg_takes_its_widths_from_the_config() -> None:
    # Exactly what a config's model_args may set for ``model: RepVGG``.
    assert list(inspect.signature(MODELS.get("RepVGG")).parameters) == [
        "num_blocks", "stage_channels", "feat_dim", "embed_dim", "pooling", "pooling_args"]
    torch.manual_seed(0)
    model = build_model("RepVGG", feat_dim=80, embed_dim=16, num_blocks=[2, 2, 4, 2], stage_channels=[8, 16, 32, 64])
    assert type(model) is RepVGG and model.name == "RepVGG"
    assert model.stage0.out_channels == 8  # min(64, stage_channels[0])
    assert tuple(stage[-1].out_channels for stage in model.stages) == (8, 16, 32, 64)
    assert tuple(len(stage) for stage in model.stages) == (2, 2, 4, 2)
    assert model.pooling.out_dim == 2 * 64 * 10
    randomise_batch_norms(model)
    model.eval()
    feats = torch.randn(2, 45, 80)
    with torch.no_grad():
        expected = model(feats)
        deployed = model.deploy()(feats)
    assert model.deployed
    torch.testing.assert_close(deployed, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("name", "training", "deployed"), [("RepVGG_TINY_A0", 6.834e6, 6.264e6),
                                                            ("RepVGG_B1", 65.85e6, 60.27e6)])
def test_parameter_counts_match_wespeaker(name: str, training: float, deployed: float) -> None:
    # WeSpeaker at feat_dim 80, embed_dim 256, TSTP; the meta device skips allocation and arithmetic.
    with torch.device("meta"):
        model = build_model(name)
        assert abs(count_parameters(model) - training) / training < 0.01
        model.deploy()
    assert abs(count_parameters(model) - deployed) / deployed < 0.01


@pytest.mark.parametrize(("name", "channels", "blocks"), [
    ("RepVGG_TINY_A0", (32, 32, 64, 128, 256), (3, 4, 23, 3)),
    ("RepVGG_A0", (48, 48, 96, 192, 1280), (2, 4, 14, 1)),
    ("RepVGG_A1", (64, 64, 128, 256, 1280), (2, 4, 14, 1)),
    ("RepVGG_B0", (64, 64, 128, 256, 1280), (4, 6, 16, 1)),
    ("RepVGG_B1", (64, 128, 256, 512, 2048), (4, 6, 16, 1)),
])
def test_published_layout(name: str, channels: tuple[int, ...], blocks: tuple[int, ...]) -> None:
    with torch.device("meta"):
        model = build_model(name)
        frame_map = model.frame_features(torch.empty(2, 200, 80)) if name == "RepVGG_TINY_A0" else None
    assert model.stage0.in_channels == 1 and model.stage0.out_channels == channels[0]
    assert tuple(stage[-1].out_channels for stage in model.stages) == channels[1:]
    assert tuple(len(stage) for stage in model.stages) == blocks
    assert [model.stage0.stride] + [stage[0].stride for stage in model.stages] == [1, 1, 2, 2, 2]
    assert all(block.stride == 1 for stage in model.stages for block in stage[1:])
    for block in model.blocks():
        has_identity = block.in_channels == block.out_channels and block.stride == 1
        assert (block.identity is not None) == has_identity
        assert block.branch3x3.conv.bias is None and block.branch1x1.conv.bias is None
    assert model.pooling.out_dim == 2 * channels[-1] * 10
    if frame_map is not None:
        assert frame_map.shape == (2, 256 * 10, 25)


@pytest.mark.parametrize("frames", [1, 7, 9, 50, 201, 333])
def test_frame_map_has_an_eighth_of_the_frames_rounded_up(frames: int) -> None:
    torch.manual_seed(0)
    model = tiny_repvgg().eval()
    with torch.no_grad():
        frame_map = model.frame_features(torch.randn(3, frames, 80))
    assert frame_map.shape == (3, 16 * 10, math.ceil(frames / 8))


@pytest.mark.parametrize(("in_channels", "out_channels", "stride"), [(6, 6, 1), (6, 6, 2), (3, 5, 1)])
def test_deployed_block_equals_training_block(in_channels: int, out_channels: int, stride: int) -> None:
    torch.manual_seed(0)
    block = RepVGGBlock(in_channels, out_channels, stride)
    assert (block.identity is not None) == (in_channels == out_channels and stride == 1)
    with torch.no_grad():
        for module in block.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0.0, 0.3)
                module.running_mean.normal_(0.0, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    block.eval()
    x = torch.randn(2, in_channels, 11, 13)
    with torch.no_grad():
        expected = block(x)
        block.deploy()
        fused = block(x)
    assert block.deployed and block.branch3x3 is None and block.branch1x1 is None and block.identity is None
    assert block.fused.kernel_size == (3, 3) and block.fused.bias is not None
    torch.testing.assert_close(fused, expected, rtol=1e-5, atol=1e-5)


def test_deploy_keeps_the_embeddings_and_removes_the_branches() -> None:
    torch.manual_seed(0)
    model = tiny_repvgg()
    randomise_batch_norms(model)
    model.eval()
    feats = torch.randn(3, 57, 80)
    modules_before = len(list(model.modules()))
    parameters_before = count_parameters(model)
    with torch.no_grad():
        expected = model(feats)
        assert model.deploy() is model
        deployed = model(feats)
    torch.testing.assert_close(deployed, expected, rtol=1e-4, atol=1e-4)
    assert model.deployed and not model.training
    assert len(list(model.modules())) < modules_before
    assert count_parameters(model) < parameters_before
    assert not any(isinstance(module, torch.nn.BatchNorm2d) for module in model.modules())
    convs = [module for module in model.modules() if isinstance(module, torch.nn.Conv2d)]
    assert len(convs) == len(model.blocks()) == 7
    assert all(conv.kernel_size == (3, 3) and conv.bias is not None for conv in convs)


def test_deploy_twice_is_a_no_op() -> None:
    torch.manual_seed(0)
    model = tiny_repvgg()
    randomise_batch_norms(model)
    model.eval().deploy()
    state = {key: value.clone() for key, value in model.state_dict().items()}
    feats = torch.randn(2, 30, 80)
    with torch.no_grad():
        first = model(feats)
        model.deploy()
        second = model(feats)
    assert state.keys() == model.state_dict().keys()
    assert all(torch.equal(state[key], value) for key, value in model.state_dict().items())
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    with pytest.raises(RuntimeError, match="already deployed"):
        model.stage0.equivalent_kernel_bias()


def test_load_deployed_from_training_and_deployed_state_dicts() -> None:
    torch.manual_seed(0)
    trained = tiny_repvgg()
    randomise_batch_norms(trained)
    trained.eval()
    training_state = trained.state_dict()
    feats = torch.randn(2, 40, 80)
    with torch.no_grad():
        expected = trained(feats)
    torch.manual_seed(1)  # fresh models start from other weights
    from_training = load_deployed(tiny_repvgg(), training_state).eval()
    assert from_training.deployed
    deployed_state = from_training.state_dict()
    assert all(".fused." in key for key in deployed_state if key.startswith("stage"))
    from_deployed = load_deployed(tiny_repvgg(), deployed_state).eval()
    with torch.no_grad():
        torch.testing.assert_close(from_training(feats), expected, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(from_deployed(feats), from_training(feats), rtol=0, atol=0)
    with pytest.raises(ValueError, match="already deployed"):
        load_deployed(tiny_repvgg().deploy(), training_state)
    with pytest.raises(RuntimeError):
        tiny_repvgg().deploy().load_state_dict(training_state)  # the plain route needs the training form


def test_rejects_bad_configs() -> None:
    with pytest.raises(ValueError, match="embed_dim"):
        RepVGG_TINY_A0(embed_dim=0)
    with pytest.raises(ValueError, match="feat_dim"):
        RepVGG_TINY_A0(feat_dim=7)
    with pytest.raises(ValueError, match="num_blocks"):
        RepVGG((1, 1, 1), (4, 8, 8, 16))
    with pytest.raises(ValueError, match="stage_channels"):
        RepVGG((1, 1, 1, 1), (4, 8, 0, 16))


# The training form's TorchScript and export checks are in test_models_common.py.
@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_torchscript_matches_eager_when_deployed() -> None:
    torch.manual_seed(0)
    model = tiny_repvgg()
    randomise_batch_norms(model)
    model.eval().deploy()
    feats = torch.randn(2, 45, 80)
    scripted = torch.jit.script(model)
    with torch.no_grad():
        torch.testing.assert_close(scripted(feats), model(feats))


def test_torch_export_with_dynamic_frames_matches_eager_when_deployed() -> None:
    torch.manual_seed(0)
    model = tiny_repvgg()
    randomise_batch_norms(model)
    model.eval().deploy()
    exported = torch.export.export(model, (torch.randn(2, 50, 80),),
                                   dynamic_shapes={"feats": {1: torch.export.Dim.DYNAMIC}})
    for frames in (9, 123, 200):
        feats = torch.randn(2, frames, 80)
        with torch.no_grad():
            torch.testing.assert_close(exported.module()(feats), model(feats))
