import math

import pytest
import torch
import torch.nn.functional as F

from inference.arcface import ArcFaceHead


def head_with_axes(scale=10.0, margin=0.5, easy_margin=False) -> ArcFaceHead:
    """Three classes in 2-d: class 0 along x, class 1 along y, class 2 along -x (weights of any length)."""
    head = ArcFaceHead(2, 3, scale=scale, margin=margin, easy_margin=easy_margin)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[2.0, 0.0], [0.0, 3.0], [-1.0, 0.0]]))
    return head


def at_angle(theta: float) -> torch.Tensor:
    return torch.tensor([[math.cos(theta), math.sin(theta)]])


def test_the_true_class_logit_is_the_cosine_of_the_angle_plus_the_margin():
    head = head_with_axes(scale=10.0, margin=0.5)
    theta = math.pi / 3  # 60 degrees from class 0, 30 from class 1, 120 from class 2
    logits = head(at_angle(theta), torch.tensor([0]))
    expected = torch.tensor([[10 * math.cos(theta + 0.5), 10 * math.cos(math.pi / 2 - theta),
                              10 * math.cos(math.pi - theta)]])
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)
    # 10*cos(1.0472 + 0.5 rad) = 10*cos(1.5472) = 0.2360, by hand; the others keep their plain cosines.
    assert logits[0, 0].item() == pytest.approx(0.2360, abs=1e-4)
    assert logits[0, 1].item() == pytest.approx(8.6603, abs=1e-4)
    assert logits[0, 2].item() == pytest.approx(-5.0, abs=1e-4)


def test_the_margin_goes_to_whichever_class_is_the_label():
    head = head_with_axes(scale=1.0, margin=0.2)
    theta = 0.4
    logits = head(at_angle(theta).repeat(2, 1), torch.tensor([0, 1]))
    assert logits[0, 0].item() == pytest.approx(math.cos(theta + 0.2), abs=1e-5)
    assert logits[0, 1].item() == pytest.approx(math.cos(math.pi / 2 - theta), abs=1e-5)
    assert logits[1, 0].item() == pytest.approx(math.cos(theta), abs=1e-5)
    assert logits[1, 1].item() == pytest.approx(math.cos(math.pi / 2 - theta + 0.2), abs=1e-5)


def test_scale_multiplies_every_logit():
    embeddings = F.normalize(torch.randn(4, 2, generator=torch.Generator().manual_seed(0)), dim=1)
    labels = torch.tensor([0, 1, 2, 1])
    ones, thirties = head_with_axes(scale=1.0), head_with_axes(scale=30.0)
    torch.testing.assert_close(thirties(embeddings, labels), 30 * ones(embeddings, labels))


def test_without_labels_the_logits_are_the_scaled_cosines():
    head = head_with_axes(scale=30.0, margin=0.5)
    theta = 0.3
    logits = head(at_angle(theta))
    expected = 30 * torch.tensor([[math.cos(theta), math.sin(theta), -math.cos(theta)]])
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)


def test_past_pi_minus_m_the_logit_keeps_falling_instead_of_rising():
    # theta = 170 deg from class 0 with m = 0.5: theta + m > pi, where cos(theta + m) would rise again.
    head = head_with_axes(scale=1.0, margin=0.5)
    theta = math.radians(170)
    logit = head(at_angle(theta), torch.tensor([0]))[0, 0].item()
    assert logit == pytest.approx(math.cos(theta) - 0.5 * math.sin(0.5), abs=1e-5)
    assert logit < math.cos(theta)  # still a penalty
    # Monotonic in theta across the threshold pi - m.
    angles = torch.linspace(0.05, math.pi - 0.05, 200)
    embeddings = torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    true_logits = head(embeddings, torch.zeros(200, dtype=torch.long))[:, 0]
    assert torch.all(true_logits[1:] < true_logits[:-1])


def test_easy_margin_applies_the_margin_only_where_the_cosine_is_positive():
    head = head_with_axes(scale=1.0, margin=0.5, easy_margin=True)
    near, far = 0.4, 2.0  # cos(2.0) < 0
    logits = head(torch.cat([at_angle(near), at_angle(far)]), torch.tensor([0, 0]))
    assert logits[0, 0].item() == pytest.approx(math.cos(near + 0.5), abs=1e-5)
    assert logits[1, 0].item() == pytest.approx(math.cos(far), abs=1e-5)


def test_gradients_reach_the_embeddings_and_the_class_weights_and_are_finite():
    torch.manual_seed(0)
    head = ArcFaceHead(8, 5)
    raw = torch.randn(6, 8, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 3, 4, 0])
    loss = head.loss(F.normalize(raw, dim=1), labels)
    loss.backward()
    assert torch.isfinite(raw.grad).all() and raw.grad.abs().sum() > 0
    assert torch.isfinite(head.weight.grad).all() and head.weight.grad.abs().sum() > 0
    # An embedding exactly on its class weight (cos = 1, sin = 0) still has a finite gradient.
    on_axis = torch.tensor([[1.0, 0.0]], requires_grad=True)
    head_with_axes().loss(on_axis, torch.tensor([0])).backward()
    assert torch.isfinite(on_axis.grad).all()


def test_the_loss_is_cross_entropy_of_the_margin_logits_and_training_lowers_it():
    torch.manual_seed(1)
    head = ArcFaceHead(4, 3, scale=16.0, margin=0.3)
    embeddings = F.normalize(torch.randn(9, 4), dim=1)
    labels = torch.tensor([0, 1, 2] * 3)
    assert head.loss(embeddings, labels).item() == pytest.approx(
        F.cross_entropy(head(embeddings, labels), labels).item())
    raw = embeddings.clone().requires_grad_(True)
    optimiser = torch.optim.SGD([raw, *head.parameters()], lr=0.5)
    first = None
    for _ in range(30):
        loss = head.loss(F.normalize(raw, dim=1), labels)
        first = first if first is not None else loss.item()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert loss.item() < first / 2


def test_a_margin_outside_zero_to_half_pi_is_refused():
    with pytest.raises(ValueError, match="margin"):
        ArcFaceHead(4, 3, margin=2.0)
