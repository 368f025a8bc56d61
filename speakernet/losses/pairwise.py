"""Heads without a classifier: triplet loss with online mining, angular prototypical loss.

Both compare the embeddings of one batch with each other, so a batch must hold several
utterances of each speaker: train them with ``data.sampler: speaker_balanced`` (P speakers x K
utterances, K >= 2); :attr:`needs_speaker_balanced` tells the trainer to insist on it. They take
``num_classes`` like every head and ignore it (they learn nothing per class).

Their ``logits`` are in-batch similarities, and ``correct(logits, labels)`` counts what a
classifier's accuracy would: for the triplet loss whether each utterance's nearest other
utterance is of its speaker, for the prototypical loss whether each query is closest to its
own speaker's prototype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from speakernet.losses.margin import NoMargin, _check_batch
from speakernet.models.registry import HEADS

__all__ = ["AngularPrototypical", "TripletLoss"]

MINING = ("hard", "semihard")


@HEADS.register("TripletLoss")
class TripletLoss(nn.Module):
    """Cosine triplet loss ``mean(max(cos(a, n) - cos(a, p) + alpha, 0))`` with online mining.

    Every utterance of the batch is an anchor. With ``mining: hard`` (batch-hard) each anchor takes
    its least similar positive and its most similar negative. With ``semihard`` (FaceNet) every
    (anchor, positive) pair takes the most similar negative that is still less similar than the
    positive (``cos(a, n) < cos(a, p)``); where none is, the least similar negative. Deep Speaker
    trains with alpha = 0.1 on unit-norm embeddings, after softmax pre-training.

    Args:
        embed_dim: Embedding size D.
        num_classes: Ignored (the loss has no classifier).
        margin: The margin alpha, in [0, 2) (a margin schedule may change it).
        mining: ``hard`` or ``semihard``.
    """

    needs_speaker_balanced = True

    def __init__(self, embed_dim: int, num_classes: int = 0, margin: float = 0.1, mining: str = "hard"):
        super().__init__()
        if embed_dim < 1:
            raise ValueError(f"TripletLoss: embed_dim must be positive, got {embed_dim}")
        if mining not in MINING:
            raise ValueError(f"TripletLoss: mining must be one of {', '.join(MINING)}, got {mining!r}")
        self.embed_dim, self.mining = embed_dim, mining
        self._margin = 0.0
        self.update_margin(margin)

    @property
    def margin(self) -> float:
        """The margin alpha."""
        return self._margin

    def update_margin(self, margin: float) -> None:
        """Sets alpha.

        Raises:
            ValueError: if it is not in [0, 2).
        """
        if not 0.0 <= float(margin) < 2.0:
            raise ValueError(f"TripletLoss: margin must be in [0, 2), got {margin}")
        self._margin = float(margin)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Computes the loss over the batch's mined triplets.

        Args:
            embeddings: ``[B, embed_dim]`` (length-normalised here).
            labels: ``[B]`` int64 speaker labels.

        Returns:
            ``(loss, similarities)``: the mean hinge loss, and the cosines ``[B, B]`` between the
            utterances with ``-inf`` on the diagonal.

        Raises:
            ValueError: on shapes that do not fit, or a batch where no utterance has both a
                positive and a negative.
        """
        _check_batch(embeddings, labels, self.embed_dim, "TripletLoss")
        # At least float32, also under autocast: the hinge compares cosines a margin of 0.1 apart.
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            unit = F.normalize(embeddings.to(torch.promote_types(embeddings.dtype, torch.float32)))
            similarity = unit @ unit.T
        same = labels.unsqueeze(0) == labels.unsqueeze(1)
        self_pair = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
        positive, negative = same & ~self_pair, ~same
        if not bool((positive.any(1) & negative.any(1)).any()):
            raise ValueError("TripletLoss: no utterance of the batch has both another utterance of its speaker and "
                             "one of another speaker; use data.sampler: speaker_balanced with "
                             "data.utts_per_speaker >= 2 and data.speakers_per_batch >= 2")
        if self.mining == "hard":
            loss = self._batch_hard(similarity, positive, negative)
        else:
            loss = self._semihard(similarity, positive, negative)
        return loss, similarity.masked_fill(self_pair, float("-inf"))

    def _batch_hard(self, similarity: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
        valid = positive.any(1) & negative.any(1)
        hardest_positive = similarity.masked_fill(~positive, float("inf")).amin(1)
        hardest_negative = similarity.masked_fill(~negative, float("-inf")).amax(1)
        hinge = F.relu(hardest_negative - hardest_positive + self._margin)
        return hinge[valid].mean()

    def _semihard(self, similarity: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
        # [anchor, positive, negative]: is n less similar to a than p is?
        anchor_positive = similarity.unsqueeze(2)
        anchor_negative = similarity.unsqueeze(1)
        farther = negative.unsqueeze(1) & (anchor_negative < anchor_positive)
        semihard = anchor_negative.masked_fill(~farther, float("-inf")).amax(2)
        easiest = similarity.masked_fill(~negative, float("inf")).amin(1, keepdim=True).expand_as(semihard)
        chosen = torch.where(farther.any(2), semihard, easiest)
        pairs = positive & negative.any(1, keepdim=True)
        hinge = F.relu(chosen - similarity + self._margin)
        return hinge[pairs].mean()

    def correct(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Whether each utterance's nearest other utterance is of its speaker, ``[B]`` bool."""
        return labels[logits.argmax(1)] == labels

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, margin={self._margin}, mining={self.mining}"


@HEADS.register("AngularPrototypical")
class AngularPrototypical(NoMargin, nn.Module):
    """Angular prototypical loss (Chung et al., Interspeech 2020).

    For each speaker of the batch its first utterance is the query and the mean of its other
    utterances the prototype; the logits are ``w * cos(query_i, prototype_j) + b`` over the
    batch's speakers, and the loss is the cross entropy of each query against its own
    prototype. ``w`` and ``b`` are learnt (initially 10 and -5); ``w`` is kept above 1e-6.

    Args:
        embed_dim: Embedding size D.
        num_classes: Ignored (the loss has no classifier).
        init_scale: Initial w.
        init_bias: Initial b.
    """

    needs_speaker_balanced = True

    def __init__(self, embed_dim: int, num_classes: int = 0, init_scale: float = 10.0, init_bias: float = -5.0):
        super().__init__()
        if embed_dim < 1:
            raise ValueError(f"AngularPrototypical: embed_dim must be positive, got {embed_dim}")
        if init_scale <= 0:
            raise ValueError(f"AngularPrototypical: init_scale must be positive, got {init_scale}")
        self.embed_dim = embed_dim
        self.scale = nn.Parameter(torch.tensor(float(init_scale)))
        self.bias = nn.Parameter(torch.tensor(float(init_bias)))

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Computes the loss of the batch's queries against its prototypes.

        Args:
            embeddings: ``[B, embed_dim]``.
            labels: ``[B]`` int64 speaker labels; every speaker present at least twice.

        Returns:
            ``(loss, logits)``: the mean cross entropy and the logits ``[S, S]`` (query i, the
            i-th speaker in label order, against every prototype).

        Raises:
            ValueError: on shapes that do not fit, a speaker with a single utterance in the batch,
                or a batch of one speaker.
        """
        _check_batch(embeddings, labels, self.embed_dim, "AngularPrototypical")
        speakers, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
        if len(speakers) < 2 or bool((counts < 2).any()):
            single = speakers[counts < 2].tolist()[:5]
            raise ValueError(
                f"AngularPrototypical needs >= 2 speakers with >= 2 utterances each per batch (got {len(speakers)} "
                f"speaker(s); with one utterance: labels {single}); use data.sampler: speaker_balanced with "
                "data.utts_per_speaker >= 2")
        positions = torch.arange(len(labels), device=labels.device)
        first = torch.full((len(speakers),), len(labels), dtype=torch.long, device=labels.device)
        first = first.scatter_reduce(0, inverse, positions, reduce="amin")
        # At least float32, also under autocast (as the cosine heads).
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            feats = embeddings.to(torch.promote_types(embeddings.dtype, torch.float32))
            queries = feats[first]
            sums = torch.zeros(len(speakers), feats.shape[1], dtype=feats.dtype, device=feats.device)
            prototypes = (sums.index_add(0, inverse, feats) - queries) / (counts - 1).unsqueeze(1).to(feats.dtype)
            cosine = F.normalize(queries) @ F.normalize(prototypes).T
            logits = self.scale.clamp(min=1e-6) * cosine + self.bias
        loss = F.cross_entropy(logits, torch.arange(len(speakers), device=labels.device))
        return loss, logits

    def correct(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Whether each query is closest to its own speaker's prototype, ``[S]`` bool."""
        return logits.argmax(1) == torch.arange(logits.shape[0], device=logits.device)

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}"
