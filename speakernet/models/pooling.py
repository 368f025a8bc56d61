"""Temporal pooling: frame-level features ``[B, C, T]`` -> utterance-level vectors.

Every pooling is registered by name in :data:`POOLINGS` (``TAP``, ``TSTP``, ``ASTP``, ``MHASP``)
and built with :func:`build_pooling`, so that any model can take ``pooling: <name>`` and
``pooling_args: {...}`` in its ``model_args``. A pooling built for ``in_dim`` channels has an
``out_dim`` attribute (the size of its output vector).

Both poolings compute their statistics in at least float32 even under mixed precision, because the
variance floor (1e-10) underflows in float16 and ``sqrt(0)`` has an infinite gradient.
Variances are population variances (divide by T), so a single frame gives std = sqrt(floor)
instead of NaN, and are computed around the mean (two passes) rather than as E[x^2] - E[x]^2,
which cancels catastrophically in float32 for large, nearly constant channels.

WeSpeaker's poolings compute the utterance statistics differently: the unbiased variance
(divide by T - 1) plus 1e-7 under the square root, and a floor of 1e-7 on the attentive
variance. ``TSTP`` and ``ASTP`` take that as options (``unbiased``, ``variance_eps``,
``variance_floor``; :data:`WESPEAKER_STATS` holds WeSpeaker's values), so that imported
WeSpeaker models give WeSpeaker's embeddings; the defaults are speakernet's own.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import torch
from torch import nn

from speakernet.registry import Registry

POOLINGS: Registry[nn.Module] = Registry("pooling")
"""Temporal poolings: ``pooling(frames [B, C, T]) -> [B, pooling.out_dim]``."""

VARIANCE_FLOOR = 1e-10
"""Variances are clamped to at least this before the square root (keeps gradients finite)."""

WESPEAKER_STATS: dict[str, Any] = {"unbiased": True, "variance_eps": 1e-7, "variance_floor": 1e-7}
"""``pooling_args`` of ``TSTP`` and ``ASTP`` that compute the statistics as WeSpeaker does."""


def _check_input(x: torch.Tensor, channels: int | None = None) -> None:
    if x.dim() != 3:
        raise ValueError(f"pooling expects frames of shape [batch, channels, time], got {list(x.shape)}")
    if x.shape[2] < 1:
        raise ValueError("pooling needs at least one frame (got time dimension 0)")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"pooling built for {channels} channels got input with {x.shape[1]}")


def _check_stats_options(variance_eps: float, variance_floor: float) -> None:
    if variance_eps < 0 or variance_floor <= 0:
        raise ValueError(f"variance_eps must be >= 0 and variance_floor > 0, got {variance_eps} and {variance_floor}")


def utterance_variance(x: torch.Tensor, mean: torch.Tensor, unbiased: bool) -> torch.Tensor:
    """The per-channel variance over time of ``x [B, C, T]`` around ``mean [B, C, 1]``, as ``[B, C, 1]``.

    With ``unbiased`` the sum of squares is divided by ``T - 1`` (by 1 for a single frame, where the
    unbiased variance is undefined), else by ``T``.
    """
    squares = (x - mean).pow(2)
    if not unbiased:
        return squares.mean(dim=2, keepdim=True)
    sums = squares.sum(dim=2, keepdim=True)
    # a tensor divisor, so that a dynamic frame count exports without a guard on it
    return sums / (torch.ones_like(sums) * (x.shape[2] - 1)).clamp(min=1.0)


def build_pooling(name: str, in_dim: int, args: Mapping[str, Any] | None = None) -> nn.Module:
    """Builds the registered pooling ``name`` for frames of ``in_dim`` channels.

    Args:
        name: ``"TAP"`` (mean), ``"TSTP"`` (mean and std), ``"ASTP"`` (attentive statistics) or
            ``"MHASP"`` (multi-head attentive statistics).
        in_dim: Channels C of the frames ``[B, C, T]``.
        args: Further constructor arguments (``pooling_args`` in a model's config).

    Returns:
        The pooling; its ``out_dim`` is the size of the pooled vector.

    Raises:
        KeyError: if ``name`` is unknown (the message lists the registered poolings).
        TypeError: if ``args`` holds an argument the pooling does not take.
    """
    return POOLINGS.build(name, in_dim=in_dim, **dict(args or {}))


@POOLINGS.register("TAP")
class TemporalAveragePool(nn.Module):
    """Temporal average pooling: the per-channel mean over time (Deep Speaker's ResCNN).

    Args:
        in_dim: Number of channels C (only to report ``out_dim``; any C is accepted if omitted).
    """

    def __init__(self, in_dim: int | None = None):
        super().__init__()
        self.in_dim = in_dim

    @property
    def out_dim(self) -> int:
        """Size of the pooled vector, C."""
        if self.in_dim is None:
            raise AttributeError("TemporalAveragePool built without in_dim has no fixed out_dim")
        return self.in_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Maps frames ``[B, C, T]`` to their mean over time ``[B, C]``.

        Raises:
            ValueError: if ``x`` is not ``[B, C, T]`` with T >= 1.
        """
        _check_input(x, self.in_dim)
        return x.to(torch.promote_types(x.dtype, torch.float32)).mean(dim=2)


@POOLINGS.register("TSTP")
class TemporalStatsPool(nn.Module):
    """Temporal statistics pooling (TSTP): per-channel mean and standard deviation over time.

    The x-vector pooling, used by ResNet and TDNN speaker models. The std is
    ``sqrt(max(var + variance_eps, variance_floor))``.

    Args:
        in_dim: Number of channels C (only to report ``out_dim``; any C is accepted if omitted).
        unbiased: Divide the sum of squares by T - 1 (WeSpeaker) instead of T.
        variance_eps: Added to the variance before the square root (1e-7 in WeSpeaker).
        variance_floor: Least variance before the square root.

    Raises:
        ValueError: if ``variance_eps`` is negative or ``variance_floor`` not positive.
    """

    def __init__(self, in_dim: int | None = None, unbiased: bool = False, variance_eps: float = 0.0,
                 variance_floor: float = VARIANCE_FLOOR):
        super().__init__()
        _check_stats_options(variance_eps, variance_floor)
        self.in_dim = in_dim
        self.unbiased = unbiased
        self.variance_eps = float(variance_eps)
        self.variance_floor = float(variance_floor)

    @property
    def out_dim(self) -> int:
        """Size of the pooled vector, 2C."""
        if self.in_dim is None:
            raise AttributeError("TemporalStatsPool built without in_dim has no fixed out_dim")
        return 2 * self.in_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pools frames.

        Args:
            x: Frame features ``[B, C, T]``.

        Returns:
            ``[B, 2C]``: the mean over time, then the standard deviation over time.

        Raises:
            ValueError: if ``x`` is not ``[B, C, T]`` with T >= 1.
        """
        _check_input(x, self.in_dim)
        x = x.to(torch.promote_types(x.dtype, torch.float32))
        mean = x.mean(dim=2, keepdim=True)
        var = utterance_variance(x, mean, self.unbiased)
        std = torch.sqrt((var + self.variance_eps).clamp(min=self.variance_floor))
        return torch.cat([mean.squeeze(2), std.squeeze(2)], dim=1)


@POOLINGS.register("ASTP")
class AttentiveStatsPool(nn.Module):
    """Channel-dependent attentive statistics pooling (ECAPA-TDNN).

    Each channel c gets its own softmax weights over time, ``alpha[c, t] = softmax_t(v_c .
    tanh(W h_t + b) + k_c)``, where ``h_t`` is the frame ``x_t`` or, with global context, the
    concatenation ``[x_t, mean(x), std(x)]`` of the frame with the unweighted utterance
    statistics. The outputs are the alpha-weighted mean and standard deviation per channel.

    For diagnostics, set ``keep_attention = True``: each forward then also stores its weights
    ``alpha [B, C, T]`` (detached, summing to 1 over time) in ``last_attention``. The output is
    the same either way, and with the flag off (the default) nothing is kept.

    Args:
        in_dim: Number of channels C of the frames.
        bottleneck_dim: Width of the attention's hidden layer.
        global_context: Whether the attention also sees the utterance mean and std.
        unbiased: The global context's std divides by T - 1 (WeSpeaker) instead of T.
        variance_eps: Added to the global context's variance before the square root (1e-7 in
            WeSpeaker); the weighted variance gets only the floor.
        variance_floor: Least variance before every square root (1e-7 in WeSpeaker).

    Raises:
        ValueError: if a size is not positive, ``variance_eps`` is negative or ``variance_floor`` not positive.
    """

    # TorchScript needs the type of an attribute that forward assigns; a plain annotation would be
    # a string under ``from __future__ import annotations``, which TorchScript cannot resolve.
    __annotations__ = {"last_attention": Optional[torch.Tensor]}

    def __init__(self, in_dim: int, bottleneck_dim: int = 128, global_context: bool = True, unbiased: bool = False,
                 variance_eps: float = 0.0, variance_floor: float = VARIANCE_FLOOR):
        super().__init__()
        if in_dim < 1 or bottleneck_dim < 1:
            raise ValueError(f"in_dim ({in_dim}) and bottleneck_dim ({bottleneck_dim}) must be positive")
        _check_stats_options(variance_eps, variance_floor)
        self.in_dim = in_dim
        self.global_context = global_context
        self.unbiased = unbiased
        self.variance_eps = float(variance_eps)
        self.variance_floor = float(variance_floor)
        # 1x1 convolutions act as per-frame linear layers without transposing [B, C, T].
        self.attention_hidden = nn.Conv1d(in_dim * 3 if global_context else in_dim, bottleneck_dim, kernel_size=1)
        self.attention_out = nn.Conv1d(bottleneck_dim, in_dim, kernel_size=1)
        self.keep_attention = False
        self.last_attention = None

    @property
    def out_dim(self) -> int:
        """Size of the pooled vector, 2C."""
        return 2 * self.in_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pools frames.

        Args:
            x: Frame features ``[B, C, T]``.

        Returns:
            ``[B, 2C]``: the attention-weighted mean, then the attention-weighted standard deviation.

        Raises:
            ValueError: if ``x`` is not ``[B, C, T]`` with T >= 1 and C = ``in_dim``.
        """
        _check_input(x, self.in_dim)
        x = x.to(torch.promote_types(x.dtype, torch.float32))
        if self.global_context:
            frames = x.shape[2]
            mean = x.mean(dim=2, keepdim=True)
            var = utterance_variance(x, mean, self.unbiased)
            std = torch.sqrt((var + self.variance_eps).clamp(min=self.variance_floor))
            attention_in = torch.cat([x, mean.expand(-1, -1, frames), std.expand(-1, -1, frames)], dim=1)
        else:
            attention_in = x
        # tanh, not ReLU, in the hidden layer: ReLU attention is known to train poorly here.
        scores = self.attention_out(torch.tanh(self.attention_hidden(attention_in)))
        alpha = torch.softmax(scores.to(x.dtype), dim=2)
        if self.keep_attention:
            self.last_attention = alpha.detach()
        weighted_mean = torch.sum(alpha * x, dim=2)
        weighted_var = torch.sum(alpha * (x - weighted_mean.unsqueeze(2)).pow(2), dim=2)
        weighted_std = torch.sqrt(weighted_var.clamp(min=self.variance_floor))
        return torch.cat([weighted_mean, weighted_std], dim=1)


@POOLINGS.register("MHASP")
class MultiHeadAttentiveStatsPool(nn.Module):
    """Multi-head attentive statistics pooling (India et al., Interspeech 2019).

    The C channels are cut into ``num_heads`` groups; each head scores every frame from its own
    group (``w_h . tanh(W_h x_t^(h) + b_h)``, one weight per frame and head), and its softmax
    weights over time give the weighted mean and standard deviation of that group. The output
    is every head's mean, then every head's std (``[B, 2C]``, ordered like the channels), so with
    one head and flat scores it equals :class:`TemporalStatsPool`.

    Args:
        in_dim: Number of channels C; must be divisible by ``num_heads``.
        num_heads: Number of heads H.
        bottleneck_dim: Width of each head's hidden layer.
    """

    def __init__(self, in_dim: int, num_heads: int = 4, bottleneck_dim: int = 64):
        super().__init__()
        if in_dim < 1 or num_heads < 1 or bottleneck_dim < 1 or in_dim % num_heads != 0:
            raise ValueError(f"MHASP: need positive sizes and in_dim ({in_dim}) divisible by "
                             f"num_heads ({num_heads}); bottleneck_dim {bottleneck_dim}")
        self.in_dim, self.num_heads = in_dim, num_heads
        self.variance_floor = VARIANCE_FLOOR
        # Grouped 1x1 convolutions: head h sees only its own channel group.
        self.attention_hidden = nn.Conv1d(in_dim, bottleneck_dim * num_heads, kernel_size=1, groups=num_heads)
        self.attention_out = nn.Conv1d(bottleneck_dim * num_heads, num_heads, kernel_size=1, groups=num_heads)

    @property
    def out_dim(self) -> int:
        """Size of the pooled vector, 2C."""
        return 2 * self.in_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pools frames.

        Args:
            x: Frame features ``[B, C, T]``.

        Returns:
            ``[B, 2C]``: the heads' weighted means, then their weighted standard deviations.

        Raises:
            ValueError: if ``x`` is not ``[B, C, T]`` with T >= 1 and C = ``in_dim``.
        """
        _check_input(x, self.in_dim)
        x = x.to(torch.promote_types(x.dtype, torch.float32))
        batch, channels, frames = x.shape
        scores = self.attention_out(torch.tanh(self.attention_hidden(x)))  # [B, H, T]
        alpha = torch.softmax(scores.to(x.dtype), dim=2).unsqueeze(2)  # [B, H, 1, T]
        grouped = x.reshape(batch, self.num_heads, channels // self.num_heads, frames)
        mean = torch.sum(alpha * grouped, dim=3)
        var = torch.sum(alpha * (grouped - mean.unsqueeze(3)).pow(2), dim=3)
        std = torch.sqrt(var.clamp(min=self.variance_floor))
        return torch.cat([mean.reshape(batch, channels), std.reshape(batch, channels)], dim=1)
