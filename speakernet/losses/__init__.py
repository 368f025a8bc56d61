"""Training heads (classifier + loss) and margin schedules.

Importing this package registers every head in :data:`HEADS` (the registry lives in
``speakernet.models.registry``); configs name a head (``loss: AAMSoftmax``) and its arguments.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from speakernet.losses.margin import AAMSoftmax, AMSoftmax, CosineSoftmax, Softmax, margin_schedule
from speakernet.losses.pairwise import AngularPrototypical, TripletLoss
from speakernet.losses.subcenter import SubcenterAAMSoftmax, SubcenterAMSoftmax
from speakernet.models.registry import HEADS

__all__ = ["HEADS", "AAMSoftmax", "AMSoftmax", "AngularPrototypical", "CosineSoftmax", "Softmax",
           "SubcenterAAMSoftmax", "SubcenterAMSoftmax", "TripletLoss", "build_head", "margin_schedule"]


def build_head(name: str, **args: Any) -> nn.Module:
    """Builds the registered training head ``name``.

    Args:
        name: Registered head name: ``"AAMSoftmax"``, ``"AMSoftmax"``, ``"CosineSoftmax"``, ``"Softmax"``,
            ``"SubcenterAAMSoftmax"``, ``"SubcenterAMSoftmax"``, ``"TripletLoss"`` or ``"AngularPrototypical"``.
        **args: The head's constructor arguments (``embed_dim``, ``num_classes``, ``scale``, ``margin``, ...).

    Returns:
        The head, mapping ``(embeddings [B, D], labels [B])`` to ``(loss, logits)``; ``head.correct(logits,
        labels)`` gives the per-prediction hits for the training accuracy.

    Raises:
        KeyError: if ``name`` is unknown; the message lists the registered heads.
        TypeError: if ``args`` holds an argument the head does not take.
    """
    return HEADS.build(name, **args)
