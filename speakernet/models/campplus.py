"""CAM++ speaker-embedding model (Wang et al., "CAM++: A Fast and Efficient Network for Speaker
Verification Using Context-Aware Masking", Interspeech 2023).

The layout follows WeSpeaker's ``CAMPPlus`` so that parameter counts and recipes are comparable
(see docs REFERENCE.md, "Architectures"):

- a front-end convolution module (FCM): a 2-d 3x3 convolution ``1 -> 32`` with BN-ReLU, two stages
  of two basic residual blocks whose first block has stride 2 along frequency only, and a last
  3x3 convolution with frequency stride 2 and BN-ReLU; 80 frequency bins become 10, which join
  the 32 channels (320 per frame); time keeps its resolution;
- a TDNN layer: 1-d convolution of width 5 and **stride 2** (200 frames -> 100), no bias, BN-ReLU;
- three densely connected CAM-TDNN blocks of (layers, dilation) = (12, 1), (24, 2), (16, 2); each
  layer is ``BN-ReLU -> 1x1 conv to bn_size * growth_rate -> BN-ReLU -> CAM layer`` and its
  ``growth_rate`` output channels are concatenated onto its input;
- after each block a transit layer ``BN-ReLU -> 1x1 conv`` (no bias) halves the channels
  (128 -> 512 -> 256 -> 1024 -> 512 -> 1024 -> 512);
- BN-ReLU, a registered pooling (statistics pooling, TSTP, in the published model), a linear
  layer without bias to the embedding (512) and a batch norm without affine parameters.

The CAM (context-aware masking) layer convolves its input (width 3, dilated) and multiplies the
result by a sigmoid mask computed from the utterance mean plus the mean of the surrounding
segment of ``seg_len`` frames (100 frames at the halved frame rate, i.e. 2 s).

1-d convolutions and linear layers get Kaiming-normal weights and zero biases (2-d convolutions
keep PyTorch's default initialisation, as in WeSpeaker). With the defaults the model has
7.18 M parameters (7,176,224 measured; WeSpeaker: 7.176 M).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from speakernet.models.pooling import build_pooling
from speakernet.models.checks import check_feats
from speakernet.models.registry import MODELS


def segment_mean(x: torch.Tensor, seg_len: int) -> torch.Tensor:
    """Replaces every frame by the mean of its segment of ``seg_len`` frames.

    Segments are ``[0, seg_len)``, ``[seg_len, 2 seg_len)``, ...; the last one may be shorter and is
    then averaged over the frames it has (the ``ceil_mode`` average pooling of CAM++, broadcast
    back to the frames). Works for any frame count T >= 1.

    The segment sums are differences of a cumulative sum over time, so every intermediate tensor
    has T (or T + 1) frames. Splitting time into a symbolic number of segments (reshape, unfold,
    pooling) makes ``torch.export`` guard on that number and refuse a dynamic frame dimension.
    The cumulative sum runs over the frames minus their utterance mean, in at least float32,
    which keeps its rounding error near float32 resolution even for 100,000 frames.

    Args:
        x: Frames ``[B, C, T]``.
        seg_len: Segment length in frames (>= 1).

    Returns:
        ``[B, C, T]``: each frame holds the mean of the segment it belongs to.
    """
    frames = x.shape[2]
    work = x.to(torch.promote_types(x.dtype, torch.float32))
    mean = work.mean(dim=2, keepdim=True)
    cumulative = F.pad(torch.cumsum(work - mean, dim=2), (1, 0))  # [B, C, T + 1], cumulative[..., 0] = 0
    frame = torch.arange(frames, device=x.device)
    start = torch.div(frame, seg_len, rounding_mode="floor") * seg_len
    end = torch.clamp(start + seg_len, max=frames)
    sums = cumulative.index_select(2, end) - cumulative.index_select(2, start)
    return (mean + sums / (end - start).to(work.dtype)).to(x.dtype)


class BnRelu1d(nn.Module):
    """Batch norm then ReLU over ``[B, C, T]`` (WeSpeaker's ``batchnorm-relu``).

    Args:
        channels: Channels C.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.bn = nn.BatchNorm1d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Maps ``[B, C, T]`` to ``[B, C, T]``."""
        return torch.relu(self.bn(x))


class FrequencyResBlock(nn.Module):
    """2-d basic residual block whose stride acts on frequency only.

    ``3x3 conv (stride (s, 1)) -> BN -> ReLU -> 3x3 conv -> BN``, plus the input (through a 1x1
    convolution with the same stride and a BN when the shape changes), then ReLU.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        freq_stride: Stride along frequency (time stride is always 1).
    """

    def __init__(self, in_channels: int, out_channels: int, freq_stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=(freq_stride, 1), padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        if freq_stride != 1 or in_channels != out_channels:
            self.shortcut: nn.Module = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=(freq_stride, 1), bias=False),
                nn.BatchNorm2d(out_channels),
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Maps ``[B, in_channels, F, T]`` to ``[B, out_channels, ceil(F / freq_stride), T]``."""
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


def _strided_size(size: int, stride: int) -> int:
    """Output size of a width-3, padding-1 convolution with ``stride`` (``ceil(size / stride)``)."""
    return (size - 1) // stride + 1


class FrontEndConvModule(nn.Module):
    """CAM++'s FCM: a small 2-d ResNet that shrinks frequency 8-fold and keeps every frame.

    Args:
        feat_dim: Frequency bins F of the input.
        channels: Channels of every 2-d layer (32 in CAM++).
        blocks_per_stage: Residual blocks in each of the two stages (2 in CAM++).

    Attributes:
        out_dim: Channels x remaining frequency bins, the feature size per output frame
            (``channels * ceil(F / 8)``: 320 for F = 80).
    """

    def __init__(self, feat_dim: int, channels: int = 32, blocks_per_stage: Sequence[int] = (2, 2)):
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        freq = feat_dim
        stages: list[nn.Module] = []
        for num_blocks in blocks_per_stage:
            blocks = [FrequencyResBlock(channels, channels, freq_stride=2 if index == 0 else 1)
                      for index in range(num_blocks)]
            stages.append(nn.Sequential(*blocks))
            freq = _strided_size(freq, 2)
        self.stages = nn.Sequential(*stages)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=(2, 1), padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        freq = _strided_size(freq, 2)
        self.out_dim = channels * freq

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Maps ``[B, F, T]`` to ``[B, out_dim, T]`` (channel-major, then frequency)."""
        out = torch.relu(self.bn1(self.conv1(x.unsqueeze(1))))
        out = self.stages(out)
        out = torch.relu(self.bn2(self.conv2(out)))
        batch, channels, freq, frames = out.shape
        return out.reshape(batch, channels * freq, frames)


class CAMLayer(nn.Module):
    """Context-aware masking: a dilated convolution gated by utterance and segment context.

    ``y = conv(x)``; ``context = mean_t(x) + segment_mean(x)``; ``mask = sigmoid(W2 relu(W1
    context))`` per frame and output channel; the output is ``y * mask``.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Width of the local convolution (odd; "same" zero padding).
        dilation: Dilation of the local convolution.
        seg_len: Segment length of the segment context, in frames.
        reduction: Channel reduction of the mask's hidden layer.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int, seg_len: int,
                 reduction: int = 2):
        super().__init__()
        padding = (kernel_size - 1) // 2 * dilation
        self.local = nn.Conv1d(in_channels, out_channels, kernel_size, padding=padding, dilation=dilation,
                               bias=False)
        self.context_hidden = nn.Conv1d(in_channels, in_channels // reduction, 1)
        self.context_out = nn.Conv1d(in_channels // reduction, out_channels, 1)
        self.seg_len = seg_len

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Maps ``[B, in_channels, T]`` to ``[B, out_channels, T]``."""
        local = self.local(x)
        context = x.mean(dim=2, keepdim=True) + segment_mean(x, self.seg_len)
        mask = torch.sigmoid(self.context_out(torch.relu(self.context_hidden(context))))
        return local * mask


class CAMDenseLayer(nn.Module):
    """One layer of a CAM dense block: ``BN-ReLU -> 1x1 conv -> BN-ReLU -> CAM layer``.

    Args:
        in_channels: Input channels.
        growth_rate: Output channels.
        bottleneck_channels: Channels after the 1x1 convolution.
        kernel_size: Width of the CAM layer's convolution.
        dilation: Dilation of the CAM layer's convolution.
        seg_len: Segment length of the CAM context, in frames.
    """

    def __init__(self, in_channels: int, growth_rate: int, bottleneck_channels: int, kernel_size: int,
                 dilation: int, seg_len: int):
        super().__init__()
        self.norm1 = BnRelu1d(in_channels)
        self.bottleneck = nn.Conv1d(in_channels, bottleneck_channels, 1, bias=False)
        self.norm2 = BnRelu1d(bottleneck_channels)
        self.cam = CAMLayer(bottleneck_channels, growth_rate, kernel_size, dilation, seg_len)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Maps ``[B, in_channels, T]`` to ``[B, growth_rate, T]``."""
        return self.cam(self.norm2(self.bottleneck(self.norm1(x))))


class CAMDenseBlock(nn.Module):
    """Densely connected CAM layers: each layer's output is concatenated onto its input.

    Args:
        num_layers: Number of layers.
        in_channels: Input channels; the output has ``in_channels + num_layers * growth_rate``.
        growth_rate: Channels each layer adds.
        bottleneck_channels: Bottleneck width inside each layer.
        kernel_size: Width of the CAM convolutions.
        dilation: Dilation of the CAM convolutions.
        seg_len: Segment length of the CAM context, in frames.
    """

    def __init__(self, num_layers: int, in_channels: int, growth_rate: int, bottleneck_channels: int,
                 kernel_size: int, dilation: int, seg_len: int):
        super().__init__()
        self.layers = nn.ModuleList([
            CAMDenseLayer(in_channels + index * growth_rate, growth_rate, bottleneck_channels, kernel_size,
                          dilation, seg_len)
            for index in range(num_layers)
        ])
        self.out_channels = in_channels + num_layers * growth_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Maps ``[B, in_channels, T]`` to ``[B, out_channels, T]``."""
        for layer in self.layers:
            x = torch.cat([x, layer(x)], dim=1)
        return x


class TransitLayer(nn.Module):
    """``BN-ReLU -> 1x1 conv`` (no bias) between dense blocks.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.norm = BnRelu1d(in_channels)
        self.conv = nn.Conv1d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Maps ``[B, in_channels, T]`` to ``[B, out_channels, T]``."""
        return self.conv(self.norm(x))


@MODELS.register("CAMPPlus")
class CAMPPlus(nn.Module):
    """CAM++: filterbank frames ``[B, T, F]`` -> speaker embedding ``[B, embed_dim]``.

    Args:
        feat_dim: Feature dimension F (80 log-mel bins).
        embed_dim: Embedding size (512 in WeSpeaker's recipe).
        growth_rate: Channels each CAM dense layer adds.
        bn_size: Bottleneck factor: the dense layers' 1x1 convolutions have ``bn_size *
            growth_rate`` channels.
        init_channels: Channels of the TDNN layer that feeds the first dense block.
        pooling: Registered pooling name (``speakernet.models.pooling.POOLINGS``); ``TSTP`` in the
            published model.
        pooling_args: Further pooling arguments.
        seg_len: Segment length of the CAM layers' segment context, in frames after the TDNN
            layer's stride 2 (100 = 2 s).
        block_layers: Layers of each dense block.
        block_dilations: Dilation of the CAM convolutions in each dense block.
        fcm_channels: Channels of the 2-d front-end.
        fcm_blocks: Residual blocks in each front-end stage.

    Raises:
        ValueError: if a size is not positive or the block lists are empty or of unequal length.
        KeyError: if ``pooling`` is not a registered pooling (the message lists them).
        TypeError: if ``pooling_args`` holds an argument the pooling does not take.
    """

    def __init__(
        self,
        feat_dim: int = 80,
        embed_dim: int = 512,
        growth_rate: int = 32,
        bn_size: int = 4,
        init_channels: int = 128,
        pooling: str = "TSTP",
        pooling_args: Mapping[str, Any] | None = None,
        seg_len: int = 100,
        block_layers: Sequence[int] = (12, 24, 16),
        block_dilations: Sequence[int] = (1, 2, 2),
        fcm_channels: int = 32,
        fcm_blocks: Sequence[int] = (2, 2),
    ):
        super().__init__()
        sizes = {
            "feat_dim": feat_dim,
            "embed_dim": embed_dim,
            "growth_rate": growth_rate,
            "bn_size": bn_size,
            "init_channels": init_channels,
            "seg_len": seg_len,
            "fcm_channels": fcm_channels,
        }
        for key, value in sizes.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"CAMPPlus: {key} must be a positive integer, got {value!r}")
        if bn_size * growth_rate < 2:
            raise ValueError(f"CAMPPlus: bn_size * growth_rate must be at least 2, got {bn_size * growth_rate}")
        if len(block_layers) < 1 or len(block_layers) != len(block_dilations):
            raise ValueError(f"CAMPPlus: block_layers {list(block_layers)} and block_dilations "
                             f"{list(block_dilations)} must be non-empty and of equal length")
        for key, values in {"block_layers": block_layers, "block_dilations": block_dilations,
                            "fcm_blocks": fcm_blocks}.items():
            if any(not isinstance(v, int) or v < 1 for v in values):
                raise ValueError(f"CAMPPlus: {key} must hold positive integers, got {list(values)}")

        self.feat_dim = feat_dim
        self.embed_dim = embed_dim
        self.head = FrontEndConvModule(feat_dim, fcm_channels, fcm_blocks)
        self.tdnn = nn.Conv1d(self.head.out_dim, init_channels, 5, stride=2, padding=2, bias=False)
        self.tdnn_norm = BnRelu1d(init_channels)
        channels = init_channels
        blocks: list[nn.Module] = []
        transits: list[nn.Module] = []
        for num_layers, dilation in zip(block_layers, block_dilations):
            block = CAMDenseBlock(num_layers, channels, growth_rate, bn_size * growth_rate, 3, dilation, seg_len)
            blocks.append(block)
            transits.append(TransitLayer(block.out_channels, block.out_channels // 2))
            channels = block.out_channels // 2
        self.blocks = nn.ModuleList(blocks)
        self.transits = nn.ModuleList(transits)
        self.out_norm = BnRelu1d(channels)
        self.pooling = build_pooling(pooling, channels, pooling_args)
        self.embedding = nn.Linear(self.pooling.out_dim, embed_dim, bias=False)
        self.embedding_bn = nn.BatchNorm1d(embed_dim, affine=False)

        for module in self.modules():
            if isinstance(module, (nn.Conv1d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """Computes embeddings.

        Args:
            feats: Features ``[B, T, F]`` (frames x feature bins), mean-normalised per utterance.
                Any T >= 1; the TDNN layer halves it (``ceil(T / 2)`` frames). For ``torch.export``
                with a dynamic frame dimension, give it ``min=3`` (export needs at least 2 frames
                after the stride).

        Returns:
            Embeddings ``[B, embed_dim]`` (not length-normalised).

        Raises:
            ValueError: if ``feats`` is not ``[B, T, feat_dim]`` with T >= 1.
        """
        check_feats(feats, self.feat_dim, "CAMPPlus")
        hidden = self.tdnn_norm(self.tdnn(self.head(feats.transpose(1, 2))))
        for block, transit in zip(self.blocks, self.transits):
            hidden = transit(block(hidden))
        pooled = self.pooling(self.out_norm(hidden))
        return self.embedding_bn(self.embedding(pooled))
