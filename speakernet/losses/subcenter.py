"""Sub-center margin heads with the inter-top-k penalty (SpeakerNet, WeSpeaker).

Each class has ``K`` centres; an embedding's cosine to a class is the largest over its centres,
so a noisy or atypical part of a speaker's data can gather at a centre of its own instead of
pulling the main one. The inter-top-k penalty makes training harder where it matters: the ``k``
highest non-target cosines of each example are *raised* by a margin ``m'`` (``cos(theta - m')``
for the angular head, ``cos + m'`` for the additive one), so the closest impostor classes must be
pushed further away.

``m'`` follows the margin schedule: it is ``topk_margin * m / final_margin``, where ``m`` is the
head's current margin and ``final_margin`` the one it was built with (WeSpeaker scales by
``m / 0.2``, its recipes' final margin, which is the same thing for them). With ``K = 1`` and
``top_k = 0`` the heads equal :class:`AAMSoftmax` and :class:`AMSoftmax`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from speakernet.losses.margin import AAMSoftmax, AMSoftmax, _check_batch, additive_angular
from speakernet.models.registry import HEADS

__all__ = ["SubcenterAAMSoftmax", "SubcenterAMSoftmax"]


class _SubcenterMixin:
    """Sub-centres and the inter-top-k penalty on top of a margin head (see the module docstring)."""

    weight: nn.Parameter
    embed_dim: int
    num_classes: int
    scale: float
    label_smoothing: float
    _margin: float

    def _init_subcenters(self, num_subcenters: int, top_k: int, topk_margin: float) -> None:
        name = type(self).__name__
        if num_subcenters < 1:
            raise ValueError(f"{name}: num_subcenters must be at least 1, got {num_subcenters}")
        if top_k < 0:
            raise ValueError(f"{name}: top_k must be >= 0, got {top_k}")
        if not 0.0 <= topk_margin < 1.0:
            raise ValueError(f"{name}: topk_margin must be in [0, 1), got {topk_margin}")
        self.num_subcenters, self.top_k, self.topk_margin = num_subcenters, top_k, float(topk_margin)
        self.final_margin = self._margin
        # Row c * K + k is centre k of class c.
        self.weight = nn.Parameter(torch.empty(self.num_classes * num_subcenters, self.embed_dim))
        nn.init.xavier_uniform_(self.weight)

    def current_topk_margin(self) -> float:
        """``m'`` now: ``topk_margin`` scaled by how far the margin schedule has come."""
        if self.top_k == 0:
            return 0.0
        if self.final_margin <= 0.0:
            return self.topk_margin
        return self.topk_margin * self._margin / self.final_margin

    def cosine(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Cosine to each class, the largest over its centres: ``[B, num_classes]``."""
        dtype = torch.promote_types(embeddings.dtype, torch.float32)
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            cosine = F.linear(F.normalize(embeddings.to(dtype)), F.normalize(self.weight.to(dtype)))
        cosine = cosine.view(-1, self.num_classes, self.num_subcenters).amax(dim=2)
        return cosine.clamp(-1.0, 1.0)

    def raise_non_target(self, cosine: torch.Tensor, margin: float) -> torch.Tensor:
        """The penalised logit of a hard non-target class (defined by each head)."""
        raise NotImplementedError

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Computes the loss and the margin-free logits.

        Args:
            embeddings: ``[B, embed_dim]`` (any norm; they are length-normalised here).
            labels: ``[B]`` int64 class indices in ``[0, num_classes)``.

        Returns:
            ``(loss, logits)``: the mean cross entropy of the training logits (target with its
            margin, the ``top_k`` hardest non-targets raised by ``m'``), and the margin-free
            logits ``scale * cos(theta)`` ``[B, num_classes]``.

        Raises:
            ValueError: if the shapes or the label type do not fit.
        """
        _check_batch(embeddings, labels, self.embed_dim, type(self).__name__)
        cosine = self.cosine(embeddings)
        index = labels.unsqueeze(1)
        training = cosine
        topk_margin = self.current_topk_margin()
        top_k = min(self.top_k, self.num_classes - 1)
        if top_k > 0 and topk_margin > 0.0:
            # The target is put below every cosine (-2) so that the top k are all non-targets.
            hardest = cosine.scatter(1, index, -2.0).topk(top_k, dim=1).indices
            training = cosine.scatter(1, hardest, self.raise_non_target(cosine.gather(1, hardest), topk_margin))
        target = self.target_logit(cosine.gather(1, index))
        training = training.scatter(1, index, target) * self.scale
        loss = F.cross_entropy(training, labels, label_smoothing=self.label_smoothing)
        return loss, cosine * self.scale

    def extra_repr(self) -> str:
        return (super().extra_repr() + f", num_subcenters={self.num_subcenters}, top_k={self.top_k}, "  # type: ignore[misc]
                f"topk_margin={self.topk_margin}")


@HEADS.register("SubcenterAAMSoftmax")
class SubcenterAAMSoftmax(_SubcenterMixin, AAMSoftmax):
    """Sub-center AAM-softmax with the inter-top-k penalty: hard non-targets get ``cos(theta - m')``.

    Args:
        embed_dim: Embedding size D.
        num_classes: Number of training classes (speakers).
        scale: Multiplier s of the cosines.
        margin: Angular margin m of the target, in radians (the final margin of a schedule).
        num_subcenters: Centres K per class (3 in WeSpeaker and SpeakerNet).
        top_k: Hardest non-target classes penalised per example (0: no penalty).
        topk_margin: Their margin m' at the final margin, in radians.
        easy_margin: Apply the target margin only for ``theta < pi/2``.
        label_smoothing: Label smoothing of the cross entropy, in [0, 1).
    """

    def __init__(self, embed_dim: int, num_classes: int, scale: float = 32.0, margin: float = 0.2,
                 num_subcenters: int = 3, top_k: int = 5, topk_margin: float = 0.06, easy_margin: bool = False,
                 label_smoothing: float = 0.0):
        super().__init__(embed_dim, num_classes, scale, margin, easy_margin, label_smoothing)
        self._init_subcenters(num_subcenters, top_k, topk_margin)

    def raise_non_target(self, cosine: torch.Tensor, margin: float) -> torch.Tensor:
        """``cos(theta - m')``."""
        return additive_angular(cosine, -margin)


@HEADS.register("SubcenterAMSoftmax")
class SubcenterAMSoftmax(_SubcenterMixin, AMSoftmax):
    """Sub-center AM-softmax with the inter-top-k penalty: hard non-targets get ``cos(theta) + m'``.

    SpeakerNet's ResNet34 recipe: ``scale 35, margin 0.2, num_subcenters 3, top_k 5, topk_margin 0.06``.

    Args:
        embed_dim: Embedding size D.
        num_classes: Number of training classes (speakers).
        scale: Multiplier s of the cosines.
        margin: Additive cosine margin m of the target (the final margin of a schedule).
        num_subcenters: Centres K per class.
        top_k: Hardest non-target classes penalised per example (0: no penalty).
        topk_margin: Their additive margin m' at the final margin.
        label_smoothing: Label smoothing of the cross entropy, in [0, 1).
    """

    def __init__(self, embed_dim: int, num_classes: int, scale: float = 32.0, margin: float = 0.2,
                 num_subcenters: int = 3, top_k: int = 5, topk_margin: float = 0.06, label_smoothing: float = 0.0):
        super().__init__(embed_dim, num_classes, scale, margin, label_smoothing)
        self._init_subcenters(num_subcenters, top_k, topk_margin)

    def raise_non_target(self, cosine: torch.Tensor, margin: float) -> torch.Tensor:
        """``cos(theta) + m'``."""
        return cosine + margin
