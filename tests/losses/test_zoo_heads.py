"""Tests for label smoothing, the sub-center heads and the classifier-free heads."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from speakernet.losses import HEADS, build_head
from speakernet.losses.margin import AAMSoftmax, AMSoftmax, Softmax
from speakernet.losses.pairwise import AngularPrototypical, TripletLoss
from speakernet.losses.subcenter import SubcenterAAMSoftmax, SubcenterAMSoftmax


def test_label_smoothing_matches_the_smoothed_cross_entropy() -> None:
    torch.manual_seed(0)
    embeddings, labels = torch.randn(6, 5, dtype=torch.float64), torch.tensor([0, 1, 2, 3, 0, 1])
    head = Softmax(5, 4, label_smoothing=0.1).double()
    loss, logits = head(embeddings, labels)
    log_probs = torch.log_softmax(logits, dim=1)
    expected = -(0.9 * log_probs.gather(1, labels[:, None]).squeeze(1) + 0.1 * log_probs.mean(1)).mean()
    torch.testing.assert_close(loss, expected)
    smooth = AAMSoftmax(5, 4, margin=0.0, label_smoothing=0.2).double()
    plain = AAMSoftmax(5, 4, margin=0.0).double()
    plain.load_state_dict(smooth.state_dict())
    assert smooth(embeddings, labels)[0] > plain(embeddings, labels)[0]  # confident logits pay for smoothing
    with pytest.raises(ValueError, match="label_smoothing"):
        Softmax(5, 4, label_smoothing=1.0)


@pytest.mark.parametrize("plain_cls, sub_cls", [(AAMSoftmax, SubcenterAAMSoftmax), (AMSoftmax, SubcenterAMSoftmax)])
def test_one_subcenter_without_top_k_equals_the_plain_head(plain_cls: type, sub_cls: type) -> None:
    torch.manual_seed(1)
    sub = sub_cls(8, 5, scale=30.0, margin=0.2, num_subcenters=1, top_k=0).double()
    plain = plain_cls(8, 5, scale=30.0, margin=0.2).double()
    plain.load_state_dict(sub.state_dict())
    embeddings, labels = torch.randn(7, 8, dtype=torch.float64), torch.randint(0, 5, (7,))
    for (loss_a, logits_a), (loss_b, logits_b) in [(sub(embeddings, labels), plain(embeddings, labels))]:
        torch.testing.assert_close(loss_a, loss_b)
        torch.testing.assert_close(logits_a, logits_b)


def test_subcenter_cosine_is_the_best_centre_of_each_class() -> None:
    head = SubcenterAAMSoftmax(2, 2, scale=1.0, margin=0.0, num_subcenters=2, top_k=0).double()
    with torch.no_grad():  # class 0: centres at 0 and 90 degrees; class 1: 180 and 270 degrees
        head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]], dtype=torch.float64))
    embedding = torch.tensor([[math.cos(1.2), math.sin(1.2)]], dtype=torch.float64)  # 69 degrees
    _, logits = head(embedding, torch.tensor([0]))
    torch.testing.assert_close(logits, torch.tensor([[math.cos(1.2 - math.pi / 2), math.cos(math.pi - 1.2)]],
                                                    dtype=torch.float64))


def test_inter_top_k_raises_exactly_the_hardest_non_targets() -> None:
    scale, margin, topk_margin = 10.0, 0.2, 0.1
    head = SubcenterAAMSoftmax(2, 4, scale=scale, margin=margin, num_subcenters=1, top_k=2,
                               topk_margin=topk_margin).double()
    angles = [0.0, 0.5, 1.0, 2.5]  # class centres; the example sits at 0.1 rad, class 0 is its target
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[math.cos(a), math.sin(a)] for a in angles], dtype=torch.float64))
    embedding = torch.tensor([[math.cos(0.1), math.sin(0.1)]], dtype=torch.float64)
    loss, _ = head(embedding, torch.tensor([0]))
    thetas = [abs(0.1 - a) for a in angles]
    training = [math.cos(thetas[0] + margin), math.cos(thetas[1] - topk_margin), math.cos(thetas[2] - topk_margin),
                math.cos(thetas[3])]  # classes 1, 2 are the two hardest non-targets; class 3 is left alone
    expected = -scale * training[0] + math.log(sum(math.exp(scale * value) for value in training))
    assert loss.item() == pytest.approx(expected, rel=1e-9)


def test_inter_top_k_margin_follows_the_margin_schedule() -> None:
    head = SubcenterAMSoftmax(4, 10, margin=0.2, top_k=5, topk_margin=0.06)
    assert head.current_topk_margin() == pytest.approx(0.06)
    head.update_margin(0.1)
    assert head.current_topk_margin() == pytest.approx(0.03)
    head.update_margin(0.0)
    assert head.current_topk_margin() == 0.0
    assert SubcenterAMSoftmax(4, 10, top_k=0).current_topk_margin() == 0.0
    with pytest.raises(ValueError, match="num_subcenters"):
        SubcenterAMSoftmax(4, 10, num_subcenters=0)


def test_triplet_hard_mining_picks_the_hardest_pair() -> None:
    # Speaker 0: a (0 rad), p1 (0.3), p2 (1.0); speaker 1: n1 (0.6), n2 (2.0).
    angles = [0.0, 0.3, 1.0, 0.6, 2.0]
    embeddings = torch.tensor([[math.cos(a), math.sin(a)] for a in angles], dtype=torch.float64)
    labels = torch.tensor([0, 0, 0, 1, 1])
    alpha = 0.1
    loss, similarity = TripletLoss(2, margin=alpha)(embeddings, labels)
    cos = [[math.cos(a - b) for b in angles] for a in angles]
    hinge = []
    for anchor in range(5):
        positives = [j for j in range(5) if labels[j] == labels[anchor] and j != anchor]
        negatives = [j for j in range(5) if labels[j] != labels[anchor]]
        hardest = max(cos[anchor][j] for j in negatives) - min(cos[anchor][j] for j in positives)
        hinge.append(max(hardest + alpha, 0.0))
    assert loss.item() == pytest.approx(sum(hinge) / 5, rel=1e-9)
    assert torch.isinf(similarity.diagonal()).all()
    # anchor a's hardest negative is n1 (0.6 rad), not n2; its hardest positive p2
    assert hinge[0] == pytest.approx(cos[0][3] - cos[0][2] + alpha)


def test_triplet_semihard_mining_takes_the_closest_negative_beyond_the_positive() -> None:
    # a, p; three negatives of three other speakers (no positives of their own, so not anchors):
    # at 0.3 (harder than p), 0.7 and 0.9 (beyond p)
    angles = [0.0, 0.5, 0.3, 0.7, 0.9]
    embeddings = torch.tensor([[math.cos(a), math.sin(a)] for a in angles], dtype=torch.float64)
    head = TripletLoss(2, margin=0.5, mining="semihard")
    loss, _ = head(embeddings, torch.tensor([0, 0, 1, 2, 3]))
    cos = lambda a, b: math.cos(angles[a] - angles[b])  # noqa: E731
    # pairs (a, p) and (p, a): for a the semi-hard negative is 0.7 (closest beyond p at 0.5);
    # for p (at 0.5) the positive a is 0.5 away: negatives 0.3 (0.2), 0.7 (0.2), 0.9 (0.4) are all
    # closer, so it falls back to the least similar, 0.9.
    expected = (max(cos(0, 3) - cos(0, 1) + 0.5, 0) + max(cos(1, 4) - cos(1, 0) + 0.5, 0)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-9)


def test_triplet_and_prototypical_need_speaker_balanced_batches() -> None:
    with pytest.raises(ValueError, match="speaker_balanced"):
        TripletLoss(4)(torch.randn(3, 4), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="speaker_balanced"):
        AngularPrototypical(4)(torch.randn(3, 4), torch.tensor([0, 0, 1]))
    assert TripletLoss.needs_speaker_balanced and AngularPrototypical.needs_speaker_balanced


def test_angular_prototypical_matches_hand_computation() -> None:
    torch.manual_seed(2)
    head = AngularPrototypical(3).double()
    labels = torch.tensor([4, 1, 4, 1, 4, 1])
    embeddings = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    loss, logits = head(embeddings, labels)
    rows = {1: [1, 3, 5], 4: [0, 2, 4]}
    queries = [embeddings[rows[s][0]] for s in (1, 4)]
    prototypes = [embeddings[rows[s][1:]].mean(0) for s in (1, 4)]
    expected_logits = torch.stack([torch.stack([10.0 * F.cosine_similarity(q, p, dim=0) - 5.0 for p in prototypes])
                                   for q in queries])
    torch.testing.assert_close(logits, expected_logits)
    torch.testing.assert_close(loss, F.cross_entropy(expected_logits, torch.tensor([0, 1])))
    loss.backward()
    assert head.scale.grad is not None and head.bias.grad is not None and embeddings.grad.abs().sum() > 0
    assert head.correct(logits, labels).shape == (2,)


def test_every_head_gives_hits_and_a_finite_gradient() -> None:
    torch.manual_seed(3)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    for name in HEADS.names():
        head = build_head(name, embed_dim=6, num_classes=4)
        embeddings = torch.randn(8, 6, requires_grad=True)
        loss, logits = head(embeddings, labels)
        loss.backward()
        hits = head.correct(logits.detach(), labels)
        assert hits.dtype == torch.bool and 0 < hits.numel() <= 8, name
        assert torch.isfinite(embeddings.grad).all() and embeddings.grad.abs().sum() > 0, name
        for parameter_name, parameter in head.named_parameters():
            assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), (name, parameter_name)


def test_nearest_neighbour_hits_of_the_triplet_head() -> None:
    angles = [math.radians(a) for a in (0.0, 5.0, 90.0, 60.0, 20.0)]
    embeddings = torch.tensor([[math.cos(a), math.sin(a)] for a in angles])
    labels = torch.tensor([0, 0, 1, 1, 1])
    _, similarity = TripletLoss(2)(embeddings, labels)
    # the utterance at 20 degrees is nearest to one at 5 degrees, of the other speaker
    assert TripletLoss(2).correct(similarity, labels).tolist() == [True, True, True, True, False]


@pytest.mark.parametrize("name", ["TripletLoss", "AngularPrototypical", "SubcenterAAMSoftmax"])
def test_similarities_stay_float32_under_autocast(name: str) -> None:
    torch.manual_seed(4)
    head = build_head(name, embed_dim=8, num_classes=4)
    embeddings, labels = torch.randn(8, 8), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    reference_loss, reference_logits = head(embeddings, labels)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, logits = head(embeddings.to(torch.bfloat16), labels)
    assert logits.dtype == torch.float32 and loss.dtype == torch.float32
    torch.testing.assert_close(loss, reference_loss, rtol=2e-2, atol=2e-2)
