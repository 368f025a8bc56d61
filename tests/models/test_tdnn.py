"""Tests for the x-vector TDNN."""

from __future__ import annotations

import pytest
import torch

from speakernet.models.pooling import AttentiveStatsPool, TemporalStatsPool
from speakernet.models.registry import MODELS
from speakernet.models.tdnn import XVEC


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


@pytest.mark.parametrize("frames", [15, 17, 50, 199])
@pytest.mark.parametrize("embedding_layer", ["a", "b"])
def test_output_shapes(frames: int, embedding_layer: str) -> None:
    torch.manual_seed(0)
    model = tiny_model(embedding_layer=embedding_layer).eval()
    with torch.no_grad():
        embeddings = model(torch.randn(3, frames, 20))
    assert embeddings.shape == (3, 8)
    assert torch.isfinite(embeddings).all()


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


def test_short_input_gives_a_clear_error() -> None:
    model = tiny_model()
    with pytest.raises(ValueError, match="XVEC needs at least 15 frames"):
        model(torch.randn(2, 14, 20))
    with pytest.raises(ValueError, match="XVEC needs at least 15 frames"):
        model.frame_features(torch.randn(2, 1, 20))


def test_rejects_bad_inputs() -> None:
    model = tiny_model()
    with pytest.raises(ValueError, match=r"XVEC expects feats \[batch, frames, 20\]"):
        model(torch.randn(2, 30, 40))
    with pytest.raises(ValueError, match=r"XVEC expects feats \[batch, frames, 20\]"):
        model(torch.randn(30, 20))


def test_rejects_bad_configs() -> None:
    with pytest.raises(ValueError, match="embedding_layer"):
        XVEC(embedding_layer="c")
    with pytest.raises(ValueError, match="stats_dim"):
        XVEC(stats_dim=0)
    with pytest.raises(ValueError, match="hid_dim"):
        XVEC(hid_dim=2.5)  # type: ignore[arg-type]
    with pytest.raises(KeyError, match="TSTP"):
        tiny_model(pooling="STATS")


def test_backward_reaches_every_parameter() -> None:
    torch.manual_seed(0)
    model = tiny_model().train()
    embeddings = model(torch.randn(4, 40, 20))
    (embeddings * torch.randn_like(embeddings)).sum().backward()
    missing = [name for name, parameter in model.named_parameters() if parameter.grad is None]
    assert not missing, f"no gradient for {missing}"
    zero = [name for name, parameter in model.named_parameters() if not parameter.grad.abs().sum() > 0]
    assert not zero, f"all-zero gradient for {zero}"


def test_eval_mode_is_deterministic_and_batch_independent() -> None:
    torch.manual_seed(0)
    model = tiny_model().train()
    model(torch.randn(8, 30, 20))
    model.eval()
    feats = torch.randn(3, 70, 20)
    with torch.no_grad():
        first = model(feats)
        second = model(feats)
        alone = model(feats[1:2])
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    torch.testing.assert_close(first[1:2], alone, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("pooling", ["TAP", "ASTP", "MHASP"])
def test_pooling_by_name(pooling: str) -> None:
    torch.manual_seed(0)
    model = tiny_model(pooling=pooling).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 33, 20)).shape == (2, 8)
    assert model.seg_1.in_features == model.pooling.out_dim


def test_pooling_args_reach_the_pooling() -> None:
    model = tiny_model(pooling="ASTP", pooling_args={"bottleneck_dim": 4, "global_context": False})
    assert isinstance(model.pooling, AttentiveStatsPool)
    assert model.pooling.attention_hidden.in_channels == 24 and model.pooling.attention_hidden.out_channels == 4


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("embedding_layer", ["a", "b"])
def test_torchscript_matches_eager(embedding_layer: str) -> None:
    torch.manual_seed(0)
    model = tiny_model(embedding_layer=embedding_layer).eval()
    scripted = torch.jit.script(model)
    feats = torch.randn(2, 45, 20)
    with torch.no_grad():
        torch.testing.assert_close(scripted(feats), model(feats))
    with pytest.raises(Exception, match="at least 15 frames"):
        scripted(torch.randn(2, 10, 20))


def test_torch_export_with_dynamic_frames_matches_eager() -> None:
    torch.manual_seed(0)
    model = tiny_model().eval()
    # min 16: export needs at least 2 frames after the 15-frame receptive field.
    frames = torch.export.Dim("frames", min=16, max=100_000)
    exported = torch.export.export(model, (torch.randn(2, 50, 20),), dynamic_shapes={"feats": {1: frames}})
    for length in (16, 123):
        feats = torch.randn(2, length, 20)
        with torch.no_grad():
            torch.testing.assert_close(exported.module()(feats), model(feats))
