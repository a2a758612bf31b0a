"""Training presets of the CvT family: the reference's MixFormer recipes (SPEC 3) and the
CPU-scale recipes of this project's ``mixformer-tiny``."""

from __future__ import annotations

from mixformer.train.config import TrainConfig, register_train_preset
from mixformer.train.presets.common import (
    TINY,
    TINY_REAL,
    TINY_STAGE1,
    TINY_STAGE2,
    composite_score_stage,
)

_STAGE2 = dict(
    stage=2,
    sampler="trident_pro",
    epochs=30,
    lr_drop_epoch=20,
    batch_size=32,
    backbone_lr_mult=1.0,
)


@register_train_preset("mixformer-22k-stage1")
def _s1_22k() -> TrainConfig:
    """``experiments/mixformer_cvt/baseline.yaml``: CvT-21 IN-22k init, batch 8, 500 epochs."""
    return TrainConfig(model="mixformer-22k", pretrained="CvT-21-384x384-IN-22k.pth")


@register_train_preset("mixformer-22k-stage2")
def _s2_22k() -> TrainConfig:
    """``experiments/mixformer_cvt_online/baseline.yaml``: SPM, 30 epochs, LR drop at 20."""
    return TrainConfig(
        model="mixformer-22k", stage1_checkpoint="MixFormer_ep0500.pth.tar", **_STAGE2
    )


@register_train_preset("mixformer-1k-stage1")
def _s1_1k() -> TrainConfig:
    """``baseline_1k.yaml``: CvT-21 IN-1k init and backbone LR multiplier 1.0."""
    return TrainConfig(
        model="mixformer-1k", pretrained="CvT-21-384x384-IN-1k.pth", backbone_lr_mult=1.0
    )


@register_train_preset("mixformer-1k-stage2")
def _s2_1k() -> TrainConfig:
    """``mixformer_cvt_online/baseline_1k.yaml``: 40 epochs, LR drop at 30."""
    s2 = {**_STAGE2, "epochs": 40, "lr_drop_epoch": 30}
    return TrainConfig(model="mixformer-1k", stage1_checkpoint="MixFormer_ep0500.pth.tar", **s2)


@register_train_preset("mixformer-large-stage1")
def _s1_large() -> TrainConfig:
    """``baseline_large.yaml``: CvT-W24 init, stage 0 frozen, batch 16."""
    return TrainConfig(
        model="mixformer-large",
        pretrained="CvT-w24-384x384-IN-22k.pth",
        freeze_stage0=True,
        batch_size=16,
    )


@register_train_preset("mixformer-large-stage2")
def _s2_large() -> TrainConfig:
    """``mixformer_cvt_online/baseline_large.yaml``: batch 16, 40 epochs, LR drop at 30."""
    s2 = {**_STAGE2, "epochs": 40, "lr_drop_epoch": 30, "batch_size": 16}
    return TrainConfig(model="mixformer-large", stage1_checkpoint="MixFormer_ep0500.pth.tar", **s2)


@register_train_preset("mixformer-got-stage1")
def _s1_got() -> TrainConfig:
    """``baseline_got.yaml``: GOT-10k train-full only, batch 32."""
    return TrainConfig(
        model="mixformer-22k",
        pretrained="CvT-21-384x384-IN-22k.pth",
        datasets=("got10k_train_full",),
        dataset_ratio=(1.0,),
        batch_size=32,
    )


@register_train_preset("mixformer-got-stage2")
def _s2_got() -> TrainConfig:
    """``mixformer_cvt_online/baseline_got.yaml``: GOT-10k only, 40 epochs, LR drop at 30."""
    s2 = {**_STAGE2, "epochs": 40, "lr_drop_epoch": 30}
    return TrainConfig(
        model="mixformer-22k",
        stage1_checkpoint="MixFormer_ep0500.pth.tar",
        datasets=("got10k_train_full",),
        dataset_ratio=(1.0,),
        **s2,
    )


@register_train_preset("tiny-synthetic-stage1")
def _s1_tiny() -> TrainConfig:
    """CPU scale: ``mixformer-tiny`` from random init on on-the-fly synthetic sequences."""
    return TrainConfig(**{**TINY, **TINY_STAGE1, "epochs": 28, "lr_drop_epoch": 22, "lr": 5e-4})


@register_train_preset("tiny-synthetic-stage2")
def _s2_tiny() -> TrainConfig:
    """CPU scale stage 2: train the score module of ``mixformer-tiny`` on synthetic data."""
    return TrainConfig(
        **{**TINY, **TINY_STAGE2},
        stage1_checkpoint="runs/tiny-synthetic-stage1/model_final.pth",
        samples_per_epoch=12800,
    )


@register_train_preset("tiny-real-stage1")
def _s1_tiny_real() -> TrainConfig:
    """CPU scale: fine-tune ``mixformer-tiny``'s backbone and box head on real-image composites."""
    return TrainConfig(
        **{**TINY_REAL, **TINY_STAGE1, "epochs": 36, "lr_drop_epoch": 30, "lr": 3e-4},
        init_checkpoint="runs/tiny-synthetic-stage1/model_final.pth",
    )


@register_train_preset("tiny-real-stage2")
def _s2_tiny_real() -> TrainConfig:
    """CPU scale stage 2: the score module of ``mixformer-tiny`` on real-image composites."""
    return composite_score_stage(TINY_REAL, "tiny-real-stage1")
