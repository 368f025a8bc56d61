"""RepVGG speaker-embedding models (Ding et al., CVPR 2021), in WeSpeaker's speaker-verification layout.

A RepVGG block is trained with three parallel branches and re-parameterised for inference into
one 3x3 convolution (see docs REFERENCE.md, "Architectures"):

- training form: ``ReLU(BN(conv3x3(x)) + BN(conv1x1(x)) + BN_id(x))``; the convolutions have no
  bias, and the identity branch ``BN_id`` exists only when input and output channels agree and
  the stride is 1;
- deployed form: ``ReLU(conv3x3(x) + b)``, with each branch's batch norm folded into its kernel
  (``t = gamma / sqrt(var + eps)``, ``K' = K * t``, ``b' = beta - mean * t``), the 1x1 kernel
  zero-padded to 3x3 and the identity written as a 3x3 kernel with a 1 at the centre of the
  matching channel. In eval mode both forms compute the same function.

The filterbank frames ``[B, T, F]`` are a one-channel image ``[B, 1, F, T]``; stage 0 is one
block ``1 -> min(64, C1)`` channels, then four stages of ``C1 .. C4`` channels with strides
1, 1, 2, 2, 2 (stage 0 .. 4) on frequency and time, carried by each stage's first block. The map
``[B, C4, F', T']`` (``F' = ceil(F / 8)``) is flattened to ``[B, C4 * F', T']``, pooled (TSTP by
default) and projected by one linear layer to the embedding.

Inference with a trained checkpoint: build the training form, then either
``load_state_dict(...)`` followed by :meth:`RepVGG.deploy`, or :func:`load_deployed`, which also
takes a state dict saved after deployment.

``torch.export`` (either form): mark the frame dimension ``torch.export.Dim.DYNAMIC``; the exported
program checks at run time that the input has at least 9 frames (see ``speakernet.models.resnet``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from speakernet.models.pooling import build_pooling
from speakernet.models.checks import check_feats
from speakernet.models.registry import MODELS

STAGE_STRIDES = (1, 1, 2, 2, 2)
"""Strides of stage 0 .. 4 (frequency and time); frequency and time are downsampled by 8."""

TOTAL_STRIDE = 8
"""Downsampling of frequency and time by the five stages together."""


class ConvBn(nn.Module):
    """A bias-free 2-d convolution followed by batch norm (one training-form branch).

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Square kernel size (3 or 1).
        stride: Stride on frequency and time.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2,
                              bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Maps ``[B, in_channels, F, T]`` to ``[B, out_channels, ceil(F / stride), ceil(T / stride)]``."""
        return self.bn(self.conv(x))


def _fold_batch_norm(kernel: torch.Tensor, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns the kernel and bias of ``bn(conv(x, kernel))`` with ``bn`` in eval mode (in float64)."""
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("RepVGG: cannot fold a batch norm without running statistics")
    scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
    bias = bn.bias.double() - bn.running_mean.double() * scale
    return kernel.double() * scale.reshape(-1, 1, 1, 1), bias


class RepVGGBlock(nn.Module):
    """A RepVGG block, in training form until :meth:`deploy` fuses it.

    Training form: ``ReLU(BN(conv3x3) + BN(conv1x1) + BN_id)``; deployed: ``ReLU(conv3x3 + bias)``.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        stride: Stride on frequency and time (of all branches).
    """

    __jit_unused_properties__ = ["deployed"]  # TorchScript compiles properties unless told not to

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.branch3x3: nn.Module | None = ConvBn(in_channels, out_channels, 3, stride)
        self.branch1x1: nn.Module | None = ConvBn(in_channels, out_channels, 1, stride)
        has_identity = in_channels == out_channels and stride == 1
        self.identity: nn.Module | None = nn.BatchNorm2d(in_channels) if has_identity else None
        self.fused: nn.Module | None = None

    @property
    def deployed(self) -> bool:
        """Whether the branches have been fused into one convolution."""
        return self.fused is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Maps ``[B, in_channels, F, T]`` to ``[B, out_channels, ceil(F / stride), ceil(T / stride)]``."""
        if self.fused is not None:
            return torch.relu(self.fused(x))
        if self.branch3x3 is None or self.branch1x1 is None:
            raise RuntimeError("RepVGGBlock has neither its branches nor a fused convolution")
        hidden = self.branch3x3(x) + self.branch1x1(x)
        if self.identity is not None:
            hidden = hidden + self.identity(x)
        return torch.relu(hidden)

    @torch.no_grad()
    def equivalent_kernel_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The 3x3 kernel and bias of the single convolution that equals the eval-mode branches.

        Returns:
            ``(kernel [out, in, 3, 3], bias [out])`` in the dtype of the branch weights.

        Raises:
            RuntimeError: if the block is already deployed.
        """
        if not isinstance(self.branch3x3, ConvBn) or not isinstance(self.branch1x1, ConvBn):
            raise RuntimeError("RepVGGBlock is already deployed; its branches are gone")
        weight = self.branch3x3.conv.weight
        kernel, bias = _fold_batch_norm(weight, self.branch3x3.bn)
        kernel_1x1, bias_1x1 = _fold_batch_norm(self.branch1x1.conv.weight, self.branch1x1.bn)
        kernel = kernel + nn.functional.pad(kernel_1x1, [1, 1, 1, 1])
        bias = bias + bias_1x1
        if isinstance(self.identity, nn.BatchNorm2d):
            identity_kernel = torch.zeros(self.in_channels, self.in_channels, 3, 3, dtype=torch.float64,
                                          device=weight.device)
            channels = torch.arange(self.in_channels, device=weight.device)
            identity_kernel[channels, channels, 1, 1] = 1.0
            kernel_id, bias_id = _fold_batch_norm(identity_kernel, self.identity)
            kernel = kernel + kernel_id
            bias = bias + bias_id
        return kernel.to(weight.dtype), bias.to(weight.dtype)

    @torch.no_grad()
    def deploy(self) -> RepVGGBlock:
        """Fuses the branches, in place, into one 3x3 convolution with bias; a no-op if already deployed.

        Uses the batch norms' running statistics, so the fused block equals the training-form
        block in eval mode.

        Returns:
            The block itself.
        """
        if self.fused is not None:
            return self
        kernel, bias = self.equivalent_kernel_bias()
        fused = nn.Conv2d(self.in_channels, self.out_channels, 3, stride=self.stride, padding=1, bias=True,
                          device=kernel.device, dtype=kernel.dtype)
        fused.weight.copy_(kernel)
        fused.bias.copy_(bias)
        self.fused = fused
        self.branch3x3 = None
        self.branch1x1 = None
        self.identity = None
        return self


@MODELS.register("RepVGG")
class RepVGG(nn.Module):
    """RepVGG: filterbank frames ``[B, T, F]`` -> speaker embedding ``[B, embed_dim]``.

    Registered as ``RepVGG`` for any size, e.g. a CPU-sized one (``model: RepVGG``,
    ``model_args: {num_blocks: [2, 2, 4, 2], stage_channels: [8, 16, 32, 64]}``); the published
    sizes are registered under their own names (``RepVGG_TINY_A0``, ``RepVGG_A0``, ``RepVGG_A1``,
    ``RepVGG_B0``, ``RepVGG_B1``). Error messages name the model by its class name.

    Args:
        num_blocks: Blocks in each of stages 1 .. 4.
        stage_channels: Channels of stages 1 .. 4; stage 0 has ``min(64, stage_channels[0])``.
        feat_dim: Feature dimension F (80 log-mel bins); at least 8, the frequency downsampling.
        embed_dim: Embedding size.
        pooling: Registered pooling name (``speakernet.models.pooling.POOLINGS``): ``TSTP`` (mean
            and std, WeSpeaker's choice), ``TAP``, ``ASTP`` or ``MHASP``.
        pooling_args: Further pooling arguments.

    Raises:
        ValueError: if a size is not a positive integer, ``num_blocks`` or ``stage_channels`` does not
            have four positive entries, or ``feat_dim`` is below 8.
    """

    __jit_unused_properties__ = ["deployed"]

    def __init__(
        self,
        num_blocks: Sequence[int],
        stage_channels: Sequence[int],
        feat_dim: int = 80,
        embed_dim: int = 256,
        pooling: str = "TSTP",
        pooling_args: Mapping[str, Any] | None = None,
    ):
        super().__init__()
        name = type(self).__name__
        self.name = name
        for key, value in {"feat_dim": feat_dim, "embed_dim": embed_dim}.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}: {key} must be a positive integer, got {value!r}")
        num_blocks, stage_channels = tuple(num_blocks), tuple(stage_channels)
        for key, values in {"num_blocks": num_blocks, "stage_channels": stage_channels}.items():
            if len(values) != 4 or any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in values):
                raise ValueError(f"{name}: {key} must be four positive integers, got {list(values)}")
        if feat_dim < TOTAL_STRIDE:
            raise ValueError(f"{name}: feat_dim must be at least {TOTAL_STRIDE} (the stages downsample frequency "
                             f"by {TOTAL_STRIDE}), got {feat_dim}")

        self.feat_dim = feat_dim
        self.embed_dim = embed_dim
        stem_channels = min(64, stage_channels[0])
        self.stage0 = RepVGGBlock(1, stem_channels, STAGE_STRIDES[0])
        stages: list[nn.Module] = []
        in_channels = stem_channels
        for count, channels, first_stride in zip(num_blocks, stage_channels, STAGE_STRIDES[1:]):
            blocks: list[nn.Module] = []
            for block_index in range(count):
                blocks.append(RepVGGBlock(in_channels, channels, first_stride if block_index == 0 else 1))
                in_channels = channels
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.out_channels = in_channels
        freq = feat_dim
        for stride in STAGE_STRIDES:
            freq = (freq + stride - 1) // stride  # a 3x3 convolution with padding 1: ceil(F / stride)
        self.out_freq = freq

        self.pooling = build_pooling(pooling, self.out_channels * self.out_freq, pooling_args)
        self.embedding = nn.Linear(self.pooling.out_dim, embed_dim)
        # WeSpeaker's initialisation of the convolutions (batch norms keep weight 1, bias 0).
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def blocks(self) -> list[RepVGGBlock]:
        """Every RepVGG block, stage 0 first."""
        return [module for module in self.modules() if isinstance(module, RepVGGBlock)]

    @property
    def deployed(self) -> bool:
        """Whether every block has been re-parameterised by :meth:`deploy`."""
        return all(block.deployed for block in self.blocks())

    def deploy(self) -> RepVGG:
        """Re-parameterises every block, in place, into a single 3x3 convolution with bias.

        The batch norms' running statistics are folded in, so in eval mode the deployed model
        gives the same embeddings as the training form (up to float rounding). The branch modules
        are removed (the state dict then has ``*.fused.weight`` / ``*.fused.bias`` keys instead).
        Calling it again is a no-op. The train/eval mode is left as it was; use the deployed
        model for inference (``model.eval()``), not for further training.

        Returns:
            The model itself.
        """
        for block in self.blocks():
            block.deploy()
        return self

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
        hidden = self.stage0(feats.transpose(1, 2).unsqueeze(1))  # [B, 1, F, T] -> [B, C0, F, T]
        hidden = self.stages(hidden)  # [B, C, F', T']
        return hidden.flatten(1, 2)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """Computes embeddings.

        Args:
            feats: Features ``[B, T, F]`` (frames x feature bins), mean-normalised per utterance.

        Returns:
            Embeddings ``[B, embed_dim]`` (not length-normalised).

        Raises:
            ValueError: if ``feats`` is not ``[B, T, feat_dim]`` with T >= 1.
        """
        return self.embedding(self.pooling(self.frame_features(feats)))


def load_deployed(model: RepVGG, state_dict: Mapping[str, torch.Tensor]) -> RepVGG:
    """Loads a training-form or a deployed-form state dict and returns the model deployed.

    A training-form state dict (branch weights and batch-norm statistics, as saved during
    training) is loaded into the training-form ``model``, which is then deployed. A state dict
    saved after :meth:`RepVGG.deploy` (``*.fused.*`` keys) is loaded after deploying ``model``.

    Args:
        model: A RepVGG of the same configuration as the one that produced ``state_dict``.
        state_dict: Its state dict (``model.state_dict()``, without a checkpoint's prefixes).

    Returns:
        ``model`` itself, deployed, holding the loaded weights; still to be put in eval mode.

    Raises:
        ValueError: if ``state_dict`` is in training form but ``model`` is already (partly) deployed.
        RuntimeError: if the keys or shapes do not match the model (from ``load_state_dict``).
    """
    if any(".fused." in key for key in state_dict):
        model.deploy()
        model.load_state_dict(state_dict)
        return model
    if any(block.deployed for block in model.blocks()):
        raise ValueError(f"{model.name}: a training-form state dict needs a training-form model, "
                         "but this one is already deployed")
    model.load_state_dict(state_dict)
    return model.deploy()


class RepVGGVariant(RepVGG):
    """A named RepVGG size; subclasses set ``NUM_BLOCKS`` and ``STAGE_CHANNELS``.

    Args:
        feat_dim: Feature dimension F (80 log-mel bins); at least 8.
        embed_dim: Embedding size.
        pooling: Registered pooling name (default ``TSTP``).
        pooling_args: Further pooling arguments.

    Raises:
        ValueError: if a size is not a positive integer or ``feat_dim`` is below 8.
    """

    NUM_BLOCKS: tuple[int, ...] = ()
    STAGE_CHANNELS: tuple[int, ...] = ()

    def __init__(
        self,
        feat_dim: int = 80,
        embed_dim: int = 256,
        pooling: str = "TSTP",
        pooling_args: Mapping[str, Any] | None = None,
    ):
        super().__init__(self.NUM_BLOCKS, self.STAGE_CHANNELS, feat_dim=feat_dim, embed_dim=embed_dim,
                         pooling=pooling, pooling_args=pooling_args)


# Channels are int(base * width) with RepVGG's base widths 64/128/256/512 and its width multipliers.
@MODELS.register("RepVGG_TINY_A0")
class RepVGG_TINY_A0(RepVGGVariant):
    """WeSpeaker's tiny RepVGG: blocks ``[3, 4, 23, 3]``, width 0.5 (32/64/128/256 channels, stage 0 32).

    6.834 M parameters in training form, 6.264 M deployed, at the defaults.
    """

    NUM_BLOCKS = (3, 4, 23, 3)
    STAGE_CHANNELS = (32, 64, 128, 256)


@MODELS.register("RepVGG_A0")
class RepVGG_A0(RepVGGVariant):
    """RepVGG-A0: blocks ``[2, 4, 14, 1]``, widths 0.75/0.75/0.75/2.5 (48/96/192/1280 channels, stage 0 48)."""

    NUM_BLOCKS = (2, 4, 14, 1)
    STAGE_CHANNELS = (48, 96, 192, 1280)


@MODELS.register("RepVGG_A1")
class RepVGG_A1(RepVGGVariant):
    """RepVGG-A1: blocks ``[2, 4, 14, 1]``, widths 1/1/1/2.5 (64/128/256/1280 channels, stage 0 64)."""

    NUM_BLOCKS = (2, 4, 14, 1)
    STAGE_CHANNELS = (64, 128, 256, 1280)


@MODELS.register("RepVGG_B0")
class RepVGG_B0(RepVGGVariant):
    """RepVGG-B0: blocks ``[4, 6, 16, 1]``, widths 1/1/1/2.5 (64/128/256/1280 channels, stage 0 64)."""

    NUM_BLOCKS = (4, 6, 16, 1)
    STAGE_CHANNELS = (64, 128, 256, 1280)


@MODELS.register("RepVGG_B1")
class RepVGG_B1(RepVGGVariant):
    """RepVGG-B1: blocks ``[4, 6, 16, 1]``, widths 2/2/2/4 (128/256/512/2048 channels, stage 0 64).

    65.85 M parameters in training form, 60.27 M deployed, at the defaults.
    """

    NUM_BLOCKS = (4, 6, 16, 1)
    STAGE_CHANNELS = (128, 256, 512, 2048)
