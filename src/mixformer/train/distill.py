"""MixFormerV2 distillation (SPEC-DISTILL 2-4): a frozen teacher in eval mode teaches a
MixFormerV2 student (prediction tokens, bin head).

* Dense-to-sparse (stage 1, SPEC-DISTILL 3): a teacher with a corner head (any family: CvT,
  MixViT, ConvMAE). The row / column marginals of its two corner softmaxes are the targets of the
  student's four bin distributions (quirk 8.3): top / bottom from the rows of the top-left /
  bottom-right maps, left / right from their columns. The student's bins must coincide with the
  teacher's cells (``F`` bins = the map side ``F_t``, same search crop, quirk 8.2).
* Deep-to-shallow (stage 2, SPEC-DISTILL 4): a deeper MixFormerV2 teacher; its bin
  probabilities are the targets directly, plus feature mimicking on paired block outputs.
  :mod:`mixformer.train.removal` holds the layer-removal schedule and the conversion.

Loss ``L = 2 CIoU + 5 L1 + 5 mean_c KL_c (+ 0.2 MSE_feat)`` with ``KL_c`` the batch-mean
``KL(p_c || softmax(s_c))`` of the student's LayerNorm-ed bin logits ``s_c`` (no temperature)
for ``c`` in t, l, b, r. One iteration is :func:`distill_step` (forward of both, loss, backward,
global-norm clipping at 0.1, AdamW step); :func:`distill_optimizer` builds AdamW as the
reference does (SPEC-DISTILL 2.3).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mixformer.geometry import box_xyxy_to_cxcywh
from mixformer.models import MixFormer, MixFormerV2
from mixformer.models.blocks import Block
from mixformer.train.losses import box_losses
from mixformer.train.removal import block_rates, removed_parameter

__all__ = [
    "SIDES",
    "DistillWeights",
    "corner_marginals",
    "corner_teacher_forward",
    "distill_losses",
    "distill_optimizer",
    "distill_rates",
    "distill_step",
    "freeze_teacher",
    "teacher_targets",
    "v2_forward",
]

SIDES = ("t", "l", "b", "r")
"""Box sides in the order the reference computes (and sums) the four KL terms."""
_TOKEN = {"l": 0, "r": 1, "t": 2, "b": 3}  # prediction-token order of MixFormerV2


@dataclass(frozen=True)
class DistillWeights:
    """Loss weights of the distillation yamls (``IOU_WEIGHT``, ``L1_WEIGHT``,
    ``CORNER_WEIGHT``, ``FEAT_WEIGHT``; the last is used only with feature pairs)."""

    ciou: float = 2.0
    l1: float = 5.0
    kl: float = 5.0
    feat: float = 0.2


def _rest_of_block(blk: Block, x: torch.Tensor, a: torch.Tensor, rate: float) -> torch.Tensor:
    """:meth:`Block.after_attention` with both residual branches scaled by ``rate`` after
    DropPath (SPEC-DISTILL 4.1); ``rate == 1`` is the plain block."""
    drop = blk.drop_path if blk.training else (lambda t: t)
    if rate == 1.0:
        x = x + drop(a)
        return x + drop(blk.mlp(blk.norm2(x)))
    x = x + rate * drop(a)
    return x + rate * drop(blk.mlp(blk.norm2(x)))


def v2_forward(
    model: MixFormerV2,
    template: torch.Tensor,
    online_template: torch.Tensor,
    search: torch.Tensor,
    rates: Sequence[float] | None = None,
    feature_layers: Sequence[int] = (),
) -> dict[str, Any]:
    """Joint forward of a MixFormerV2 (SPEC-MIXFORMERV2 2.3) with per-block residual weights.

    Args:
        model: the network (train or eval mode; DropPath acts in train mode).
        template, online_template: ``(B, 3, Ht, Ht)``; search: ``(B, 3, Hs, Hs)``.
        rates: residual weight per block (:func:`~mixformer.train.removal.block_rates`);
            None: 1.0 everywhere (the plain network).
        feature_layers: blocks whose outputs to return.
    Returns:
        ``pred_boxes (B, 1, 4)`` normalised cxcywh (the head's xyxy through cxcywh, quirk 8.4),
        ``bin_logits`` dict side -> ``(B, F)`` (LayerNorm-ed logits, the reference's
        ``softmax=False`` outputs), ``probs`` side -> ``(B, F)`` (their softmax),
        ``reg_tokens (B, 4, D)`` and ``features (len(feature_layers), B, N, D)`` (the whole
        sequence ``[z; o; x; prediction tokens]`` after each listed block; None without layers).
    """
    bb = model.backbone
    blocks = bb.blocks
    rates = [1.0] * len(blocks) if rates is None else list(rates)
    if len(rates) != len(blocks):
        raise ValueError(f"{len(rates)} block rates for {len(blocks)} blocks")
    dt = model.dtype
    template, online_template, search = (t.to(dt) for t in (template, online_template, search))
    b = template.shape[0]
    gt, gs = bb._grid(template.shape[-1]), bb._grid(search.shape[-1])
    zo = bb.embed(torch.cat([template, online_template], dim=0)) + bb.pos_embed_t
    xs = bb.embed(search) + bb.pos_embed_s
    seq = torch.cat([zo[:b], zo[b:], xs, bb.pred_tokens(b)], dim=1)
    wanted = set(feature_layers)
    kept: dict[int, torch.Tensor] = {}
    for j, (blk, rate) in enumerate(zip(blocks, rates, strict=True)):
        a = blk.attn.mixed(blk.norm1(seq), gt, gt, gs, gs)
        seq = _rest_of_block(blk, seq, a, float(rate))
        if j in wanted:
            kept[j] = seq
    tokens = seq[:, 2 * gt * gt + gs * gs :]
    logits = model.box_head.bin_logits(tokens)  # (B, 4, F) order l, r, t, b
    probs = torch.softmax(logits, dim=-1)
    xyxy = model.box_head.boxes(probs)
    return {
        "pred_boxes": box_xyxy_to_cxcywh(xyxy)[:, None],
        "bin_logits": {c: logits[:, i] for c, i in _TOKEN.items()},
        "probs": {c: probs[:, i] for c, i in _TOKEN.items()},
        "reg_tokens": tokens,
        "features": torch.stack([kept[j] for j in feature_layers]) if feature_layers else None,
    }


def corner_teacher_forward(
    teacher: MixFormer,
    template: torch.Tensor,
    online_template: torch.Tensor,
    search: torch.Tensor,
    feature_layers: Sequence[int] = (),
) -> dict[str, Any]:
    """Joint forward of a corner-head network (CvT, MixViT, ConvMAE, MobileNetV3) returning the
    reference's ``softmax=True`` outputs: ``pred_boxes (B, 1, 4)`` cxcywh and ``prob_tl``,
    ``prob_br (B, F*F)`` (softmax over each corner map flattened row-major, row = y), and
    ``features (len(feature_layers), B, 2T+S, D)``: the token sequence ``[z; o; x]`` after each
    listed mixed-attention block (None without layers; ViT-style backbones only)."""
    dt = teacher.dtype
    kept: dict[int, torch.Tensor] = {}
    hooks = []
    if feature_layers:
        blocks = mixed_blocks_of(teacher)
        for j in set(feature_layers):
            hooks.append(
                blocks[j].register_forward_hook(lambda m, a, out, j=j: kept.__setitem__(j, out))
            )
    try:
        _, x = teacher.backbone(template.to(dt), online_template.to(dt), search.to(dt))
    finally:
        for h in hooks:
            h.remove()
    head = teacher.box_head
    tl, br = head.score_maps(x)
    p_tl = torch.softmax(tl.flatten(1).float(), dim=1)
    p_br = torch.softmax(br.flatten(1).float(), dim=1)
    cx, cy = head.coord_x.float(), head.coord_y.float()
    xyxy = torch.stack([p_tl @ cx, p_tl @ cy, p_br @ cx, p_br @ cy], dim=1) / head.img_size
    return {
        "pred_boxes": box_xyxy_to_cxcywh(xyxy)[:, None],
        "prob_tl": p_tl,
        "prob_br": p_br,
        "features": torch.stack([kept[j] for j in feature_layers]) if feature_layers else None,
    }


def mixed_blocks_of(model: MixFormer) -> nn.ModuleList:
    """The mixed-attention blocks of a ViT-style backbone (MixViT, ConvMAE's last stage,
    MobileNetV3, MixFormerV2), whose outputs are token sequences ``(B, N, D)``.

    Raises:
        ValueError: a backbone without them (CvT's blocks work on maps of changing widths).
    """
    blocks = getattr(model.backbone, "mixed_blocks", None)
    if blocks is None:
        raise ValueError(
            f"feature mimicking needs a ViT-style teacher (MixViT, ConvMAE, MobileNetV3, "
            f"MixFormerV2); {model.config.family} has no mixed-attention token blocks"
        )
    return blocks


def corner_marginals(prob_tl: torch.Tensor, prob_br: torch.Tensor) -> dict[str, torch.Tensor]:
    """Bin targets from two corner distributions ``(B, F*F)`` (SPEC-DISTILL 3.2): ``t`` / ``b``
    the row marginals (distribution of the corner's y), ``l`` / ``r`` the column marginals."""
    n = prob_tl.shape[1]
    f = int(round(n**0.5))
    if f * f != n:
        raise ValueError(f"corner distributions of {n} cells are not square maps")
    tl, br = prob_tl.reshape(-1, f, f), prob_br.reshape(-1, f, f)
    return {"t": tl.sum(2), "l": tl.sum(1), "b": br.sum(2), "r": br.sum(1)}


def check_feature_layers(teacher: MixFormer, student: MixFormer, layers: Sequence[int]) -> None:
    """The teacher's feature-mimicking blocks ``layers`` exist and have the student's width.

    Raises:
        ValueError: otherwise (or a teacher without ViT-style blocks).
    """
    blocks = mixed_blocks_of(teacher)
    bad = [i for i in layers if not 0 <= i < len(blocks)]
    if bad:
        raise ValueError(f"distill_layers_teacher {bad} outside the teacher's {len(blocks)} blocks")
    if layers and teacher.config.backbone.out_dim != student.config.backbone.out_dim:
        raise ValueError(
            f"feature mimicking pairs blocks of the same width: the teacher's are "
            f"{teacher.config.backbone.out_dim}, the student's {student.config.backbone.out_dim}"
        )


def shared_tensors(student: nn.Module, teacher: nn.Module) -> list[str]:
    """Names of the student's tensors that ``teacher`` has with the same shape (score modules
    excepted): what :func:`copy_from_teacher` copies."""
    own, theirs = student.state_dict(), teacher.state_dict()
    return [
        k
        for k, v in own.items()
        if k in theirs
        and theirs[k].shape == v.shape
        and not k.startswith(("score_branch.", "score_head."))
    ]


def copy_from_teacher(student: nn.Module, teacher: nn.Module) -> list[str]:
    """Copy the :func:`shared_tensors` of ``teacher`` into ``student``; returns their names
    (ours, for ``init_from_teacher``)."""
    names = shared_tensors(student, teacher)
    own, theirs = student.state_dict(), teacher.state_dict()
    with torch.no_grad():
        for k in names:
            own[k].copy_(theirs[k])
    return names


def freeze_teacher(teacher: nn.Module) -> nn.Module:
    """Eval mode (BatchNorm on its running statistics, no DropPath) and no gradients: the
    teacher never trains (SPEC-DISTILL 1)."""
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


@torch.no_grad()
def teacher_targets(
    teacher: MixFormer,
    template: torch.Tensor,
    online_template: torch.Tensor,
    search: torch.Tensor,
    feature_layers: Sequence[int] = (),
) -> dict[str, Any]:
    """What the teacher contributes to the loss, without gradients.

    A MixFormerV2 teacher (stage 2) gives its bin probabilities and, for ``feature_layers``,
    its block outputs; a corner-head teacher (stage 1) the marginals of its corner maps and,
    for ``feature_layers`` (our addition for small budgets, see
    :func:`corner_teacher_forward`), its block outputs without prediction tokens.

    Returns:
        ``pred_boxes (B, 1, 4)``, ``targets`` side -> ``(B, F)`` and ``features`` (or None);
        stage 1 also ``prob_tl`` / ``prob_br``.

    Raises:
        RuntimeError: the teacher is in train mode (its BatchNorm / DropPath would act).
        ValueError: feature layers for a teacher without ViT-style blocks.
    """
    if teacher.training:
        raise RuntimeError("the teacher must be in eval mode (freeze_teacher)")
    if isinstance(teacher, MixFormerV2):
        out = v2_forward(teacher, template, online_template, search, None, feature_layers)
        return {
            "pred_boxes": out["pred_boxes"],
            "targets": out["probs"],
            "features": out["features"],
        }
    out = corner_teacher_forward(teacher, template, online_template, search, feature_layers)
    return {**out, "targets": corner_marginals(out["prob_tl"], out["prob_br"])}


def distill_losses(
    student_out: dict[str, Any],
    teacher_out: dict[str, Any],
    search_anno: torch.Tensor,
    weights: DistillWeights = DistillWeights(),
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Total loss and its terms (SPEC-DISTILL 3.3, 4.3).

    Args:
        student_out: :func:`v2_forward` of the student (``features`` for the feature term).
        teacher_out: :func:`teacher_targets`.
        search_anno: ``(B, 4)`` normalised xywh ground truth (clamped after conversion).
        weights: loss weights; the feature term enters when both outputs carry features (a
            corner-head teacher's sequences lack the prediction tokens: the student's first
            ``2T+S`` tokens are compared).
    Returns:
        ``(total, terms)``, terms 0-d tensors ``ciou``, ``l1``, ``kl_t``, ``kl_l``, ``kl_b``,
        ``kl_r``, ``kl`` (their mean), ``feat`` (stage 2), and ``(B,)`` ``iou`` / ``iou_teacher``.

    Raises:
        ValueError: the student's bins differ from the targets' (quirk 8.2), or a prediction
            holds NaN (the reference stops training, quirk 8.10).
    """
    pred = student_out["pred_boxes"]
    if torch.isnan(pred).any():
        raise ValueError("the student's boxes contain NaN (the reference stops training here)")
    ciou, l1, iou = box_losses(pred, search_anno)
    with torch.no_grad():
        _, _, iou_teacher = box_losses(teacher_out["pred_boxes"], search_anno)
    terms: dict[str, torch.Tensor] = {
        "ciou": ciou,
        "l1": l1,
        "iou": iou,
        "iou_teacher": iou_teacher,
    }
    kl_sum = None
    for c in SIDES:
        logits, target = student_out["bin_logits"][c], teacher_out["targets"][c].detach()
        if logits.shape != target.shape:
            raise ValueError(
                f"student bins {tuple(logits.shape)} differ from the teacher's targets "
                f"{tuple(target.shape)}: the student's bins must be the teacher's cells"
            )
        kl = F.kl_div(F.log_softmax(logits, dim=-1), target, reduction="batchmean")
        terms[f"kl_{c}"] = kl
        kl_sum = kl if kl_sum is None else kl_sum + kl
    assert kl_sum is not None
    terms["kl"] = kl_sum / len(SIDES)
    total = weights.ciou * ciou + weights.l1 * l1 + weights.kl * terms["kl"]
    fs, ft = student_out.get("features"), teacher_out.get("features")
    if fs is not None and ft is not None:
        if fs.shape != ft.shape:
            if fs.shape[:2] + fs.shape[3:] != ft.shape[:2] + ft.shape[3:] or (
                fs.shape[2] < ft.shape[2]
            ):
                raise ValueError(
                    f"student features {tuple(fs.shape)} cannot be paired with the teacher's "
                    f"{tuple(ft.shape)}: the widths and the token grids must match"
                )
            fs = fs[:, :, : ft.shape[2]]  # [z; o; x] without the prediction tokens
        terms["feat"] = F.mse_loss(fs, ft.detach())
        total = total + weights.feat * terms["feat"]
    return total, terms


def distill_optimizer(
    student: nn.Module,
    lr: float = 4e-4,
    backbone_lr_mult: float = 0.1,
    weight_decay: float = 1e-4,
    remove_layers: Iterable[int] = (),
) -> torch.optim.AdamW:
    """AdamW of the distillation runs (SPEC-DISTILL 2.3).

    Parameters of the removed blocks (name contains ``blocks.{i}.``) are frozen; the fixed
    position tables ``pos_embed_s`` / ``pos_embed_t`` never train. Group 0: trainable
    parameters outside the backbone (the box head) at ``lr``; group 1: trainable backbone
    parameters at ``lr * backbone_lr_mult``, the prediction tokens ``reg_tokens`` /
    ``pos_embed_reg`` and the patch embedding included (quirk 8.7). Weight decay on every
    parameter; betas 0.9 / 0.999, eps 1e-8.
    """
    removed = list(remove_layers)
    for name, p in student.named_parameters():
        if removed_parameter(name, removed) or name.endswith(("pos_embed_s", "pos_embed_t")):
            p.requires_grad_(False)
    named = [(n, p) for n, p in student.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for n, p in named if "backbone" not in n], "lr": lr},
        {"params": [p for n, p in named if "backbone" in n], "lr": lr * backbone_lr_mult},
    ]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=weight_decay)


def distill_step(
    student: MixFormerV2,
    teacher: MixFormer,
    optimizer: torch.optim.Optimizer | None,
    template: torch.Tensor,
    online_template: torch.Tensor,
    search: torch.Tensor,
    search_anno: torch.Tensor,
    *,
    rates: Sequence[float] | None = None,
    feature_pairs: Sequence[tuple[int, int]] = (),
    weights: DistillWeights = DistillWeights(),
    grad_clip: float = 0.1,
    keep_grads: bool = False,
) -> dict[str, Any]:
    """One distillation iteration (SPEC-DISTILL 2.2): student forward (its current mode),
    teacher forward (eval, no grad), losses, ``zero_grad``, backward, clipping of the global
    gradient norm of all student parameters to ``grad_clip``, optimizer step.

    Args:
        student / teacher: the networks (teacher in eval mode, :func:`freeze_teacher`).
        optimizer: :func:`distill_optimizer` of the student; None: no backward, no step
            (validation; the caller disables gradients).
        template, online_template: ``(B, 3, Ht, Ht)``; search ``(B, 3, Hs, Hs)``;
        search_anno: ``(B, 4)`` normalised xywh.
        rates: the student's residual weight per block (layer removal); None: all 1.
        feature_pairs: ``(student_block, teacher_block)`` pairs of the feature term.
        weights / grad_clip: loss weights and the clipping norm.
        keep_grads: also return a copy of every pre-clipping gradient (tests, analysis).
    Returns:
        ``loss`` (the total, detached), ``terms`` (:func:`distill_losses`), ``student`` /
        ``teacher`` outputs, and with an optimizer ``grad_norm`` (the global pre-clipping norm)
        and with ``keep_grads`` ``grads`` (name -> pre-clipping gradient of every parameter
        that has one).
    """
    s_layers = [s for s, _ in feature_pairs]
    t_layers = [t for _, t in feature_pairs]
    s_out = v2_forward(student, template, online_template, search, rates, s_layers)
    t_out = teacher_targets(teacher, template, online_template, search, t_layers)
    loss, terms = distill_losses(s_out, t_out, search_anno, weights)
    out: dict[str, Any] = {
        "loss": loss.detach(),
        "terms": terms,
        "student": s_out,
        "teacher": t_out,
    }
    if optimizer is None:
        return out
    optimizer.zero_grad()
    loss.backward()
    params = [p for p in student.parameters() if p.grad is not None]
    if keep_grads:
        out["grads"] = {
            n: p.grad.detach().clone() for n, p in student.named_parameters() if p.grad is not None
        }
    out["grad_norm"] = torch.nn.utils.clip_grad_norm_(params, grad_clip)
    optimizer.step()
    return out


def distill_rates(student: MixFormerV2, remove_layers: Iterable[int], rho: float) -> list[float]:
    """:func:`~mixformer.train.removal.block_rates` for ``student``'s depth."""
    return block_rates(len(student.backbone.blocks), remove_layers, rho)
