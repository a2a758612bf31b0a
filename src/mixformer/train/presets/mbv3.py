"""Training presets of the default model, ``mixformer-mbv3`` (CPU scale).

Its COCO-pretrained MobileNetV3 stages stay frozen (``freeze_patterns``), so the few hundred
photos of the corpus train only the mixed-attention blocks, the corner head and the score
module on top of features that already know objects. Data: real-image composites, a quarter
procedural scenes (a second, differently built generator, so that no single generator's look is
what the network learns). ``mbv3-finetune-*`` continues from the shipped weights with the
stride-16 MobileNetV3 blocks learning slowly. ``mbv3-cutout-*`` does the same on the widened
corpus (photographed objects with their real outlines as targets, occluders and look-alikes) and
trains the score module with three quarters of its negatives hard.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from mixformer.train.config import TrainConfig, register_train_preset
from mixformer.train.presets.common import TINY_REAL, TINY_STAGE1, composite_score_stage

__all__ = ["MBV3_REAL"]

MBV3_REAL: dict[str, Any] = {
    **TINY_REAL,
    "model": "mixformer-mbv3",
    "datasets": ("composite", "synthetic"),
    "dataset_ratio": (3.0, 1.0),
    "template_size": 0,
    "search_size": 0,
    "search_factor": 4.5,
    "freeze_patterns": ("backbone.features.",),
}


@register_train_preset("mbv3-real-stage1")
def _s1_mbv3_real() -> TrainConfig:
    """CPU scale: ``mixformer-mbv3``'s mixed-attention blocks and box head on composites."""
    return TrainConfig(
        **{**MBV3_REAL, **TINY_STAGE1, "epochs": 14, "lr_drop_epoch": 11, "lr": 4e-4}
    )


@register_train_preset("mbv3-real-stage2")
def _s2_mbv3_real() -> TrainConfig:
    """CPU scale stage 2: the score module of ``mixformer-mbv3``, half the negatives hard."""
    return composite_score_stage(MBV3_REAL, "mbv3-real-stage1")


# Fine-tuning the default model's pretrained stages slowly: from the shipped weights, the
# stride-16 MobileNetV3 blocks (6-11) learn at a tenth of the rate, the stem and the stride-2..8
# blocks (0-5) stay frozen.
_MBV3_EARLY = ("backbone.features.stem.",) + tuple(
    f"backbone.features.blocks.{i}." for i in range(6)
)


@register_train_preset("mbv3-finetune-stage1")
def _s1_mbv3_finetune() -> TrainConfig:
    """CPU scale: ``mixformer-mbv3`` from its shipped weights with the stride-16 MobileNetV3
    blocks fine-tuned at a tenth of the learning rate."""
    return TrainConfig(
        **{
            **MBV3_REAL,
            **TINY_STAGE1,
            "epochs": 6,
            "lr_drop_epoch": 4,
            "lr": 1e-4,
            "freeze_patterns": _MBV3_EARLY,
        },
        init_checkpoint="default",
        slow_patterns=("backbone.features.",),
        slow_lr_mult=0.1,
    )


@register_train_preset("mbv3-finetune-stage2")
def _s2_mbv3_finetune() -> TrainConfig:
    """CPU scale stage 2: the score module after ``mbv3-finetune-stage1``."""
    return composite_score_stage(MBV3_REAL, "mbv3-finetune-stage1")


@register_train_preset("mbv3-cutout-stage1")
def _s1_mbv3_cutout() -> TrainConfig:
    """CPU scale: ``mbv3-finetune-stage1`` on the widened corpus (its cut-outs are half the
    composites' objects; ``mixformer data corpus`` fetches them)."""
    return _s1_mbv3_finetune()


@register_train_preset("mbv3-cutout-stage2")
def _s2_mbv3_cutout() -> TrainConfig:
    """CPU scale stage 2 after ``mbv3-cutout-stage1``: the score module, 3/4 of its negatives
    hard (a look-alike, often another real object, or background of the same frame)."""
    return dataclasses.replace(
        composite_score_stage(MBV3_REAL, "mbv3-cutout-stage1"), hard_negative_prob=0.75
    )


@register_train_preset("mbv3-border-stage1")
def _s1_mbv3_border() -> TrainConfig:
    """CPU scale: ``mbv3-cutout-stage1`` from the shipped weights with a quarter of the
    composites' objects cut by an image edge in frame 0 (composite variant ``train-border``),
    for objects at a photo's border. Like every stage 1 it drops the score module (stop 37
    put the shipped one back to judge it: docs/default-model.md); not shipped."""
    return dataclasses.replace(_s1_mbv3_finetune(), composite_variant="train-border")


@register_train_preset("mbv3-large-stage1")
def _s1_mbv3_large() -> TrainConfig:
    """CPU scale: ``mbv3-cutout-stage1`` from the shipped weights with objects up to 0.55 of the
    frame's shorter side (composite variant ``train-large``; ``train``: 0.32), for large
    targets whose search crop is mostly padding. Drops the score module like every stage 1;
    not shipped (docs/default-model.md, stop 38)."""
    return dataclasses.replace(_s1_mbv3_finetune(), composite_variant="train-large")
