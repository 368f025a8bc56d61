"""Deep Speaker's ResCNN (Li et al., "Deep Speaker: an End-to-End Neural Speaker Embedding System",
arXiv:1705.02304, 2017).

The layout follows the paper's Table 1 and Philippe Rémy's Keras implementation
(``philipperemy/deep-speaker``, ``deep_speaker/conv_models.py``):

- the features are a one-channel image, time x frequency;
- four stages of 64, 128, 256 and 512 channels; each opens with a 5x5 convolution of stride 2
  (time and frequency), BN and a clipped ReLU ``min(max(x, 0), 20)``, followed by three residual
  blocks ``3x3 conv -> BN -> clipped ReLU -> 3x3 conv -> BN -> clipped ReLU``, plus the input,
  then a clipped ReLU (the Keras code clips the branch both before and after the addition);
- time and frequency shrink 16-fold (``ceil``); the map is reshaped so that the remaining
  frequency bins join the channels (64 bins -> 4 x 512 = 2048 per frame, the paper's 2048 x 512
  affine layer), averaged over time (a registered pooling, ``TAP`` by default), projected by an
  affine layer to 512 and length-normalised.

Where this deviates from the Keras code, on purpose: the convolutions have no bias (each one feeds
a batch norm, which cancels a bias; Keras adds 6,720 such parameters), padding is symmetric
(Keras's "same" pads stride-2 convolutions of even inputs more at the end), and batch norm keeps
PyTorch's defaults (eps 1e-5, momentum 0.1; Keras: 1e-3, 0.99). The L2 weight decay (1e-4) that
the Keras code attaches to every convolution belongs in the optimiser. Pooled features are ordered
frequency-major, as the Keras reshape orders them.
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


def clipped_relu(x: torch.Tensor) -> torch.Tensor:
    """Deep Speaker's clipped ReLU, ``min(max(x, 0), 20)``."""
    # A literal, not a module constant: TorchScript cannot read globals.
    return torch.clamp(x, min=0.0, max=20.0)


class ClippedResBlock(nn.Module):
    """Residual block with an identity shortcut and clipped ReLUs.

    ``3x3 conv -> BN -> clip -> 3x3 conv -> BN -> clip``, plus the input, then clip.

    Args:
        channels: Input and output channels.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Maps ``[B, channels, T, F]`` to ``[B, channels, T, F]``."""
        out = clipped_relu(self.bn1(self.conv1(x)))
        out = clipped_relu(self.bn2(self.conv2(out)))
        return clipped_relu(out + x)


class ResCNNStage(nn.Module):
    """A 5x5 stride-2 convolution with BN and clipped ReLU, then ``num_blocks`` residual blocks.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        num_blocks: Residual blocks after the strided convolution.
    """

    def __init__(self, in_channels: int, out_channels: int, num_blocks: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 5, stride=2, padding=2, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.blocks = nn.Sequential(*[ClippedResBlock(out_channels) for _ in range(num_blocks)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Maps ``[B, in_channels, T, F]`` to ``[B, out_channels, ceil(T / 2), ceil(F / 2)]``."""
        return self.blocks(clipped_relu(self.bn(self.conv(x))))


@MODELS.register("ResCNN")
class ResCNN(nn.Module):
    """Deep Speaker's ResCNN: frames ``[B, T, F]`` -> unit-length embedding ``[B, embed_dim]``.

    Parameter counts (measured, no classifier): 24,427,712 with the defaults (80 bins: the
    affine layer sees 5 x 512 = 2560 inputs) and 24,165,568 at ``feat_dim=64`` (the paper's and
    the Keras code's 64 filterbanks, 4 x 512 = 2048 inputs). At 64 bins the Keras model has
    24,172,288 trainable parameters (6,720 more: the conv biases), plus 13,440 batch-norm
    statistics that are not trainable; the paper puts the ResCNN at about 24 M.

    Args:
        feat_dim: Feature dimension F (Deep Speaker used 64 filterbanks).
        embed_dim: Embedding size (512).
        channels: Channels of the stages; each stage halves time and frequency.
        blocks_per_stage: Residual blocks in each stage.
        pooling: Registered pooling name (``speakernet.models.pooling.POOLINGS``); ``TAP``
            (temporal average) in Deep Speaker. It sees ``channels[-1] * ceil(F / 2**stages)``
            features per frame.
        pooling_args: Further pooling arguments.

    Raises:
        ValueError: if a size is not positive or ``channels`` is empty.
        KeyError: if ``pooling`` is not a registered pooling (the message lists them).
        TypeError: if ``pooling_args`` holds an argument the pooling does not take.
    """

    def __init__(
        self,
        feat_dim: int = 80,
        embed_dim: int = 512,
        channels: Sequence[int] = (64, 128, 256, 512),
        blocks_per_stage: int = 3,
        pooling: str = "TAP",
        pooling_args: Mapping[str, Any] | None = None,
    ):
        super().__init__()
        for key, value in {"feat_dim": feat_dim, "embed_dim": embed_dim}.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ResCNN: {key} must be a positive integer, got {value!r}")
        if not isinstance(blocks_per_stage, int) or isinstance(blocks_per_stage, bool) or blocks_per_stage < 0:
            raise ValueError(f"ResCNN: blocks_per_stage must be a non-negative integer, got {blocks_per_stage!r}")
        if len(channels) < 1 or any(not isinstance(c, int) or isinstance(c, bool) or c < 1 for c in channels):
            raise ValueError(f"ResCNN: channels must be a non-empty list of positive integers, got {list(channels)}")

        self.feat_dim = feat_dim
        self.embed_dim = embed_dim
        stages: list[nn.Module] = []
        in_channels = 1
        freq = feat_dim
        for out_channels in channels:
            stages.append(ResCNNStage(in_channels, out_channels, blocks_per_stage))
            in_channels = out_channels
            freq = (freq - 1) // 2 + 1  # 5-wide, stride 2, padding 2: ceil(F / 2)
        self.stages = nn.Sequential(*stages)
        self.frame_dim = in_channels * freq
        self.pooling = build_pooling(pooling, self.frame_dim, pooling_args)
        self.affine = nn.Linear(self.pooling.out_dim, embed_dim)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """Computes embeddings.

        Args:
            feats: Features ``[B, T, F]`` (frames x feature bins); any T >= 1 (the stages leave
                ``ceil(T / 16)`` frames with four stages). For ``torch.export`` with a dynamic frame
                dimension, give it ``min=2 ** len(channels) + 1`` (17 by default; export needs at
                least 2 frames after the stages).

        Returns:
            Embeddings ``[B, embed_dim]`` of unit L2 norm.

        Raises:
            ValueError: if ``feats`` is not ``[B, T, feat_dim]`` with T >= 1.
        """
        check_feats(feats, self.feat_dim, "ResCNN")
        maps = self.stages(feats.unsqueeze(1))  # [B, C, T', F']
        batch, channels, frames, freq = maps.shape
        # Frequency joins the channels, frequency-major like the Keras reshape: [B, T', F' * C], then
        # viewed as [B, F' * C, T'] for the pooling. (Reshaping to [B, F' * C, T'] directly makes
        # torch.export guard on the symbolic frame count and refuse dynamic frames.)
        frame_features = maps.permute(0, 2, 3, 1).reshape(batch, frames, freq * channels).transpose(1, 2)
        return F.normalize(self.affine(self.pooling(frame_features)), p=2.0, dim=1, eps=1e-12)
