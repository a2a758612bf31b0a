"""The networks of a training run: the student of each stage (SPEC 3.1, 3.10) and the frozen
teacher of a distillation run (SPEC-DISTILL 4)."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import torch

from mixformer.models import (
    MixFormer,
    MixFormerV2,
    build_model,
    default_weights_path,
    load_weights,
)
from mixformer.models.weights import CheckpointError, read_checkpoint, size_limit
from mixformer.train.config import TrainConfig
from mixformer.train.distill import check_feature_layers, freeze_teacher
from mixformer.train.optim import set_trainable
from mixformer.train.removal import drop_blocks

log = logging.getLogger(__name__)

__all__ = ["build_network", "build_teacher"]


def build_network(cfg: TrainConfig) -> MixFormer:
    """The network of a stage, initialised as the reference does (SPEC 3.1, 3.10).

    Stage 1: the preset with ``score_head=False, head_bn="batch"``, backbone from
    ``cfg.pretrained`` (ImageNet CvT) when given. Stage 2: the online preset (score head,
    frozen head BN) loaded from ``cfg.stage1_checkpoint``.

    Raises:
        ValueError: a named weights file does not exist or does not fit, or the crop sizes
            differ from the network's.
    """
    torch.manual_seed(cfg.seed)
    if cfg.stage == 1:
        overrides = {"score_head": False, "head_bn": "batch", **cfg.model_overrides}
        model = build_model(cfg.model, **overrides)
        if cfg.pretrained:
            if not Path(cfg.pretrained).is_file():
                raise ValueError(
                    f"pretrained backbone {cfg.pretrained} not found (download the ImageNet CvT, "
                    "MAE or ConvMAE file of the model's family, or set pretrained='' to start "
                    "from random weights)"
                )
            load_weights(model, cfg.pretrained)
        if cfg.init_checkpoint:
            init = cfg.init_checkpoint
            if init == "default":  # the weights shipped with the package for cfg.model
                shipped = default_weights_path(cfg.model)
                if shipped is None:
                    raise ValueError(f"init_checkpoint 'default': no weights ship for {cfg.model}")
                init = str(shipped)
            drop = cfg.remove_layers if cfg.distill == "finetune" else ()
            _load_init(model, init, drop)
    else:
        model = build_model(cfg.model, **cfg.model_overrides)
        if not cfg.stage1_checkpoint:
            raise ValueError("stage 2 needs stage1_checkpoint (the stage-1 result)")
        if not Path(cfg.stage1_checkpoint).is_file():
            raise ValueError(f"stage1_checkpoint {cfg.stage1_checkpoint} not found")
        load_weights(model, cfg.stage1_checkpoint)
    mc = model.config
    given = (cfg.template_size or mc.template_size, cfg.search_size or mc.search_size)
    if (mc.template_size, mc.search_size) != given:
        raise ValueError(
            f"crop sizes template_size={cfg.template_size} search_size={cfg.search_size} do not "
            f"match {cfg.model}'s {mc.template_size}/{mc.search_size}; set them to the model's"
        )
    set_trainable(model, cfg)
    return model.train()


def _load_init(model: MixFormer, path: str, drop: tuple[int, ...] = ()) -> None:
    """Start stage 1 from a network file: backbone and box head, its score module dropped;
    with ``drop`` the blocks of a deeper MixFormerV2 file are dropped and the rest renumbered
    first (SPEC-DISTILL 4.2)."""
    if not Path(path).is_file():
        raise ValueError(f"init_checkpoint {path} not found")
    limit = size_limit(model) * (4 if drop else 1)
    ckpt = read_checkpoint(path, max_bytes=limit)
    if ckpt.kind != "network":
        raise ValueError(f"init_checkpoint {path}: not a MixFormer network file ({ckpt.kind})")
    sd = {
        k: v
        for k, v in ckpt.state_dict.items()
        if not k.startswith(("score_branch.", "score_head."))
    }
    if drop:
        sd, _ = drop_blocks(sd, sorted(set(drop)))
        own = model.state_dict()
        sd.update({k: own[k] for k in own if k.endswith(("pos_embed_s", "pos_embed_t"))})
    load_weights(model, dataclasses.replace(ckpt, state_dict=sd))
    log.info("stage 1 starts from %s", path)


def build_teacher(cfg: TrainConfig, student: MixFormer) -> MixFormer:
    """The frozen teacher of a distillation run (eval mode, no gradients), checked against
    ``student``: same crops (quirk 8.2); ``dense``: a corner head whose map side is the
    student's bin count; ``remove`` / ``finetune``: a MixFormerV2 with the student's bins.

    The fixed sin-cos position tables of a file written for other crop sizes are recomputed
    for the teacher's crops (``teacher_overrides``).

    Raises:
        ValueError: no or a missing teacher file, a teacher that cannot teach this student.
    """
    path = cfg.teacher_checkpoint
    if not path:
        raise ValueError("distillation needs teacher_checkpoint (the teacher's weights file)")
    if path == "default":
        if not cfg.teacher_model:
            raise ValueError("teacher_checkpoint 'default' needs teacher_model (a preset name)")
        shipped = default_weights_path(cfg.teacher_model)
        if shipped is None:
            raise ValueError(
                f"teacher_checkpoint 'default': no weights ship for {cfg.teacher_model}"
            )
        path = str(shipped)
    if not Path(path).is_file():
        raise ValueError(f"teacher file {path} not found")
    ckpt = read_checkpoint(path)
    if ckpt.kind != "network":
        raise ValueError(f"teacher file {path}: not a MixFormer network file ({ckpt.kind})")
    if cfg.teacher_model:
        from mixformer.models.factory import preset_config

        mcfg = preset_config(cfg.teacher_model, ckpt)
    elif ckpt.config is not None:
        mcfg = ckpt.config
    else:
        raise ValueError(
            f"teacher file {path} records no model config: set teacher_model to its preset"
        )
    if cfg.teacher_overrides:
        mcfg = mcfg.replace(**cfg.teacher_overrides)
    with torch.random.fork_rng():
        teacher = MixFormer(mcfg, name=cfg.teacher_model or ckpt.preset)
    own = teacher.state_dict()
    sd = dict(ckpt.state_dict)
    for k in [k for k in sd if k.endswith(("pos_embed_s", "pos_embed_t"))]:
        if k in own and own[k].shape != sd[k].shape:  # fixed tables of other crop sizes
            sd[k] = own[k]
    try:
        load_weights(teacher, dataclasses.replace(ckpt, state_dict=sd))
    except CheckpointError as exc:
        raise ValueError(f"teacher file {path}: {exc}") from exc
    tc, sc = teacher.config, student.config
    if (tc.template_size, tc.search_size) != (sc.template_size, sc.search_size):
        raise ValueError(
            f"the teacher's crops {tc.template_size}/{tc.search_size} differ from the student's "
            f"{sc.template_size}/{sc.search_size}: set teacher_overrides (teacher and student "
            "see the same crops)"
        )
    bins = sc.corner_map_size
    if cfg.distill == "dense":
        if isinstance(teacher, MixFormerV2) or not hasattr(teacher.box_head, "score_maps"):
            raise ValueError(
                f"teacher {path} has no corner head: dense-to-sparse distillation needs a "
                "corner-head teacher (CvT, MobileNetV3, MixViT, ConvMAE)"
            )
        if cfg.distill_layers_teacher:
            check_feature_layers(teacher, student, cfg.distill_layers_teacher)
        if tc.corner_map_size != bins:
            raise ValueError(
                f"the teacher's corner map has {tc.corner_map_size} cells per side, the student "
                f"{bins} bins: set the student's bins to {tc.corner_map_size}"
            )
    else:
        if not isinstance(teacher, MixFormerV2):
            raise ValueError(
                f"teacher {path} is not a MixFormerV2: deep-to-shallow distillation needs the "
                "stage-1 student as its teacher"
            )
        if tc.corner_map_size != bins:
            raise ValueError(f"teacher bins {tc.corner_map_size} differ from the student's {bins}")
        check_feature_layers(teacher, student, cfg.distill_layers_teacher)
    log.info("teacher: %s (%s)", path, teacher.name or mcfg.family)
    return freeze_teacher(teacher)
