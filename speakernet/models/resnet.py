"""ResNet speaker-embedding models (He et al., CVPR 2016), in WeSpeaker's speaker-verification layout.

The filterbank frames ``[B, T, F]`` are treated as a one-channel image ``[B, 1, F, T]``
(see docs REFERENCE.md, "Architectures"):

- a 3x3 stem convolution ``1 -> m_channels``, batch norm, ReLU; no max-pooling;
- four stages of ``m, 2m, 4m, 8m`` planes with strides 1, 2, 2, 2 on both frequency and time,
  each stride carried by the first block of its stage;
- basic blocks (two 3x3 convolutions, expansion 1) or bottleneck blocks (1x1, 3x3, 1x1,
  expansion 4); the shortcut is a 1x1 convolution plus batch norm where the shape changes;
- the last map ``[B, C, F', T']`` (``F' = ceil(F / 8)``, ``T' = ceil(T / 8)``) is flattened to
  ``[B, C * F', T']``, pooled over time (TSTP by default) and projected to the embedding;
- optionally (``two_emb_layer``) ReLU, batch norm without affine parameters and a second linear
  layer, whose output is then the embedding.

At ``feat_dim`` 80, ``embed_dim`` 256, ``m_channels`` 32 and TSTP the registered models have
6.634 M (ResNet34), 23.792 M (ResNet221) and 28.626 M (ResNet293) parameters, as in WeSpeaker.
Module names are speakernet's own, so WeSpeaker checkpoints need their keys mapped to load.

``torch.export``: mark the frame dimension ``torch.export.Dim.DYNAMIC`` (a named ``Dim`` with a
range is rejected, because the exporter specialises on the pooled map having more than one frame);
the exported program then checks at run time that the input has at least 9 frames.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from speakernet.models.pooling import build_pooling
from speakernet.models.checks import check_feats
from speakernet.models.registry import MODELS

TOTAL_STRIDE = 8
"""Downsampling of frequency and time by the stages (strides 1, 2, 2, 2)."""


def _strided_size(size: int, num_halvings: int) -> int:
    """Size after ``num_halvings`` stride-2 convolutions (3x3 with padding 1, or 1x1): ceil(size / 2) each."""
    for _ in range(num_halvings):
        size = (size + 1) // 2
    return size


class _Shortcut(nn.Module):
    """Projection shortcut: a 1x1 convolution (carrying the stride) followed by batch norm."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Maps ``[B, in_channels, F, T]`` to ``[B, out_channels, F / stride, T / stride]``."""
        return self.bn(self.conv(x))


def _make_shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    return _Shortcut(in_channels, out_channels, stride)


class BasicBlock(nn.Module):
    """Basic residual block: 3x3 conv-BN-ReLU, 3x3 conv-BN, plus the shortcut, then ReLU.

    Args:
        in_channels: Input channels.
        planes: Output channels (expansion 1).
        stride: Stride of the first convolution and of the shortcut, on frequency and time.
    """

    expansion = 1

    def __init__(self, in_channels: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = _make_shortcut(in_channels, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Maps ``[B, in_channels, F, T]`` to ``[B, planes, ceil(F / stride), ceil(T / stride)]``."""
        hidden = torch.relu(self.bn1(self.conv1(x)))
        hidden = self.bn2(self.conv2(hidden))
        return torch.relu(hidden + self.shortcut(x))


class Bottleneck(nn.Module):
    """Bottleneck residual block: 1x1, 3x3 (strided), 1x1 to ``4 * planes``, plus the shortcut, then ReLU.

    Args:
        in_channels: Input channels.
        planes: Width of the inner convolutions; the block outputs ``4 * planes`` channels.
        stride: Stride of the 3x3 convolution and of the shortcut, on frequency and time.
    """

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1):
        super().__init__()
        out_channels = planes * self.expansion
        self.conv1 = nn.Conv2d(in_channels, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_channels, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.shortcut = _make_shortcut(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Maps ``[B, in_channels, F, T]`` to ``[B, 4 * planes, ceil(F / stride), ceil(T / stride)]``."""
        hidden = torch.relu(self.bn1(self.conv1(x)))
        hidden = torch.relu(self.bn2(self.conv2(hidden)))
        hidden = self.bn3(self.conv3(hidden))
        return torch.relu(hidden + self.shortcut(x))


BLOCKS: dict[str, type[BasicBlock] | type[Bottleneck]] = {"basic": BasicBlock, "bottleneck": Bottleneck}
"""Residual block types by name, for :class:`ResNet`'s ``block`` argument."""


class ResNet(nn.Module):
    """ResNet: filterbank frames ``[B, T, F]`` -> speaker embedding ``[B, embed_dim]``.

    Use the registered sizes (``ResNet18`` ... ``ResNet293``) in configs; this class builds any
    depth.

    Args:
        block: ``"basic"`` (two 3x3 convolutions) or ``"bottleneck"`` (1x1-3x3-1x1, expansion 4).
        num_blocks: Blocks in each of the four stages.
        feat_dim: Feature dimension F (80 log-mel bins); at least 8, the frequency downsampling.
        embed_dim: Embedding size.
        m_channels: Planes of the stem and of the first stage (32 in WeSpeaker's recipes; 64 for
            the wider "base 64" models); the stages have ``m, 2m, 4m, 8m`` planes.
        pooling: Registered pooling name (``speakernet.models.pooling.POOLINGS``): ``TSTP`` (mean
            and std, WeSpeaker's choice), ``TAP``, ``ASTP`` or ``MHASP``.
        pooling_args: Further pooling arguments.
        two_emb_layer: Whether ReLU, batch norm (no affine parameters) and a second linear layer
            ``embed_dim -> embed_dim`` follow the first; the second layer's output is returned.
        name: Model name used in error messages.

    Raises:
        ValueError: if ``block`` is unknown, a size is not a positive integer, ``num_blocks`` does not
            have four positive entries, or ``feat_dim`` is below 8.
    """

    def __init__(
        self,
        block: str,
        num_blocks: Sequence[int],
        feat_dim: int = 80,
        embed_dim: int = 256,
        m_channels: int = 32,
        pooling: str = "TSTP",
        pooling_args: Mapping[str, Any] | None = None,
        two_emb_layer: bool = False,
        name: str = "ResNet",
    ):
        super().__init__()
        self.name = name
        if block not in BLOCKS:
            raise ValueError(f"{name}: block must be one of {sorted(BLOCKS)}, got {block!r}")
        for key, value in {"feat_dim": feat_dim, "embed_dim": embed_dim, "m_channels": m_channels}.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}: {key} must be a positive integer, got {value!r}")
        num_blocks = tuple(num_blocks)
        if len(num_blocks) != 4 or any(not isinstance(n, int) or isinstance(n, bool) or n < 1 for n in num_blocks):
            raise ValueError(f"{name}: num_blocks must be four positive integers, got {list(num_blocks)}")
        if feat_dim < TOTAL_STRIDE:
            raise ValueError(f"{name}: feat_dim must be at least {TOTAL_STRIDE} (the stages downsample frequency "
                             f"by {TOTAL_STRIDE}), got {feat_dim}")

        block_type = BLOCKS[block]
        self.feat_dim = feat_dim
        self.embed_dim = embed_dim
        self.two_emb_layer = two_emb_layer
        self.stem_conv = nn.Conv2d(1, m_channels, kernel_size=3, stride=1, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(m_channels)
        stages: list[nn.Module] = []
        in_channels = m_channels
        for stage_index, (count, first_stride) in enumerate(zip(num_blocks, (1, 2, 2, 2))):
            planes = m_channels * 2**stage_index
            blocks: list[nn.Module] = []
            for block_index in range(count):
                blocks.append(block_type(in_channels, planes, first_stride if block_index == 0 else 1))
                in_channels = planes * block_type.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.out_channels = in_channels
        self.out_freq = _strided_size(feat_dim, 3)

        self.pooling = build_pooling(pooling, self.out_channels * self.out_freq, pooling_args)
        self.embedding = nn.Linear(self.pooling.out_dim, embed_dim)
        if two_emb_layer:
            self.second_embedding_bn: nn.Module | None = nn.BatchNorm1d(embed_dim, affine=False)
            self.second_embedding: nn.Module | None = nn.Linear(embed_dim, embed_dim)
        else:
            self.second_embedding_bn = None
            self.second_embedding = None

    def frame_features(self, feats: torch.Tensor) -> torch.Tensor:
        """Computes the frame-level map that the pooling sees.

        Args:
            feats: Features ``[B, T, F]`` (frames x feature bins).

        Returns:
            ``[B, C * F', T']`` with ``C = out_channels``, ``F' = out_freq = ceil(F / 8)`` and
            ``T' = ceil(T / 8)``; channel-major (index ``c * F' + f``).

        Raises:
            ValueError: if ``feats`` is not ``[B, T, feat_dim]`` with T >= 1.
        """
        check_feats(feats, self.feat_dim, self.name)
        hidden = feats.transpose(1, 2).unsqueeze(1)  # [B, 1, F, T]
        hidden = torch.relu(self.stem_bn(self.stem_conv(hidden)))
        hidden = self.stages(hidden)  # [B, C, F', T']
        return hidden.flatten(1, 2)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """Computes embeddings.

        Args:
            feats: Features ``[B, T, F]`` (frames x feature bins), mean-normalised per utterance.

        Returns:
            Embeddings ``[B, embed_dim]`` (not length-normalised); with ``two_emb_layer`` the
            second linear layer's output.

        Raises:
            ValueError: if ``feats`` is not ``[B, T, feat_dim]`` with T >= 1.
        """
        embedding = self.embedding(self.pooling(self.frame_features(feats)))
        if self.second_embedding_bn is not None and self.second_embedding is not None:
            embedding = self.second_embedding(self.second_embedding_bn(torch.relu(embedding)))
        return embedding


class ResNetVariant(ResNet):
    """A named ResNet depth; subclasses set ``BLOCK`` and ``NUM_BLOCKS`` (see :data:`RESNET_DEPTHS`).

    Args:
        feat_dim: Feature dimension F (80 log-mel bins); at least 8.
        embed_dim: Embedding size.
        m_channels: Planes of the stem and of the first stage (32 in WeSpeaker's recipes, 64 for
            the "base 64" models).
        pooling: Registered pooling name (default ``TSTP``).
        pooling_args: Further pooling arguments.
        two_emb_layer: Whether a second embedding layer follows (see :class:`ResNet`).

    Raises:
        ValueError: if a size is not a positive integer or ``feat_dim`` is below 8.
    """

    BLOCK = ""
    NUM_BLOCKS: tuple[int, ...] = ()

    def __init__(
        self,
        feat_dim: int = 80,
        embed_dim: int = 256,
        m_channels: int = 32,
        pooling: str = "TSTP",
        pooling_args: Mapping[str, Any] | None = None,
        two_emb_layer: bool = False,
    ):
        super().__init__(self.BLOCK, self.NUM_BLOCKS, feat_dim=feat_dim, embed_dim=embed_dim, m_channels=m_channels,
                         pooling=pooling, pooling_args=pooling_args, two_emb_layer=two_emb_layer,
                         name=type(self).__name__)


RESNET_DEPTHS: dict[str, tuple[str, tuple[int, int, int, int]]] = {
    "ResNet18": ("basic", (2, 2, 2, 2)),
    "ResNet34": ("basic", (3, 4, 6, 3)),
    "ResNet50": ("bottleneck", (3, 4, 6, 3)),
    "ResNet101": ("bottleneck", (3, 4, 23, 3)),
    "ResNet152": ("bottleneck", (3, 8, 36, 3)),
    "ResNet221": ("bottleneck", (6, 16, 48, 3)),
    "ResNet293": ("bottleneck", (10, 20, 64, 3)),
}
"""Registered depth name -> (block type, blocks in each of the four stages), as in WeSpeaker."""

_PARAMETER_COUNTS = {"ResNet34": "6.634 M", "ResNet221": "23.792 M", "ResNet293": "28.626 M"}
"""Measured parameter counts at the defaults, quoted in the classes' docstrings."""


def _register_depth(name: str) -> type[ResNetVariant]:
    """Creates and registers the :class:`ResNetVariant` subclass ``name`` of :data:`RESNET_DEPTHS`.

    Args:
        name: A key of :data:`RESNET_DEPTHS`; also the class name, so that error messages, TorchScript
            and pickling see ``speakernet.models.resnet.<name>``.

    Returns:
        The registered class.
    """
    block, num_blocks = RESNET_DEPTHS[name]
    doc = f"{name}: {block} blocks ``{list(num_blocks)}``"
    if name in _PARAMETER_COUNTS:
        doc += f"; {_PARAMETER_COUNTS[name]} parameters at the defaults"
    attributes = {"__doc__": doc + ". Arguments: see :class:`ResNetVariant`.", "__module__": __name__,
                  "__qualname__": name, "BLOCK": block, "NUM_BLOCKS": num_blocks}
    variant = type(name, (ResNetVariant,), attributes)
    MODELS.register(name)(variant)
    return variant


# One module-level name per depth, so that each is importable (``from speakernet.models.resnet import ResNet34``).
ResNet18 = _register_depth("ResNet18")
ResNet34 = _register_depth("ResNet34")
ResNet50 = _register_depth("ResNet50")
ResNet101 = _register_depth("ResNet101")
ResNet152 = _register_depth("ResNet152")
ResNet221 = _register_depth("ResNet221")
ResNet293 = _register_depth("ResNet293")
