"""Temporal pooling: frame-level features ``[B, C, T]`` -> utterance-level statistics ``[B, 2C]``.

Both poolings compute their statistics in at least float32 even under mixed precision, because the
variance floor (1e-10) underflows in float16 and ``sqrt(0)`` has an infinite gradient.
Variances are population variances (divide by T), so a single frame gives std = sqrt(floor)
instead of NaN, and are computed around the mean (two passes) rather than as E[x^2] - E[x]^2,
which cancels catastrophically in float32 for large, nearly constant channels.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

VARIANCE_FLOOR = 1e-10
"""Variances are clamped to at least this before the square root (keeps gradients finite)."""


def _check_input(x: torch.Tensor, channels: int | None = None) -> None:
    if x.dim() != 3:
        raise ValueError(f"pooling expects frames of shape [batch, channels, time], got {list(x.shape)}")
    if x.shape[2] < 1:
        raise ValueError("pooling needs at least one frame (got time dimension 0)")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"pooling built for {channels} channels got input with {x.shape[1]}")


class TemporalStatsPool(nn.Module):
    """Temporal statistics pooling (TSTP): per-channel mean and standard deviation over time.

    The x-vector pooling, used by ResNet and TDNN speaker models.

    Args:
        in_dim: Number of channels C (only to report ``out_dim``; any C is accepted if omitted).
    """

    def __init__(self, in_dim: int | None = None):
        super().__init__()
        self.in_dim = in_dim
        self.variance_floor = VARIANCE_FLOOR

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
        mean = x.mean(dim=2)
        var = (x - mean.unsqueeze(2)).pow(2).mean(dim=2)
        std = torch.sqrt(var.clamp(min=self.variance_floor))
        return torch.cat([mean, std], dim=1)


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
    """

    # TorchScript needs the type of an attribute that forward assigns; a plain annotation would be
    # a string under ``from __future__ import annotations``, which TorchScript cannot resolve.
    __annotations__ = {"last_attention": Optional[torch.Tensor]}

    def __init__(self, in_dim: int, bottleneck_dim: int = 128, global_context: bool = True):
        super().__init__()
        if in_dim < 1 or bottleneck_dim < 1:
            raise ValueError(f"in_dim ({in_dim}) and bottleneck_dim ({bottleneck_dim}) must be positive")
        self.in_dim = in_dim
        self.global_context = global_context
        self.variance_floor = VARIANCE_FLOOR
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
            var = (x - mean).pow(2).mean(dim=2, keepdim=True)
            std = torch.sqrt(var.clamp(min=self.variance_floor))
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
