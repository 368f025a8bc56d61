"""Tests for speakernet.models.pooling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from speakernet.models.pooling import VARIANCE_FLOOR, AttentiveStatsPool, TemporalStatsPool
from tiny_models import one_thread  # noqa: F401  (autouse: this module's tests run on one torch thread)


def test_temporal_stats_pool_matches_numpy_population_stats() -> None:
    frames = torch.randn(3, 5, 17, dtype=torch.float64)
    pooled = TemporalStatsPool(in_dim=5)(frames).numpy()
    expected = np.concatenate([frames.numpy().mean(axis=2), frames.numpy().std(axis=2)], axis=1)
    assert pooled.shape == (3, 10)
    np.testing.assert_allclose(pooled, expected, rtol=1e-10)


def test_temporal_stats_pool_single_frame_is_finite() -> None:
    frames = torch.randn(2, 4, 1, requires_grad=True)
    pooled = TemporalStatsPool()(frames)
    torch.testing.assert_close(pooled[:, :4], frames[:, :, 0])
    torch.testing.assert_close(pooled[:, 4:], torch.full((2, 4), VARIANCE_FLOOR**0.5))
    pooled.sum().backward()
    assert torch.isfinite(frames.grad).all()


@pytest.mark.parametrize("global_context", [True, False])
def test_attentive_pool_of_constant_sequence_is_the_constant(global_context: bool) -> None:
    torch.manual_seed(0)
    pool = AttentiveStatsPool(in_dim=6, bottleneck_dim=4, global_context=global_context)
    constant = torch.linspace(-300.0, 300.0, 6).reshape(1, 6, 1)
    frames = constant.expand(2, 6, 50).clone().requires_grad_(True)
    pooled = pool(frames)
    assert pooled.shape == (2, 12)
    torch.testing.assert_close(pooled[:, :6], constant[:, :, 0].expand(2, 6))
    assert pooled[:, 6:].abs().max() < 1e-3
    pooled.sum().backward()  # the variance floor keeps the std's gradient finite
    assert torch.isfinite(frames.grad).all()


def test_attentive_pool_with_flat_attention_equals_plain_stats() -> None:
    torch.manual_seed(0)
    pool = AttentiveStatsPool(in_dim=8, bottleneck_dim=3)
    with torch.no_grad():  # zero scores -> uniform weights over time
        pool.attention_out.weight.zero_()
        pool.attention_out.bias.zero_()
    frames = torch.randn(4, 8, 33)
    torch.testing.assert_close(pool(frames), TemporalStatsPool(8)(frames), rtol=1e-5, atol=1e-5)


def test_attentive_pool_weights_are_channel_dependent() -> None:
    pool = AttentiveStatsPool(in_dim=2, bottleneck_dim=1, global_context=False)
    with torch.no_grad():
        # Hidden unit = tanh(10 * x_channel0); channel 0 attends to frames where it is high,
        # channel 1 to frames where channel 0 is low.
        pool.attention_hidden.weight.copy_(torch.tensor([[[10.0], [0.0]]]))
        pool.attention_hidden.bias.zero_()
        pool.attention_out.weight.copy_(torch.tensor([[[50.0]], [[-50.0]]]))
        pool.attention_out.bias.zero_()
    frames = torch.tensor([[[1.0, -1.0], [5.0, 7.0]]])  # [B=1, C=2, T=2]
    mean = pool(frames)[0, :2]
    # channel 0 takes frame 0 (x=1), channel 1 takes frame 1 (x=7)
    torch.testing.assert_close(mean, torch.tensor([1.0, 7.0]), atol=1e-4, rtol=0)


def test_attentive_pool_is_invariant_to_frame_order() -> None:
    torch.manual_seed(1)
    pool = AttentiveStatsPool(in_dim=16, bottleneck_dim=8)
    frames = torch.randn(2, 16, 40)
    shuffled = frames[:, :, torch.randperm(40)]
    torch.testing.assert_close(pool(frames), pool(shuffled), rtol=1e-5, atol=1e-5)


def test_attentive_pool_parameter_shapes() -> None:
    with_context = AttentiveStatsPool(in_dim=10, bottleneck_dim=4, global_context=True)
    without = AttentiveStatsPool(in_dim=10, bottleneck_dim=4, global_context=False)
    assert with_context.attention_hidden.weight.shape == (4, 30, 1)
    assert without.attention_hidden.weight.shape == (4, 10, 1)
    assert with_context.out_dim == 20


def test_pooling_rejects_bad_input() -> None:
    pool = AttentiveStatsPool(in_dim=4)
    with pytest.raises(ValueError, match="4 channels"):
        pool(torch.randn(1, 5, 10))
    with pytest.raises(ValueError, match=r"\[batch, channels, time\]"):
        pool(torch.randn(4, 10))
    with pytest.raises(ValueError, match="at least one frame"):
        TemporalStatsPool()(torch.randn(1, 4, 0))


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_pooling_is_scriptable() -> None:
    pool = AttentiveStatsPool(in_dim=4, bottleneck_dim=2)
    scripted = torch.jit.script(pool)
    frames = torch.randn(2, 4, 9)
    torch.testing.assert_close(scripted(frames), pool(frames))


@pytest.mark.parametrize("global_context", [True, False])
def test_attentive_pool_keeps_attention_without_changing_output(global_context: bool) -> None:
    torch.manual_seed(2)
    pool = AttentiveStatsPool(in_dim=12, bottleneck_dim=5, global_context=global_context)
    frames = torch.randn(3, 12, 27)
    plain = pool(frames)
    assert pool.last_attention is None  # off by default: nothing kept
    pool.keep_attention = True
    kept = pool(frames)
    assert torch.equal(plain, kept)  # bitwise the same output
    alpha = pool.last_attention
    assert alpha is not None and alpha.shape == (3, 12, 27) and not alpha.requires_grad
    torch.testing.assert_close(alpha.sum(dim=2), torch.ones(3, 12, dtype=torch.float32))
    assert (alpha >= 0).all()
    # the kept weights are the ones the pooling used: they reproduce the weighted mean
    torch.testing.assert_close((alpha * frames).sum(dim=2), kept[:, :12])


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_scripted_pooling_keeps_attention() -> None:
    pool = AttentiveStatsPool(in_dim=4, bottleneck_dim=2)
    pool.keep_attention = True
    scripted = torch.jit.script(pool)
    frames = torch.randn(2, 4, 9)
    torch.testing.assert_close(scripted(frames), pool(frames))
    torch.testing.assert_close(scripted.last_attention, pool.last_attention)


def test_poolings_by_name_and_their_out_dims() -> None:
    from speakernet.models.pooling import POOLINGS, build_pooling

    assert {"TAP", "TSTP", "ASTP", "MHASP"} <= set(POOLINGS.names())
    frames = torch.randn(3, 8, 21)
    for name, args, out_dim in [("TAP", None, 8), ("TSTP", None, 16), ("ASTP", {"bottleneck_dim": 4}, 16),
                                ("MHASP", {"num_heads": 2, "bottleneck_dim": 4}, 16)]:
        pool = build_pooling(name, 8, args)
        assert pool.out_dim == out_dim and pool(frames).shape == (3, out_dim), name
    torch.testing.assert_close(build_pooling("TAP", 8)(frames), frames.mean(dim=2))
    with pytest.raises(KeyError, match="MHASP"):
        build_pooling("MHAP", 8)
    with pytest.raises(TypeError, match="pooling 'TSTP'"):
        build_pooling("TSTP", 8, {"num_heads": 2})


def test_multi_head_pool_with_flat_scores_equals_plain_stats_and_heads_attend_separately() -> None:
    from speakernet.models.pooling import MultiHeadAttentiveStatsPool

    torch.manual_seed(0)
    pool = MultiHeadAttentiveStatsPool(in_dim=4, num_heads=2, bottleneck_dim=3)
    frames = torch.randn(2, 4, 30)
    with torch.no_grad():
        pool.attention_out.weight.zero_()
        pool.attention_out.bias.zero_()
    torch.testing.assert_close(pool(frames), TemporalStatsPool(4)(frames), rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # head 0 scores frames by channel 0 (high), head 1 by channel 2 (low)
        pool.attention_hidden.weight.zero_()
        pool.attention_hidden.bias.zero_()
        pool.attention_hidden.weight[0, 0, 0] = 10.0
        pool.attention_hidden.weight[3, 0, 0] = 10.0  # head 1's first hidden unit reads its first channel (2)
        pool.attention_out.weight[0, 0, 0] = 50.0
        pool.attention_out.weight[1, 0, 0] = -50.0
    frames = torch.zeros(1, 4, 2)
    frames[0, :, 0] = torch.tensor([1.0, 5.0, 1.0, 7.0])
    frames[0, :, 1] = torch.tensor([-1.0, -5.0, -1.0, -7.0])
    means = pool(frames)[0, :4]
    torch.testing.assert_close(means, torch.tensor([1.0, 5.0, -1.0, -7.0]), atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="divisible"):
        MultiHeadAttentiveStatsPool(in_dim=6, num_heads=4)


def test_ecapa_fills_in_its_attentive_pooling_args() -> None:
    # Every model's poolings by name (ECAPA's MHASP included) are in test_models_common.py.
    from speakernet.models.ecapa_tdnn import ECAPA_TDNN

    default = ECAPA_TDNN(channels=16, embed_dim=8, attention_bottleneck=5, global_context=False)
    assert isinstance(default.pooling, AttentiveStatsPool) and not default.pooling.global_context
    assert default.pooling.attention_hidden.out_channels == 5


def test_wespeaker_statistics_options() -> None:
    """WESPEAKER_STATS: std = sqrt(unbiased var + 1e-7); the attentive variance is floored at 1e-7."""
    from speakernet.models.pooling import WESPEAKER_STATS

    torch.manual_seed(3)
    frames = torch.randn(2, 5, 13, dtype=torch.float64)
    frames[0, 1] = 0.25  # a constant channel: its std is sqrt(1e-7), not the default floor's sqrt(1e-10)
    pooled = TemporalStatsPool(5, **WESPEAKER_STATS)(frames)
    torch.testing.assert_close(pooled[:, :5], frames.mean(dim=2))
    torch.testing.assert_close(pooled[:, 5:], torch.sqrt(frames.var(dim=2, unbiased=True) + 1e-7))
    assert TemporalStatsPool(5)(frames)[0, 6] == pytest.approx(VARIANCE_FLOOR**0.5)
    single = TemporalStatsPool(5, **WESPEAKER_STATS)(frames[:, :, :1])  # T - 1 = 0 divides by 1: finite
    torch.testing.assert_close(single[:, 5:], torch.full((2, 5), 1e-7**0.5, dtype=torch.float64))

    pool = AttentiveStatsPool(5, bottleneck_dim=3, **WESPEAKER_STATS).double()
    hidden_in = torch.cat([frames, frames.mean(dim=2, keepdim=True).expand(-1, -1, 13),
                           torch.sqrt(frames.var(dim=2, keepdim=True) + 1e-7).expand(-1, -1, 13)], dim=1)
    alpha = torch.softmax(pool.attention_out(torch.tanh(pool.attention_hidden(hidden_in))), dim=2)
    mean = (alpha * frames).sum(dim=2)
    std = torch.sqrt(((alpha * frames**2).sum(dim=2) - mean**2).clamp(min=1e-7))
    torch.testing.assert_close(pool(frames), torch.cat([mean, std], dim=1))
    with pytest.raises(ValueError, match="variance_floor > 0"):
        TemporalStatsPool(5, variance_floor=0.0)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_wespeaker_statistics_script_and_export_with_a_dynamic_frame_count() -> None:
    from speakernet.models.pooling import WESPEAKER_STATS

    pool = AttentiveStatsPool(in_dim=4, bottleneck_dim=2, **WESPEAKER_STATS).eval()
    frames = torch.randn(2, 4, 9)
    torch.testing.assert_close(torch.jit.script(pool)(frames), pool(frames))
    stats = TemporalStatsPool(4, **WESPEAKER_STATS)
    exported = torch.export.export(stats, (frames,), dynamic_shapes=({2: torch.export.Dim.DYNAMIC},))
    longer = torch.randn(2, 4, 31)
    torch.testing.assert_close(exported.module()(longer), stats(longer))
