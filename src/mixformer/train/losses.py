"""Training losses (SPEC 3.7): CIoU + L1 on boxes (stage 1), BCE on the score (stage 2)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from mixformer.geometry import box_cxcywh_to_xyxy, box_xywh_to_xyxy

__all__ = ["EPS", "ciou_loss", "box_losses", "stage_loss"]

#: Floor of the CIoU's denominators (normalised box units): far below any real box's size.
EPS = 1e-7


def ciou_loss(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Complete-IoU loss as in the reference.

    Args:
        pred: ``(B, 4)`` predicted boxes, xyxy.
        target: ``(B, 4)`` ground-truth boxes, xyxy.
    Returns:
        ``(loss, iou)``: the scalar ``mean(1 - ciou)`` and the ``(B,)`` plain IoUs (detached).
        The aspect-ratio term is active only where IoU > 0.5, and its weight ``alpha`` is
        computed without gradient. Degenerate boxes (a zero width or height, which a bf16
        network output rounds small boxes to) give a finite loss and finite gradients: the
        heights under the aspect ratios, the union and the enclosing diagonal are floored at
        ``EPS``, which leaves every other box's value unchanged.
    """
    w1, h1 = pred[:, 2] - pred[:, 0], pred[:, 3] - pred[:, 1]
    w2, h2 = target[:, 2] - target[:, 0], target[:, 3] - target[:, 1]
    cx1, cy1 = (pred[:, 0] + pred[:, 2]) / 2, (pred[:, 1] + pred[:, 3]) / 2
    cx2, cy2 = (target[:, 0] + target[:, 2]) / 2, (target[:, 1] + target[:, 3]) / 2
    l1, r1, t1, b1 = cx1 - w1 / 2, cx1 + w1 / 2, cy1 - h1 / 2, cy1 + h1 / 2
    l2, r2, t2, b2 = cx2 - w2 / 2, cx2 + w2 / 2, cy2 - h2 / 2, cy2 + h2 / 2
    inter = (torch.min(r1, r2) - torch.max(l1, l2)).clamp(min=0) * (
        torch.min(b1, b2) - torch.max(t1, t2)
    ).clamp(min=0)
    c_w = torch.max(r1, r2) - torch.min(l1, l2)
    c_h = torch.max(b1, b2) - torch.min(t1, t2)
    c_diag = (c_w.clamp(min=0) ** 2 + c_h.clamp(min=0) ** 2).clamp(min=EPS)
    rho2 = (cx2 - cx1) ** 2 + (cy2 - cy1) ** 2
    union = w1 * h1 + w2 * h2 - inter
    iou = inter / union.clamp(min=EPS)
    u = rho2 / c_diag
    aspect1, aspect2 = w1 / h1.clamp(min=EPS), w2 / h2.clamp(min=EPS)
    v = (4 / math.pi**2) * (torch.atan(aspect2) - torch.atan(aspect1)) ** 2
    with torch.no_grad():
        s = (iou > 0.5).to(iou.dtype)
        denom = 1 - iou + v
        # 0/0 only for identical boxes (v = 0, IoU = 1), where the aspect term vanishes anyway.
        alpha = torch.where(denom > 0, s * v / denom.clamp(min=1e-12), torch.zeros_like(v))
    ciou = (iou - u - alpha * v).clamp(-1.0, 1.0)
    return (1 - ciou).mean(), iou.detach()


def box_losses(
    pred_boxes: torch.Tensor, search_anno: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """CIoU and L1 between predictions and ground truth.

    Args:
        pred_boxes: ``(B, 1, 4)`` or ``(B, 4)`` normalised cxcywh (model output).
        search_anno: ``(B, 4)`` normalised xywh ground truth (clamped to [0, 1] after the
            conversion to xyxy, as in the reference).
    Returns:
        ``(ciou_loss, l1_loss, iou (B,))``.
    """
    p = box_cxcywh_to_xyxy(pred_boxes.reshape(-1, 4))
    g = box_xywh_to_xyxy(search_anno.reshape(-1, 4)).clamp(0.0, 1.0)
    ciou, iou = ciou_loss(p, g)
    return ciou, F.l1_loss(p, g), iou


def stage_loss(
    stage: int,
    out: dict[str, torch.Tensor],
    search_anno: torch.Tensor,
    label: torch.Tensor | None,
    weights: tuple[float, float, float] = (2.0, 5.0, 1.0),
) -> tuple[torch.Tensor, dict[str, float]]:
    """Total loss of a stage and its logged parts.

    Args:
        stage: 1 (``iou_w * CIoU + l1_w * L1``) or 2 (``score_w * BCE``; box losses only logged).
        out: model output (``pred_boxes (B,1,4)``, stage 2 also ``pred_scores (B,)``).
        search_anno: ``(B, 4)`` normalised xywh.
        label: ``(B,)`` float 0/1 labels (stage 2).
        weights: ``(iou_w, l1_w, score_w)``.
    Returns:
        ``(loss, stats)`` with ``stats`` holding python floats (``loss``, ``ciou``, ``l1``,
        ``iou``; stage 2 also ``bce``, ``acc``).
    """
    ciou, l1, iou = box_losses(out["pred_boxes"], search_anno)
    stats = {"ciou": float(ciou.detach()), "l1": float(l1.detach()), "iou": float(iou.mean())}
    if stage == 1:
        loss = weights[0] * ciou + weights[1] * l1
    else:
        if label is None or "pred_scores" not in out:
            raise ValueError("stage 2 needs labels and a model with a score head")
        scores = out["pred_scores"].reshape(-1)
        bce = F.binary_cross_entropy_with_logits(scores, label.reshape(-1))
        loss = weights[2] * bce
        stats["bce"] = float(bce.detach())
        stats["acc"] = float(((scores.detach() > 0).float() == label.reshape(-1)).float().mean())
    stats["loss"] = float(loss.detach())
    return loss, stats
