"""SPEC 3.7 losses: CIoU (as implemented by the reference), L1, stage-2 BCE."""

from __future__ import annotations

import math

import pytest
import torch

from mixformer.train.losses import box_losses, ciou_loss, stage_loss


def test_ciou_of_identical_boxes_is_zero() -> None:
    b = torch.tensor([[0.1, 0.2, 0.5, 0.6], [0.3, 0.3, 0.4, 0.9]])
    loss, iou = ciou_loss(b, b)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    assert torch.allclose(iou, torch.ones(2))


def test_ciou_matches_hand_computation() -> None:
    # Disjoint boxes: IoU 0, no aspect term (IoU <= 0.5), only the centre-distance penalty.
    p = torch.tensor([[0.0, 0.0, 0.2, 0.2]])
    g = torch.tensor([[0.4, 0.0, 0.6, 0.2]])
    loss, iou = ciou_loss(p, g)
    rho2, diag = 0.4**2, 0.6**2 + 0.2**2
    assert iou.item() == 0.0
    assert loss.item() == pytest.approx(1 + rho2 / diag, rel=1e-6)
    # Overlapping with IoU > 0.5 and different aspect ratios: aspect term active.
    p = torch.tensor([[0.0, 0.0, 0.4, 0.4]])
    g = torch.tensor([[0.0, 0.0, 0.4, 0.5]])
    loss, iou = ciou_loss(p, g)
    i = 0.16 / 0.20
    rho2, diag = 0.05**2, 0.4**2 + 0.5**2
    v = 4 / math.pi**2 * (math.atan(0.4 / 0.5) - math.atan(1.0)) ** 2
    alpha = v / (1 - i + v)
    assert loss.item() == pytest.approx(1 - (i - rho2 / diag - alpha * v), rel=1e-5)


def test_alpha_carries_no_gradient() -> None:
    p = torch.tensor([[0.0, 0.0, 0.4, 0.4]], requires_grad=True)
    g = torch.tensor([[0.0, 0.0, 0.4, 0.5]])
    loss, _ = ciou_loss(p, g)
    loss.backward()
    assert p.grad is not None and torch.isfinite(p.grad).all()


@pytest.mark.parametrize(
    "pred",
    [
        [[0.3, 0.3, 0.3, 0.5]],  # zero width
        [[0.3, 0.3, 0.5, 0.3]],  # zero height (inf aspect ratio before the floor)
        [[0.3, 0.3, 0.3, 0.3]],  # a point: zero union against a disjoint target
        [[0.2, 0.2, 0.2, 0.2]],  # a point on the target's corner
    ],
)
def test_degenerate_boxes_give_finite_loss_and_gradients(pred: list) -> None:
    # A bf16 network output rounds a small box to zero width or height (the first H200 run's
    # bf16 training steps turned NaN this way, docs/speed.md#gpu).
    p = torch.tensor(pred, requires_grad=True)
    for g in ([[0.6, 0.6, 0.8, 0.9]], [[0.2, 0.2, 0.4, 0.5]]):
        loss, iou = ciou_loss(p, torch.tensor(g))
        (grad,) = torch.autograd.grad(loss, p)
        assert torch.isfinite(loss) and torch.isfinite(iou).all() and torch.isfinite(grad).all()
        assert 1.0 <= loss.item() <= 2.0  # IoU 0: 1 + centre penalty in [0, 1]


def test_box_losses_clamp_ground_truth() -> None:
    pred = torch.tensor([[[0.5, 0.5, 0.2, 0.2]]])  # cxcywh -> xyxy (0.4, 0.4, 0.6, 0.6)
    anno = torch.tensor([[0.4, 0.4, 0.2, 0.2]])  # xywh, same box
    ciou, l1, iou = box_losses(pred, anno)
    assert ciou.item() == pytest.approx(0.0, abs=1e-6) and l1.item() == pytest.approx(0.0, abs=1e-7)
    anno_out = torch.tensor([[0.9, 0.9, 0.3, 0.3]])  # reaches 1.2 -> clamped to 1.0
    _, l1, _ = box_losses(torch.tensor([[[0.95, 0.95, 0.1, 0.1]]]), anno_out)
    assert l1.item() == pytest.approx(0.0, abs=1e-6)


def test_stage_losses() -> None:
    out = {"pred_boxes": torch.tensor([[[0.5, 0.5, 0.2, 0.2]]]), "pred_scores": torch.tensor([2.0])}
    anno = torch.tensor([[0.3, 0.3, 0.2, 0.2]])
    loss1, s1 = stage_loss(1, out, anno, None)
    assert loss1.item() == pytest.approx(2 * s1["ciou"] + 5 * s1["l1"], rel=1e-6)
    loss2, s2 = stage_loss(2, out, anno, torch.tensor([1.0]))
    assert loss2.item() == pytest.approx(math.log1p(math.exp(-2.0)), rel=1e-6)
    assert s2["acc"] == 1.0 and s2["ciou"] == pytest.approx(s1["ciou"])
    with pytest.raises(ValueError, match="labels"):
        stage_loss(2, out, anno, None)
