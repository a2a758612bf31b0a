"""Trainable parameters, AdamW parameter groups and the step LR schedule (SPEC 3.1, 3.2)."""

from __future__ import annotations

import logging

import torch
from torch import nn

from mixformer.train.config import TrainConfig
from mixformer.train.removal import removed_parameter

log = logging.getLogger(__name__)

__all__ = ["set_trainable", "build_optimizer", "build_scheduler"]


def set_trainable(model: nn.Module, cfg: TrainConfig) -> None:
    """Freeze what the stage does not train.

    Stage 2: only parameters whose name contains ``score``. Stage 1: everything, except with
    ``freeze_stage0`` (large model) where only backbone stages 1-2 and the box head train, and
    names matching ``freeze_patterns`` (MixViT-L's first six blocks and patch embedding); the
    fixed position tables ``pos_embed_s`` / ``pos_embed_t`` never train (MixFormerV2's learned
    ``pos_embed_reg`` does, at the backbone rate: SPEC-DISTILL 2.3). A ``distill='remove'``
    run freezes the blocks ``remove_layers`` (SPEC-DISTILL 2.3).
    """
    removed = cfg.remove_layers if cfg.distill == "remove" else ()
    for name, p in model.named_parameters():
        if removed and removed_parameter(name, removed):  # phased-out blocks (quirk 8.5)
            p.requires_grad_(False)
        elif cfg.stage == 2:
            p.requires_grad_("score" in name)
        elif cfg.freeze_stage0:
            p.requires_grad_(any(s in name for s in ("stage1", "stage2", "box_head")))
        elif any(pat in name for pat in cfg.freeze_patterns):
            p.requires_grad_(False)
        elif name.endswith((".pos_embed_s", ".pos_embed_t")):  # fixed sin-cos tables
            p.requires_grad_(False)  # (MixFormerV2's learned pos_embed_reg trains)
        else:
            p.requires_grad_("score" not in name)
    n = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info("stage %d: %d trainable parameters", cfg.stage, n)


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on all parameters.

    Stage 1: group 0 = non-backbone parameters at ``lr``, group 1 = backbone parameters at
    ``lr * backbone_lr_mult``, group 2 = parameters matching ``slow_patterns`` at
    ``lr * slow_lr_mult`` (empty groups are left out). Stage 2: one group at ``lr``.
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError("no trainable parameters")
    if cfg.stage == 2:
        groups = [{"params": [p for _, p in named], "lr": cfg.lr}]
    else:
        slow = [(n, p) for n, p in named if any(s in n for s in cfg.slow_patterns)]
        slow_ids = {id(p) for _, p in slow}
        rest = [(n, p) for n, p in named if id(p) not in slow_ids]
        groups = [
            {"params": [p for n, p in rest if "backbone" not in n], "lr": cfg.lr},
            {
                "params": [p for n, p in rest if "backbone" in n],
                "lr": cfg.lr * cfg.backbone_lr_mult,
            },
            {"params": [p for _, p in slow], "lr": cfg.lr * cfg.slow_lr_mult},
        ]
        groups = [g for g in groups if g["params"]]
    return torch.optim.AdamW(
        groups, lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=cfg.weight_decay
    )


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig
) -> torch.optim.lr_scheduler.StepLR:
    """StepLR(step_size=lr_drop_epoch, gamma=0.1), stepped after every epoch."""
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.lr_drop_epoch, gamma=0.1)
