"""The x-vector TDNN (Snyder et al., "X-vectors: Robust DNN Embeddings for Speaker Recognition",
ICASSP 2018).

The layout follows WeSpeaker's ``XVEC`` (Kaldi's x-vector network; see docs REFERENCE.md,
"Architectures"):

- five frame layers, each ``Conv1d (with bias) -> ReLU -> BN(affine=False)``, with kernel widths
  5, 3, 3, 1, 1 and dilations 1, 2, 3, 1, 1, widths ``hid_dim`` x 4 then ``stats_dim``, and no
  padding, so the receptive field is 15 frames and T frames give T - 14 (200 -> 186);
- a registered pooling (statistics pooling, TSTP, in the published model);
- ``seg_1`` Linear to ``embed_dim`` (embedding "a") -> ReLU -> BN(affine=False) -> ``seg_2``
  Linear to ``embed_dim`` (embedding "b").

WeSpeaker extracts b; Kaldi extracts ``tdnn6.affine``, which is a. ``embedding_layer`` picks the
one :meth:`XVEC.forward` returns; both layers always exist, so one checkpoint serves both. With
the defaults (80-dim features) the model has 4.61 M parameters (4,610,524 measured; WeSpeaker
4.61 M).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from speakernet.models.pooling import build_pooling
from speakernet.models.checks import check_feats
from speakernet.models.registry import MODELS

FRAME_KERNELS = (5, 3, 3, 1, 1)
"""Kernel widths of the five frame layers, in frames."""

FRAME_DILATIONS = (1, 2, 3, 1, 1)
"""Dilations of the five frame layers, in frames."""

RECEPTIVE_FIELD = 1 + sum((kernel - 1) * dilation for kernel, dilation in zip(FRAME_KERNELS, FRAME_DILATIONS))
"""Frames one output frame of the frame layers sees (15); shorter inputs give no output frame."""


class TdnnLayer(nn.Module):
    """Kaldi-style TDNN layer: ``Conv1d (with bias) -> ReLU -> BN(affine=False)``, no padding.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Context width in frames.
        dilation: Dilation in frames.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1):
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, dilation=dilation)
        # No affine parameters, as in Kaldi's batchnorm component.
        self.bn = nn.BatchNorm1d(out_channels, affine=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Maps ``[B, in_channels, T]`` to ``[B, out_channels, T - dilation * (kernel_size - 1)]``."""
        return self.bn(torch.relu(self.conv(x)))


@MODELS.register("XVEC")
class XVEC(nn.Module):
    """X-vector TDNN: filterbank frames ``[B, T, F]`` -> speaker embedding ``[B, embed_dim]``.

    Args:
        feat_dim: Feature dimension F.
        hid_dim: Width of the first four frame layers.
        stats_dim: Width of the last frame layer (the pooling's input channels).
        embed_dim: Width of both segment layers, i.e. of either embedding.
        pooling: Registered pooling name (``speakernet.models.pooling.POOLINGS``); ``TSTP`` in the
            published model.
        pooling_args: Further pooling arguments.
        embedding_layer: ``"b"`` returns the output of ``seg_2`` (WeSpeaker's extraction), ``"a"``
            the output of ``seg_1`` (Kaldi's ``tdnn6.affine``). Train with ``"b"``: with ``"a"``,
            ``seg_2`` does not take part and gets no gradient.

    Raises:
        ValueError: if a size is not positive or ``embedding_layer`` is not ``"a"`` or ``"b"``.
        KeyError: if ``pooling`` is not a registered pooling (the message lists them).
        TypeError: if ``pooling_args`` holds an argument the pooling does not take.
    """

    def __init__(
        self,
        feat_dim: int = 80,
        hid_dim: int = 512,
        stats_dim: int = 1500,
        embed_dim: int = 512,
        pooling: str = "TSTP",
        pooling_args: Mapping[str, Any] | None = None,
        embedding_layer: str = "b",
    ):
        super().__init__()
        sizes = {"feat_dim": feat_dim, "hid_dim": hid_dim, "stats_dim": stats_dim, "embed_dim": embed_dim}
        for key, value in sizes.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"XVEC: {key} must be a positive integer, got {value!r}")
        if embedding_layer not in ("a", "b"):
            raise ValueError(f"XVEC: embedding_layer must be 'a' (seg_1) or 'b' (seg_2), got {embedding_layer!r}")

        self.feat_dim = feat_dim
        self.embed_dim = embed_dim
        self.embedding_layer = embedding_layer
        self.receptive_field = RECEPTIVE_FIELD
        widths = [feat_dim, hid_dim, hid_dim, hid_dim, hid_dim, stats_dim]
        self.frame_layers = nn.Sequential(*[
            TdnnLayer(widths[index], widths[index + 1], kernel, dilation)
            for index, (kernel, dilation) in enumerate(zip(FRAME_KERNELS, FRAME_DILATIONS))
        ])
        self.pooling = build_pooling(pooling, stats_dim, pooling_args)
        self.seg_1 = nn.Linear(self.pooling.out_dim, embed_dim)
        self.seg_bn_1 = nn.BatchNorm1d(embed_dim, affine=False)
        self.seg_2 = nn.Linear(embed_dim, embed_dim)

    def _check_feats(self, feats: torch.Tensor) -> None:
        check_feats(feats, self.feat_dim, "XVEC", self.receptive_field, " (its receptive field)")

    def frame_features(self, feats: torch.Tensor) -> torch.Tensor:
        """Runs the frame layers.

        Args:
            feats: Features ``[B, T, F]`` with T >= 15.

        Returns:
            Frame-level features ``[B, stats_dim, T - 14]``.

        Raises:
            ValueError: if ``feats`` is not ``[B, T, feat_dim]`` with T >= 15.
        """
        self._check_feats(feats)
        return self.frame_layers(feats.transpose(1, 2))

    def segment_embeddings(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Computes both embeddings.

        Args:
            feats: Features ``[B, T, F]`` with T >= 15, mean-normalised per utterance.

        Returns:
            ``(a, b)``, each ``[B, embed_dim]``: the ``seg_1`` output (before its ReLU) and the
            ``seg_2`` output.

        Raises:
            ValueError: if ``feats`` is not ``[B, T, feat_dim]`` with T >= 15.
        """
        embedding_a = self.seg_1(self.pooling(self.frame_features(feats)))
        embedding_b = self.seg_2(self.seg_bn_1(torch.relu(embedding_a)))
        return embedding_a, embedding_b

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """Computes embeddings.

        Args:
            feats: Features ``[B, T, F]`` (frames x feature bins) with T >= 15, mean-normalised
                per utterance. For ``torch.export`` with a dynamic frame dimension, give it
                ``min=16`` (export needs at least 2 frames after the frame layers).

        Returns:
            Embeddings ``[B, embed_dim]`` from the layer chosen by ``embedding_layer`` (not
            length-normalised).

        Raises:
            ValueError: if ``feats`` is not ``[B, T, feat_dim]`` with T >= 15.
        """
        if self.embedding_layer == "a":
            return self.seg_1(self.pooling(self.frame_features(feats)))
        return self.segment_embeddings(feats)[1]
