"""Tests for the softmax heads and the margin schedule (speakernet.losses.margin)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from speakernet.losses import HEADS, build_head
from speakernet.losses.margin import AAMSoftmax, AMSoftmax, CosineSoftmax, Softmax, margin_schedule

# Three class centres in 2-d at angles 0, 90 and 180 degrees (set un-normalised on purpose).
CENTRES = torch.tensor([[2.0, 0.0], [0.0, 3.0], [-0.5, 0.0]], dtype=torch.float64)
CENTRE_ANGLES = [0.0, math.pi / 2, math.pi]


def unit(angle: float, norm: float = 1.0) -> list[float]:
    return [norm * math.cos(angle), norm * math.sin(angle)]


def with_centres(head: torch.nn.Module) -> torch.nn.Module:
    head = head.double()
    with torch.no_grad():
        head.weight.copy_(CENTRES)
    return head


def hand_cross_entropy(logits: list[float], target: int) -> float:
    return -logits[target] + math.log(sum(math.exp(value) for value in logits))


def test_aam_softmax_matches_hand_computation() -> None:
    scale, margin = 32.0, 0.2
    head = with_centres(AAMSoftmax(2, 3, scale=scale, margin=margin))
    angles = [math.radians(30.0), math.radians(100.0)]
    targets = [0, 1]
    embeddings = torch.tensor([unit(angles[0], 5.0), unit(angles[1], 0.3)], dtype=torch.float64)
    loss, logits = head(embeddings, torch.tensor(targets))

    expected_losses, expected_logits = [], []
    for angle, target in zip(angles, targets):
        thetas = [abs(angle - centre) for centre in CENTRE_ANGLES]
        plain = [scale * math.cos(theta) for theta in thetas]
        training = list(plain)
        training[target] = scale * math.cos(thetas[target] + margin)
        expected_losses.append(hand_cross_entropy(training, target))
        expected_logits.append(plain)
    assert loss.item() == pytest.approx(sum(expected_losses) / 2, rel=1e-9)
    # the returned logits are margin-free (for accuracy)
    torch.testing.assert_close(logits, torch.tensor(expected_logits, dtype=torch.float64))


def test_aam_fallback_branch_for_large_angles() -> None:
    scale, margin = 10.0, 0.2
    head = with_centres(AAMSoftmax(2, 3, scale=scale, margin=margin))
    theta = math.pi - 0.1  # theta + m > pi: beyond the threshold cos(pi - m)
    embeddings = torch.tensor([unit(theta)], dtype=torch.float64)  # target class 0 at angle 0
    target_logit = head.target_logit(torch.tensor([[math.cos(theta)]], dtype=torch.float64)).item()
    expected = math.cos(theta) - (1.0 + math.cos(math.pi - margin))
    assert target_logit == pytest.approx(expected, abs=1e-12)
    assert target_logit != pytest.approx(math.cos(theta + margin), abs=1e-3)
    loss, _ = head(embeddings, torch.tensor([0]))
    thetas = [theta, abs(theta - math.pi / 2), abs(theta - math.pi)]
    logits = [scale * math.cos(t) for t in thetas]
    logits[0] = scale * expected
    assert loss.item() == pytest.approx(hand_cross_entropy(logits, 0), rel=1e-9)


def test_aam_target_logit_is_continuous_and_decreasing_across_the_threshold() -> None:
    head = AAMSoftmax(2, 3, margin=0.3).double()
    thetas = torch.linspace(0.0, math.pi, 2001, dtype=torch.float64)
    values = head.target_logit(torch.cos(thetas).unsqueeze(1)).squeeze(1)
    steps = values[1:] - values[:-1]
    assert (steps < 0).all()
    assert steps.abs().max() < 5e-3  # no jump at theta = pi - m


def test_easy_margin_applies_only_for_acute_angles() -> None:
    head = AAMSoftmax(2, 3, margin=0.25, easy_margin=True).double()
    cosines = torch.tensor([[math.cos(0.5)], [math.cos(2.0)]], dtype=torch.float64)
    values = head.target_logit(cosines).squeeze(1)
    assert values[0].item() == pytest.approx(math.cos(0.75))
    assert values[1].item() == pytest.approx(math.cos(2.0))


def test_zero_margin_equals_scaled_cosine_softmax_cross_entropy() -> None:
    torch.manual_seed(0)
    embeddings = torch.randn(16, 8, dtype=torch.float64)
    labels = torch.randint(0, 5, (16,))
    aam = AAMSoftmax(8, 5, scale=30.0, margin=0.0).double()
    am = AMSoftmax(8, 5, scale=30.0, margin=0.0).double()
    cosine_head = CosineSoftmax(8, 5, scale=30.0).double()
    am.weight.data.copy_(aam.weight.data)
    cosine_head.weight.data.copy_(aam.weight.data)
    expected = F.cross_entropy(30.0 * F.normalize(embeddings) @ F.normalize(aam.weight).T, labels)
    for head in (aam, am, cosine_head):
        loss, logits = head(embeddings, labels)
        assert loss.item() == pytest.approx(expected.item(), rel=1e-12)
        torch.testing.assert_close(F.cross_entropy(logits, labels), loss)


def test_am_softmax_matches_hand_computation() -> None:
    scale, margin = 16.0, 0.35
    head = with_centres(AMSoftmax(2, 3, scale=scale, margin=margin))
    angle = math.radians(60.0)
    loss, _ = head(torch.tensor([unit(angle)], dtype=torch.float64), torch.tensor([1]))
    logits = [scale * math.cos(abs(angle - centre)) for centre in CENTRE_ANGLES]
    logits[1] -= scale * margin
    assert loss.item() == pytest.approx(hand_cross_entropy(logits, 1), rel=1e-9)


def test_margin_increases_the_loss() -> None:
    torch.manual_seed(0)
    head = AAMSoftmax(8, 5, margin=0.0)
    embeddings, labels = torch.randn(32, 8), torch.randint(0, 5, (32,))
    previous = head(embeddings, labels)[0].item()
    for margin in (0.1, 0.2, 0.4):
        head.update_margin(margin)
        loss = head(embeddings, labels)[0].item()
        assert loss > previous
        previous = loss


def test_gradients_flow_and_are_finite_at_zero_angle() -> None:
    head = AAMSoftmax(4, 3, margin=0.2)
    embeddings = head.weight.detach()[[0, 1, 2, 0]].clone().requires_grad_(True)  # theta = 0 for targets
    loss, _ = head(embeddings, torch.tensor([0, 1, 2, 0]))
    loss.backward()
    assert torch.isfinite(embeddings.grad).all() and embeddings.grad.abs().sum() > 0
    assert torch.isfinite(head.weight.grad).all() and head.weight.grad.abs().sum() > 0


def test_aam_gradient_matches_finite_differences() -> None:
    torch.manual_seed(0)
    head = AAMSoftmax(3, 4, scale=8.0, margin=0.3).double()
    embeddings = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 3, 1])
    assert torch.autograd.gradcheck(lambda e: head(e, labels)[0], (embeddings,))


def test_margin_attribute_and_update() -> None:
    head = AAMSoftmax(4, 3, margin=0.2)
    head.update_margin(0.05)
    assert head.margin == 0.05
    head.margin = 0.5
    assert head.margin == 0.5
    with pytest.raises(ValueError, match="margin"):
        head.update_margin(-0.1)
    with pytest.raises(ValueError, match="margin"):
        head.update_margin(2.0)
    for margin_free in (CosineSoftmax(4, 3), Softmax(4, 3)):
        margin_free.update_margin(0.0)
        assert margin_free.margin == 0.0
        with pytest.raises(ValueError, match="no margin"):
            margin_free.update_margin(0.2)


def test_plain_softmax_head() -> None:
    torch.manual_seed(0)
    head = Softmax(6, 4)
    embeddings, labels = torch.randn(5, 6), torch.tensor([0, 1, 2, 3, 0])
    loss, logits = head(embeddings, labels)
    torch.testing.assert_close(logits, head.classifier(embeddings))
    torch.testing.assert_close(loss, F.cross_entropy(logits, labels))


def test_heads_reject_bad_batches() -> None:
    head = AAMSoftmax(4, 3)
    with pytest.raises(ValueError, match=r"embeddings \[batch, 4\]"):
        head(torch.randn(2, 5), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="labels"):
        head(torch.randn(2, 4), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="int64"):
        head(torch.randn(2, 4), torch.tensor([0.0, 1.0]))


def test_head_registry() -> None:
    assert {"AAMSoftmax", "AMSoftmax", "CosineSoftmax", "Softmax"} <= set(HEADS.names())
    head = build_head("AAMSoftmax", embed_dim=8, num_classes=10, scale=30.0, margin=0.1)
    assert isinstance(head, AAMSoftmax) and head.weight.shape == (10, 8) and head.scale == 30.0
    assert isinstance(build_head("Softmax", embed_dim=8, num_classes=10), Softmax)
    with pytest.raises(KeyError, match="AAMSoftmax"):
        build_head("ArcFace", embed_dim=8, num_classes=10)
    with pytest.raises(TypeError, match="AAMSoftmax"):
        build_head("AAMSoftmax", embed_dim=8, num_classes=10, margn=0.2)


def test_margin_schedule_wespeaker_voxceleb_settings() -> None:
    # WeSpeaker VoxCeleb: margin 0 -> 0.2 between epochs 20 and 40 (1-based).
    schedule = [margin_schedule(e, 0.2, 20, 40) for e in (0.0, 10.0, 19.0)]
    assert schedule == [0.0, 0.0, 0.0]
    assert margin_schedule(29.0, 0.2, 20, 40) == pytest.approx(0.2 * (1.0 - 0.001**0.5))
    assert margin_schedule(19.0 + 2.5, 0.2, 20, 40) == pytest.approx(0.2 * (1.0 - 0.001 ** (2.5 / 20)))
    assert margin_schedule(39.0, 0.2, 20, 40) == 0.2
    assert margin_schedule(149.5, 0.2, 20, 40) == 0.2
    values = [margin_schedule(19.0 + k / 10, 0.2, 20, 40) for k in range(201)]
    assert all(b >= a for a, b in itertools.pairwise(values))


def test_margin_schedule_linear_initial_and_degenerate_span() -> None:
    # rise starts after 1 epoch (epoch 2 is 1-based), spans 4 epochs: 1.5 / 4 of the way at 2.5
    assert margin_schedule(2.5, 0.5, 2, 6, initial_margin=0.1, increase_type="linear") == pytest.approx(0.25)
    assert margin_schedule(0.5, 0.5, 2, 6, initial_margin=0.1) == 0.1
    assert margin_schedule(0.0, 0.3, 1, 1) == 0.3  # no rise: the final margin from the start


def test_margin_schedule_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="epoch"):
        margin_schedule(-1.0, 0.2, 20, 40)
    with pytest.raises(ValueError, match="increase_start_epoch"):
        margin_schedule(1.0, 0.2, 40, 20)
    with pytest.raises(ValueError, match="increase_type"):
        margin_schedule(1.0, 0.2, 20, 40, increase_type="cosine")


def test_cosines_stay_float32_under_autocast() -> None:
    torch.manual_seed(0)
    head = AAMSoftmax(8, 5, margin=0.2)
    embeddings, labels = torch.randn(4, 8), torch.tensor([0, 1, 2, 3])
    reference_loss, reference_logits = head(embeddings, labels)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, logits = head(embeddings.to(torch.bfloat16), labels)
    assert logits.dtype == torch.float32
    torch.testing.assert_close(loss, reference_loss, rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(logits, reference_logits, rtol=2e-2, atol=0.1)
