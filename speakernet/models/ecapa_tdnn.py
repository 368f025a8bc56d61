"""ECAPA-TDNN speaker-embedding model (Desplanques et al., Interspeech 2020).

The layout follows WeSpeaker's ``ECAPA_TDNN_GLOB_c{512,1024}`` so that parameter counts and
recipes are comparable (see docs REFERENCE.md, "Architectures"):

- a 5-wide convolution ``feat_dim -> C``;
- three SE-Res2 blocks with dilations 2, 3 and 4, each ``1x1 conv -> Res2 (scale 8, width 3)
  -> 1x1 conv -> squeeze-excitation``, plus a residual connection;
- every convolution is followed by ReLU then batch norm (Conv -> ReLU -> BN), zero padding;
- the three block outputs are concatenated and mixed by a 1x1 convolution to 1536 channels
  (1536 also for C = 1024), then ReLU;
- attentive statistics pooling with global context, batch norm, and a linear layer to the
  embedding (192).

With C = 512 the model has about 6.19 M parameters, with C = 1024 about 14.65 M.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from speakernet.models.pooling import build_pooling
from speakernet.models.checks import check_feats
from speakernet.models.registry import MODELS


class ConvReluBn(nn.Module):
    """1-d convolution, ReLU, then batch norm; "same" padding for odd kernels.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Kernel width in frames (odd).
        dilation: Dilation in frames.
        padding_mode: ``zeros`` (WeSpeaker) or ``reflect`` (SpeechBrain; the input then needs more
            frames than the padding).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, dilation: int = 1,
                 padding_mode: str = "zeros"):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd to keep the frame count, got {kernel_size}")
        padding = dilation * (kernel_size - 1) // 2
        # Without padding the mode is moot, but a non-zeros mode would still copy the input through F.pad.
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, padding=padding, dilation=dilation,
                              padding_mode=padding_mode if padding > 0 else "zeros")
        self.bn = nn.BatchNorm1d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Maps ``[B, in_channels, T]`` to ``[B, out_channels, T]``."""
        # In place: the convolution's output is new and its backward does not need it; a fresh [B, C, T]
        # allocation per layer costs more on CPU than the ReLU itself.
        return self.bn(torch.relu_(self.conv(x)))


class Res2Conv(nn.Module):
    """Res2Net-style multi-scale convolution over channel groups.

    The channels are cut into ``scale`` groups. Group 0 is convolved; each next group is added
    to the previous group's output and convolved; the last group passes through unchanged
    (``scale - 1`` convolutions in all). With ``scale == 1`` the single group is convolved.

    Args:
        channels: Input and output channels; must be divisible by ``scale``.
        kernel_size: Kernel width of each group convolution.
        dilation: Dilation of each group convolution.
        scale: Number of channel groups.
    """

    def __init__(self, channels: int, kernel_size: int, dilation: int, scale: int):
        super().__init__()
        if scale < 1 or channels % scale != 0:
            raise ValueError(f"channels ({channels}) must be divisible by scale ({scale})")
        self.scale = scale
        self.width = channels // scale
        num_convs = 1 if scale == 1 else scale - 1
        self.convs = nn.ModuleList(
            [ConvReluBn(self.width, self.width, kernel_size, dilation) for _ in range(num_convs)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Maps ``[B, channels, T]`` to ``[B, channels, T]``."""
        groups = torch.split(x, self.width, dim=1)
        outputs: list[torch.Tensor] = []
        hidden = groups[0]
        for index, conv in enumerate(self.convs):
            if index > 0:
                hidden = hidden + groups[index]
            hidden = conv(hidden)
            outputs.append(hidden)
        if self.scale > 1:
            outputs.append(groups[self.scale - 1])
        return torch.cat(outputs, dim=1)


class SqueezeExcitation(nn.Module):
    """Squeeze-excitation over time: channel gates from the utterance-mean of each channel.

    Args:
        channels: Channels of the input.
        bottleneck: Width of the gate's hidden layer.
    """

    def __init__(self, channels: int, bottleneck: int = 128):
        super().__init__()
        self.squeeze = nn.Linear(channels, bottleneck)
        self.excite = nn.Linear(bottleneck, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scales each channel of ``[B, C, T]`` by a gate in (0, 1)."""
        gates = torch.sigmoid(self.excite(torch.relu(self.squeeze(x.mean(dim=2)))))
        return x * gates.unsqueeze(2)


class SERes2Block(nn.Module):
    """ECAPA's SE-Res2 block: 1x1 conv, Res2 conv, 1x1 conv, squeeze-excitation, plus the input.

    Args:
        channels: Input and output channels.
        kernel_size: Kernel width of the Res2 group convolutions.
        dilation: Dilation of the Res2 group convolutions.
        scale: Res2 scale (number of channel groups).
        se_bottleneck: Hidden width of the squeeze-excitation gate.
    """

    def __init__(self, channels: int, kernel_size: int, dilation: int, scale: int, se_bottleneck: int):
        super().__init__()
        self.body = nn.Sequential(
            ConvReluBn(channels, channels, kernel_size=1),
            Res2Conv(channels, kernel_size, dilation, scale),
            ConvReluBn(channels, channels, kernel_size=1),
            SqueezeExcitation(channels, se_bottleneck),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Maps ``[B, channels, T]`` to ``[B, channels, T]``."""
        return x + self.body(x)


@MODELS.register("ECAPA_TDNN")
class ECAPA_TDNN(nn.Module):
    """ECAPA-TDNN: filterbank frames ``[B, T, F]`` -> speaker embedding ``[B, embed_dim]``.

    Args:
        feat_dim: Feature dimension F (80 log-mel bins).
        channels: Width C of the SE-Res2 blocks (512 or 1024 for the published models; any
            multiple of ``scale`` works, e.g. 64 for a CPU-sized model).
        embed_dim: Embedding size.
        scale: Res2 scale of the blocks.
        se_bottleneck: Hidden width of the squeeze-excitation gates.
        attention_bottleneck: Hidden width of the pooling attention.
        global_context: Whether the pooling attention also sees the utterance mean and std.
        aggregation_channels: Output channels of the 1x1 convolution over the concatenated
            block outputs (1536 in WeSpeaker for both C = 512 and 1024); ``None`` means 3C,
            which keeps small models small.
        dilations: Dilations of the SE-Res2 blocks, one block per entry.
        embed_bn: Whether a batch norm follows the final linear layer (off in WeSpeaker's
            supervised recipes).
        pooling: Registered pooling name (``speakernet.models.pooling.POOLINGS``); ``ASTP``
            (attentive statistics) in the published model.
        pooling_args: Further pooling arguments; for ``ASTP`` the defaults come from
            ``attention_bottleneck`` and ``global_context``.

    Raises:
        ValueError: if a size is not positive or ``channels`` is not divisible by ``scale``.
    """

    def __init__(
        self,
        feat_dim: int = 80,
        channels: int = 512,
        embed_dim: int = 192,
        scale: int = 8,
        se_bottleneck: int = 128,
        attention_bottleneck: int = 128,
        global_context: bool = True,
        aggregation_channels: int | None = 1536,
        dilations: Sequence[int] = (2, 3, 4),
        embed_bn: bool = False,
        pooling: str = "ASTP",
        pooling_args: Mapping[str, Any] | None = None,
    ):
        super().__init__()
        sizes = {
            "feat_dim": feat_dim,
            "channels": channels,
            "embed_dim": embed_dim,
            "scale": scale,
            "se_bottleneck": se_bottleneck,
            "attention_bottleneck": attention_bottleneck,
        }
        for key, value in sizes.items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"ECAPA_TDNN: {key} must be a positive integer, got {value!r}")
        if channels % scale != 0:
            raise ValueError(f"ECAPA_TDNN: channels ({channels}) must be divisible by scale ({scale})")
        if len(dilations) < 1 or any(d < 1 for d in dilations):
            raise ValueError(f"ECAPA_TDNN: dilations must be a non-empty list of positive ints, got {dilations}")
        if aggregation_channels is None:
            aggregation_channels = channels * len(dilations)
        if aggregation_channels < 1:
            raise ValueError(f"ECAPA_TDNN: aggregation_channels must be positive, got {aggregation_channels}")

        self.feat_dim = feat_dim
        self.embed_dim = embed_dim
        self.input_layer = ConvReluBn(feat_dim, channels, kernel_size=5)
        self.blocks = nn.ModuleList(
            [SERes2Block(channels, 3, dilation, scale, se_bottleneck) for dilation in dilations]
        )
        self.aggregation = nn.Conv1d(channels * len(dilations), aggregation_channels, kernel_size=1)
        if pooling == "ASTP":
            pooling_args = {"bottleneck_dim": attention_bottleneck, "global_context": global_context,
                            **dict(pooling_args or {})}
        self.pooling = build_pooling(pooling, aggregation_channels, pooling_args)
        self.pooling_bn = nn.BatchNorm1d(self.pooling.out_dim)
        self.embedding = nn.Linear(self.pooling.out_dim, embed_dim)
        self.embedding_bn = nn.BatchNorm1d(embed_dim) if embed_bn else nn.Identity()

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """Computes embeddings.

        Args:
            feats: Features ``[B, T, F]`` (frames x feature bins), mean-normalised per utterance.

        Returns:
            Embeddings ``[B, embed_dim]`` (not length-normalised).

        Raises:
            ValueError: if ``feats`` is not ``[B, T, feat_dim]`` with T >= 1.
        """
        check_feats(feats, self.feat_dim, "ECAPA_TDNN")
        hidden = self.input_layer(feats.transpose(1, 2))
        block_outputs: list[torch.Tensor] = []
        for block in self.blocks:
            hidden = block(hidden)
            block_outputs.append(hidden)
        hidden = torch.relu_(self.aggregation(torch.cat(block_outputs, dim=1)))
        return self.embedding_bn(self.embedding(self.pooling_bn(self.pooling(hidden))))
