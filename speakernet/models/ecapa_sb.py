"""ECAPA-TDNN as SpeechBrain builds it (``speechbrain.lobes.models.ECAPA_TDNN``), to run its checkpoints.

SpeechBrain's published ECAPA (spkrec-ecapa-voxceleb, Vox1 + Vox2, 0.80 % EER on Vox1-O with
s-norm) differs from WeSpeaker's layout (:mod:`speakernet.models.ecapa_tdnn`) in ways that change
its output, so importing its weights needs this variant (docs REFERENCE.md, "Architectures"):

- "same" padding by reflection, not zeros (so the shortest input is the largest padding + 1 frames: 5);
- in each Res2 block the *first* channel group passes through and the others are chained;
- the input convolution is a layer of its own whose output is not aggregated; the aggregation
  convolution over the concatenated block outputs has ReLU and batch norm;
- squeeze-excitation by 1x1 convolutions over a (masked) time mean;
- the attention of the pooling is ``conv -> ReLU -> BN -> tanh -> conv``; mean and standard
  deviation are masked population statistics (variance floor 1e-12);
- every block may have its own width, kernel and dilation (the checkpoint: widths
  1024, 1024, 1024, 1024, 3072; kernels 5, 3, 3, 3, 1; dilations 1, 2, 3, 4, 1), 20.77 M parameters.

``forward(feats, lengths)`` takes SpeechBrain's relative lengths for padded batches; extraction
runs one utterance (or equal crops) at a time and passes none.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from speakernet.models.checks import check_feats
from speakernet.models.ecapa_tdnn import ConvReluBn
from speakernet.models.registry import MODELS

#: The variance floor of SpeechBrain's pooling statistics.
STATS_EPS = 1e-12


def _time_mask(lengths: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor | None:
    """``[B, 1, T]`` float mask of the valid frames for relative ``lengths`` (frame t valid iff t < length * T)."""
    if lengths is None:
        return None
    frames = x.shape[-1]
    positions = torch.arange(frames, device=x.device, dtype=lengths.dtype)
    return (positions[None, :] < lengths[:, None] * frames).to(x.dtype).unsqueeze(1)


class Res2ConvFirstPass(nn.Module):
    """Res2Net convolution in SpeechBrain's order: group 0 passes through, group 1 is convolved,
    each later group is added to the previous group's output and convolved.

    Args:
        channels: Input and output channels; divisible by ``scale``.
        kernel_size: Kernel width of each group convolution.
        dilation: Dilation of each group convolution.
        scale: Number of channel groups (at least 2).
    """

    def __init__(self, channels: int, kernel_size: int, dilation: int, scale: int):
        super().__init__()
        if scale < 2 or channels % scale != 0:
            raise ValueError(f"channels ({channels}) must be divisible by scale ({scale}), and scale >= 2")
        self.width = channels // scale
        self.convs = nn.ModuleList(
            [ConvReluBn(self.width, self.width, kernel_size, dilation, "reflect") for _ in range(scale - 1)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Maps ``[B, channels, T]`` to ``[B, channels, T]``."""
        groups = torch.split(x, self.width, dim=1)
        outputs = [groups[0]]
        hidden = groups[1]
        for index, conv in enumerate(self.convs):
            if index > 0:
                hidden = hidden + groups[index + 1]
            hidden = conv(hidden)
            outputs.append(hidden)
        return torch.cat(outputs, dim=1)


class MaskedSqueezeExcitation(nn.Module):
    """Channel gates from the (masked) time mean through two 1x1 convolutions.

    Args:
        channels: Channels of the input.
        bottleneck: Width of the gate's hidden layer.
    """

    def __init__(self, channels: int, bottleneck: int):
        super().__init__()
        self.squeeze = nn.Conv1d(channels, bottleneck, kernel_size=1)
        self.excite = nn.Conv1d(bottleneck, channels, kernel_size=1)

    def gate(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The gates ``[B, C, 1]`` in (0, 1) of ``x [B, C, T]``; ``mask [B, 1, T]`` marks valid frames."""
        if mask is None:
            summary = x.mean(dim=2, keepdim=True)
        else:
            summary = (x * mask).sum(dim=2, keepdim=True) / mask.sum(dim=2, keepdim=True)
        return torch.sigmoid(self.excite(torch.relu(self.squeeze(summary))))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Scales each channel of ``[B, C, T]`` by its gate."""
        return x * self.gate(x, mask)


class SERes2BlockSB(nn.Module):
    """SpeechBrain's SE-Res2 block: 1x1, Res2, 1x1 (each conv -> ReLU -> BN), SE, plus the input.

    Args:
        in_channels: Input channels (a 1x1 shortcut convolution maps them when they differ).
        out_channels: Output channels.
        kernel_size: Kernel width of the Res2 group convolutions.
        dilation: Dilation of the Res2 group convolutions.
        scale: Res2 scale.
        se_channels: Hidden width of the squeeze-excitation gate.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int, scale: int,
                 se_channels: int):
        super().__init__()
        self.tdnn1 = ConvReluBn(in_channels, out_channels, kernel_size=1)
        self.res2 = Res2ConvFirstPass(out_channels, kernel_size, dilation, scale)
        self.tdnn2 = ConvReluBn(out_channels, out_channels, kernel_size=1)
        self.se = MaskedSqueezeExcitation(out_channels, se_channels)
        self.shortcut = nn.Conv1d(in_channels, out_channels, kernel_size=1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Maps ``[B, in_channels, T]`` to ``[B, out_channels, T]``."""
        residual = x if self.shortcut is None else self.shortcut(x)
        hidden = self.tdnn2(self.res2(self.tdnn1(x)))
        return torch.addcmul(residual, hidden, self.se.gate(hidden, mask))  # one pass, not a product and a sum


def _masked_stats(x: torch.Tensor, weights: torch.Tensor | None, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted mean and population standard deviation over time (variance floored at ``eps``); ``weights`` sum
    to 1 over T (None: every frame weighs the same)."""
    if weights is None:  # two passes; torch.var_mean's one-pass (Welford) kernel is 4x slower on CPU
        mean = x.mean(dim=2)
        var = (x - mean.unsqueeze(2)).square().mean(dim=2)
    else:
        mean = (weights * x).sum(dim=2)
        var = (weights * (x - mean.unsqueeze(2)).square()).sum(dim=2)
    return mean, torch.sqrt(var.clamp(min=eps))


class MaskedAttentiveStatsPool(nn.Module):
    """SpeechBrain's attentive statistics pooling: channel-wise attention over time, masked.

    Args:
        channels: Channels C of the frames.
        attention_channels: Width of the attention's hidden layer.
        global_context: Whether the attention also sees the utterance mean and std.
    """

    def __init__(self, channels: int, attention_channels: int, global_context: bool = True):
        super().__init__()
        self.global_context = global_context
        self.eps = STATS_EPS
        self.attention_hidden = ConvReluBn(channels * 3 if global_context else channels, attention_channels)
        self.attention_out = nn.Conv1d(attention_channels, channels, kernel_size=1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Pools ``[B, C, T]`` to ``[B, 2C]`` (weighted mean, then weighted std); ``mask [B, 1, T]``."""
        if self.global_context:
            # The attention's input is [frames; mean; std] with the statistics repeated over time, so its 1x1
            # convolution is that of the frames plus a per-utterance constant: no [B, 3C, T] input is built.
            mean, std = _masked_stats(x, None if mask is None else mask / mask.sum(dim=2, keepdim=True), self.eps)
            conv = self.attention_hidden.conv
            frames_weight, mean_weight, std_weight = conv.weight[:, :, 0].split(x.shape[1], dim=1)
            constant = mean @ mean_weight.t() + std @ std_weight.t()
            bias = conv.bias
            if bias is not None:
                constant = constant + bias
            hidden = torch.matmul(frames_weight, x) + constant.unsqueeze(2)
            hidden = self.attention_hidden.bn(torch.relu_(hidden))
        else:
            hidden = self.attention_hidden(x)
        scores = self.attention_out(torch.tanh(hidden))
        if mask is not None:
            scores = scores.masked_fill(mask == 0, float("-inf"))
        mean, std = _masked_stats(x, torch.softmax(scores, dim=2), self.eps)
        return torch.cat([mean, std], dim=1)


@MODELS.register("ECAPA_TDNN_SB")
class ECAPA_TDNN_SB(nn.Module):
    """SpeechBrain's ECAPA-TDNN: features ``[B, T, F]`` -> embeddings ``[B, embed_dim]``.

    The defaults are the published checkpoint's (spkrec-ecapa-voxceleb); smaller widths train
    from scratch like any registered model.

    Args:
        feat_dim: Feature dimension F (80 SpeechBrain mel bins for the checkpoint).
        channels: Widths of the input layer, each SE-Res2 block, and the aggregation layer.
        kernel_sizes: Kernel widths, one per entry of ``channels``.
        dilations: Dilations, one per entry of ``channels``.
        attention_channels: Hidden width of the pooling attention.
        res2net_scale: Res2 scale of the blocks.
        se_channels: Hidden width of the squeeze-excitation gates.
        global_context: Whether the pooling attention also sees the utterance statistics.
        embed_dim: Embedding size.

    Raises:
        ValueError: on fewer than three layers, lists of different lengths, or a size that is not positive.
    """

    def __init__(
        self,
        feat_dim: int = 80,
        channels: Sequence[int] = (1024, 1024, 1024, 1024, 3072),
        kernel_sizes: Sequence[int] = (5, 3, 3, 3, 1),
        dilations: Sequence[int] = (1, 2, 3, 4, 1),
        attention_channels: int = 128,
        res2net_scale: int = 8,
        se_channels: int = 128,
        global_context: bool = True,
        embed_dim: int = 192,
    ):
        super().__init__()
        channels, kernel_sizes, dilations = list(channels), list(kernel_sizes), list(dilations)
        if len(channels) < 3 or not len(channels) == len(kernel_sizes) == len(dilations):
            raise ValueError(f"ECAPA_TDNN_SB: channels, kernel_sizes and dilations need the same length >= 3, got "
                             f"{channels}, {kernel_sizes}, {dilations}")
        sizes = {"feat_dim": feat_dim, "attention_channels": attention_channels, "res2net_scale": res2net_scale,
                 "se_channels": se_channels, "embed_dim": embed_dim}
        listed = [("channels", c) for c in channels] + [("dilations", d) for d in dilations]
        for key, value in [*sizes.items(), *listed]:
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"ECAPA_TDNN_SB: {key} must hold positive integers, got {value!r}")
        self.feat_dim = feat_dim
        self.embed_dim = embed_dim
        self.input_layer = ConvReluBn(feat_dim, channels[0], kernel_sizes[0], dilations[0], "reflect")
        self.blocks = nn.ModuleList(
            [SERes2BlockSB(channels[i - 1], channels[i], kernel_sizes[i], dilations[i], res2net_scale, se_channels)
             for i in range(1, len(channels) - 1)]
        )
        self.aggregation = ConvReluBn(sum(channels[1:-1]), channels[-1], kernel_sizes[-1], dilations[-1], "reflect")
        self.pooling = MaskedAttentiveStatsPool(channels[-1], attention_channels, global_context)
        self.pooling_bn = nn.BatchNorm1d(2 * channels[-1])
        self.embedding = nn.Linear(2 * channels[-1], embed_dim)
        # Reflection padding needs more frames than it pads, at every layer.
        self.min_frames = max(d * (k - 1) // 2 for k, d in zip(kernel_sizes, dilations)) + 1

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Computes embeddings.

        Args:
            feats: Features ``[B, T, F]``, mean-normalised per utterance.
            lengths: Relative lengths ``[B]`` in (0, 1] of a zero-padded batch (SpeechBrain's
                ``wav_lens``); ``None`` when every row is whole.

        Returns:
            Embeddings ``[B, embed_dim]`` (not length-normalised).

        Raises:
            ValueError: if ``feats`` is not ``[B, T, feat_dim]`` with enough frames for the padding.
        """
        check_feats(feats, self.feat_dim, "ECAPA_TDNN_SB", self.min_frames, " (its reflection padding)")
        hidden = self.input_layer(feats.transpose(1, 2))
        mask = _time_mask(lengths, hidden)
        block_outputs: list[torch.Tensor] = []
        for block in self.blocks:
            hidden = block(hidden, mask)
            block_outputs.append(hidden)
        hidden = self.aggregation(torch.cat(block_outputs, dim=1))
        return self.embedding(self.pooling_bn(self.pooling(hidden, mask)))
