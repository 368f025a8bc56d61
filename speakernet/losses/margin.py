"""Classification heads for speaker training: softmax, cosine softmax, AM- and AAM-softmax.

Every head maps ``(embeddings [B, D], labels [B])`` to ``(loss, logits [B, num_classes])``:

- ``loss`` is the mean cross entropy of the *training* logits, in which the target class
  carries the margin (for the margin heads);
- ``logits`` are margin-free (``scale * cos(theta)`` for the cosine heads). Use them for
  training accuracy: with the margin, accuracy would depend on the current margin of the
  schedule rather than on how well the speakers are separated.

Every head also takes ``label_smoothing`` (0 by default; SpeakerNet reports that smoothing does
not help margin heads, but it is a common setting for the plain softmax) and has
``correct(logits, labels)``, the per-prediction hits the trainer counts for its accuracy.

The margin heads keep their margin in a ``margin`` attribute that a margin schedule changes
during training (``head.update_margin(m)`` or ``head.margin = m``); :func:`margin_schedule` is
WeSpeaker's exponential warm-up of the margin.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from speakernet.models.registry import HEADS

__all__ = ["AAMSoftmax", "AMSoftmax", "CosineSoftmax", "Softmax", "margin_schedule"]


def check_label_smoothing(value: float, head: str) -> float:
    """Returns ``value`` as a float after checking it is in [0, 1).

    Raises:
        ValueError: naming the head, if it is not.
    """
    if not 0.0 <= float(value) < 1.0:
        raise ValueError(f"{head}: label_smoothing must be in [0, 1), got {value}")
    return float(value)


def classification_correct(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-example hits of a classifier: ``argmax(logits) == label``, ``[B]`` bool."""
    return logits.argmax(-1) == labels


def _check_batch(embeddings: torch.Tensor, labels: torch.Tensor, embed_dim: int, head: str) -> None:
    if embeddings.dim() != 2 or embeddings.shape[1] != embed_dim:
        raise ValueError(f"{head} expects embeddings [batch, {embed_dim}], got {list(embeddings.shape)}")
    if labels.dim() != 1 or labels.shape[0] != embeddings.shape[0]:
        raise ValueError(
            f"{head} expects labels [batch] matching embeddings [{embeddings.shape[0]}, ...], got {list(labels.shape)}"
        )
    if labels.dtype != torch.long:
        raise ValueError(f"{head} expects int64 class labels, got {labels.dtype}")


class NoMargin:
    """For heads without a margin: ``margin`` is 0 and a margin schedule may only set 0."""

    @property
    def margin(self) -> float:
        """The margin (always 0)."""
        return 0.0

    def update_margin(self, margin: float) -> None:
        """Only 0 is accepted.

        Raises:
            ValueError: if ``margin`` is not 0 (a margin schedule is configured for a head without one).
        """
        if margin != 0.0:
            raise ValueError(f"{type(self).__name__} has no margin; cannot set it to {margin}")


class _CosineHead(NoMargin, nn.Module):
    """Shared part of the cosine heads: class centres on the unit sphere and a logit scale.

    Args:
        embed_dim: Embedding size D.
        num_classes: Number of training classes (speakers).
        scale: Multiplier s of the cosines (the logits' inverse temperature).
        label_smoothing: Label smoothing of the cross entropy, in [0, 1).
    """

    def __init__(self, embed_dim: int, num_classes: int, scale: float, label_smoothing: float = 0.0):
        super().__init__()
        self.label_smoothing = check_label_smoothing(label_smoothing, type(self).__name__)
        if embed_dim < 1 or num_classes < 1:
            raise ValueError(f"embed_dim ({embed_dim}) and num_classes ({num_classes}) must be positive")
        if scale <= 0:
            raise ValueError(f"scale must be positive, got {scale}")
        self.embed_dim = embed_dim
        self.num_classes = num_classes
        self.scale = float(scale)
        self.weight = nn.Parameter(torch.empty(num_classes, embed_dim))
        nn.init.xavier_uniform_(self.weight)

    def cosine(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Cosine between each embedding and each class centre, ``[B, num_classes]`` in [-1, 1]."""
        # At least float32, also under autocast: the margin acts on cosines near +-1, which
        # float16/bfloat16 (3-4 significant digits) cannot resolve.
        dtype = torch.promote_types(embeddings.dtype, torch.float32)
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            cosine = F.linear(F.normalize(embeddings.to(dtype)), F.normalize(self.weight.to(dtype)))
        return cosine.clamp(-1.0, 1.0)

    def target_logit(self, target_cosine: torch.Tensor) -> torch.Tensor:
        """The (unscaled) training logit of the target class given its cosine; no margin here."""
        return target_cosine

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Computes the loss and the margin-free logits.

        Args:
            embeddings: ``[B, embed_dim]`` (any norm; they are length-normalised here).
            labels: ``[B]`` int64 class indices in ``[0, num_classes)``.

        Returns:
            ``(loss, logits)``: the mean cross entropy of the margin-carrying training logits
            (a scalar), and the margin-free logits ``scale * cos(theta)``, ``[B, num_classes]``.

        Raises:
            ValueError: if the shapes or the label type do not fit.
        """
        _check_batch(embeddings, labels, self.embed_dim, type(self).__name__)
        cosine = self.cosine(embeddings)
        index = labels.unsqueeze(1)
        target = self.target_logit(cosine.gather(1, index))
        training_logits = cosine.scatter(1, index, target) * self.scale
        loss = F.cross_entropy(training_logits, labels, label_smoothing=self.label_smoothing)
        return loss, cosine * self.scale

    def correct(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Per-example hits, ``[B]`` bool (see :func:`classification_correct`)."""
        return classification_correct(logits, labels)

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, num_classes={self.num_classes}, scale={self.scale}, margin={self.margin}"


@HEADS.register("CosineSoftmax")
class CosineSoftmax(_CosineHead):
    """Normalised (cosine) softmax: logits ``s * cos(theta_j)``, no margin.

    Args:
        embed_dim: Embedding size D.
        num_classes: Number of training classes (speakers).
        scale: Multiplier s of the cosines.
        label_smoothing: Label smoothing of the cross entropy, in [0, 1).
    """

    def __init__(self, embed_dim: int, num_classes: int, scale: float = 32.0, label_smoothing: float = 0.0):
        super().__init__(embed_dim, num_classes, scale, label_smoothing)


class _MarginHead(_CosineHead):
    """A cosine head with a settable margin ``m >= 0``."""

    def __init__(self, embed_dim: int, num_classes: int, scale: float, margin: float, label_smoothing: float = 0.0):
        super().__init__(embed_dim, num_classes, scale, label_smoothing)
        self._margin = 0.0
        self.update_margin(margin)

    @property
    def margin(self) -> float:
        """The current margin (radians for AAM, cosine units for AM)."""
        return self._margin

    @margin.setter
    def margin(self, value: float) -> None:
        self.update_margin(value)

    def update_margin(self, margin: float) -> None:
        """Sets the margin used from the next forward pass on.

        Args:
            margin: The new margin.

        Raises:
            ValueError: if ``margin`` is negative or too large for this head.
        """
        self._margin = self._validate_margin(float(margin))

    def _validate_margin(self, margin: float) -> float:
        if not 0.0 <= margin < 1.0:
            raise ValueError(f"{type(self).__name__}: margin must be in [0, 1), got {margin}")
        return margin


@HEADS.register("AMSoftmax")
class AMSoftmax(_MarginHead):
    """Additive-margin softmax (CosFace): the target logit is ``s * (cos(theta_y) - m)``.

    Args:
        embed_dim: Embedding size D.
        num_classes: Number of training classes (speakers).
        scale: Multiplier s of the cosines.
        margin: Additive cosine margin m, in [0, 1).
        label_smoothing: Label smoothing of the cross entropy, in [0, 1).
    """

    def __init__(self, embed_dim: int, num_classes: int, scale: float = 32.0, margin: float = 0.2,
                 label_smoothing: float = 0.0):
        super().__init__(embed_dim, num_classes, scale, margin, label_smoothing)

    def target_logit(self, target_cosine: torch.Tensor) -> torch.Tensor:
        """``cos(theta_y) - m``."""
        return target_cosine - self._margin


@HEADS.register("AAMSoftmax")
class AAMSoftmax(_MarginHead):
    """Additive angular-margin softmax (ArcFace): the target logit is ``s * cos(theta_y + m)``.

    ``cos(theta + m)`` stops decreasing once ``theta + m > pi``, so for ``theta > pi - m`` (that
    is ``cos(theta) < cos(pi - m)``) the target logit is ``cos(theta) - (1 + cos(pi - m))``
    instead, as in WeSpeaker: this equals ``cos(theta + m)`` at ``theta = pi - m`` and keeps
    decreasing. With ``easy_margin`` the margin is applied only where ``cos(theta) > 0``.

    Args:
        embed_dim: Embedding size D.
        num_classes: Number of training classes (speakers).
        scale: Multiplier s of the cosines.
        margin: Angular margin m in radians, in [0, pi/2).
        easy_margin: Apply the margin only for ``theta < pi/2``.
        label_smoothing: Label smoothing of the cross entropy, in [0, 1).
    """

    def __init__(
        self,
        embed_dim: int,
        num_classes: int,
        scale: float = 32.0,
        margin: float = 0.2,
        easy_margin: bool = False,
        label_smoothing: float = 0.0,
    ):
        super().__init__(embed_dim, num_classes, scale, margin, label_smoothing)
        self.easy_margin = easy_margin

    def _validate_margin(self, margin: float) -> float:
        if not 0.0 <= margin < math.pi / 2:
            raise ValueError(f"{type(self).__name__}: margin must be in [0, pi/2) radians, got {margin}")
        return margin

    def target_logit(self, target_cosine: torch.Tensor) -> torch.Tensor:
        """``cos(theta_y + m)``, with the fallback described in the class docstring."""
        return additive_angular(target_cosine, self._margin, self.easy_margin)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", easy_margin={self.easy_margin}"


def additive_angular(cosine: torch.Tensor, margin: float, easy_margin: bool = False) -> torch.Tensor:
    """``cos(theta + m)`` of cosines, with WeSpeaker's fallback past ``theta = pi - m`` (see AAMSoftmax).

    Args:
        cosine: Cosines, any shape, in [-1, 1].
        margin: Angular margin m in radians (a negative m moves the angle the other way).
        easy_margin: Keep ``cos(theta)`` where ``cos(theta) <= 0``.

    Returns:
        The shifted cosines, same shape.
    """
    # Floor 1 - cos^2 above 0: sqrt has an infinite gradient at 0 (theta = 0 or pi).
    sine = torch.sqrt((1.0 - cosine * cosine).clamp(min=1e-12))
    shifted = cosine * math.cos(margin) - sine * math.sin(margin)
    if easy_margin:
        return torch.where(cosine > 0.0, shifted, cosine)
    if margin <= 0.0:  # the angle shrinks: cos(theta - m') is monotone on [0, pi], no fallback needed
        return shifted
    threshold = math.cos(math.pi - margin)
    return torch.where(cosine > threshold, shifted, cosine - (1.0 + threshold))


@HEADS.register("Softmax")
class Softmax(NoMargin, nn.Module):
    """Plain softmax: an affine layer on the (unnormalised) embeddings, no margin.

    Args:
        embed_dim: Embedding size D.
        num_classes: Number of training classes (speakers).
        label_smoothing: Label smoothing of the cross entropy, in [0, 1).
    """

    def __init__(self, embed_dim: int, num_classes: int, label_smoothing: float = 0.0):
        super().__init__()
        if embed_dim < 1 or num_classes < 1:
            raise ValueError(f"embed_dim ({embed_dim}) and num_classes ({num_classes}) must be positive")
        self.label_smoothing = check_label_smoothing(label_smoothing, "Softmax")
        self.embed_dim = embed_dim
        self.num_classes = num_classes
        self.classifier = nn.Linear(embed_dim, num_classes)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Computes the loss and the logits.

        Args:
            embeddings: ``[B, embed_dim]``.
            labels: ``[B]`` int64 class indices.

        Returns:
            ``(loss, logits)``: mean cross entropy and the logits ``[B, num_classes]``.

        Raises:
            ValueError: if the shapes or the label type do not fit.
        """
        _check_batch(embeddings, labels, self.embed_dim, "Softmax")
        logits = self.classifier(embeddings)
        return F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing), logits

    def correct(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Per-example hits, ``[B]`` bool (see :func:`classification_correct`)."""
        return classification_correct(logits, labels)


def margin_schedule(
    epoch: float,
    final_margin: float,
    increase_start_epoch: int,
    fix_start_epoch: int,
    initial_margin: float = 0.0,
    increase_type: str = "exp",
) -> float:
    """The margin at a point of training, WeSpeaker-style.

    The margin is ``initial_margin`` before epoch ``increase_start_epoch``, rises towards
    ``final_margin`` during epochs ``increase_start_epoch .. fix_start_epoch - 1`` and is
    ``final_margin`` from epoch ``fix_start_epoch`` on. With ``t`` the epochs elapsed since the
    rise began and ``T = fix_start_epoch - increase_start_epoch``, the rise is
    ``initial + (final - initial) * (1 - 0.001 ** (t / T))`` ("exp", fast at first) or
    ``initial + (final - initial) * t / T`` ("linear").

    Args:
        epoch: Training progress in epochs completed, a float: ``global_step / steps_per_epoch``
            (0.0 at the start of training, 19.5 halfway through the 20th epoch).
        final_margin: Margin from ``fix_start_epoch`` on.
        increase_start_epoch: 1-based number of the epoch in which the margin starts rising
            (as in WeSpeaker configs: 20 means after 19 epochs).
        fix_start_epoch: 1-based number of the first epoch with ``final_margin``.
        initial_margin: Margin before the rise.
        increase_type: "exp" or "linear".

    Returns:
        The margin to set on the head (``head.update_margin``).

    Raises:
        ValueError: on a negative ``epoch``, ``fix_start_epoch < increase_start_epoch`` or an
            unknown ``increase_type``.
    """
    if epoch < 0:
        raise ValueError(f"margin_schedule: epoch must be >= 0, got {epoch}")
    if increase_start_epoch < 1 or fix_start_epoch < increase_start_epoch:
        raise ValueError(
            "margin_schedule: need 1 <= increase_start_epoch <= fix_start_epoch, "
            f"got {increase_start_epoch} and {fix_start_epoch}"
        )
    if increase_type not in ("exp", "linear"):
        raise ValueError(f"margin_schedule: increase_type must be 'exp' or 'linear', got {increase_type!r}")
    elapsed = epoch - (increase_start_epoch - 1)
    span = fix_start_epoch - increase_start_epoch
    if elapsed >= span:  # also covers span == 0: a jump straight to the final margin
        return final_margin
    if elapsed <= 0:
        return initial_margin
    fraction = elapsed / span
    ratio = 1.0 - 0.001**fraction if increase_type == "exp" else fraction
    return initial_margin + (final_margin - initial_margin) * ratio
