"""Schedule fragments that several families' training presets share.

* ``MIXVIT_STAGE1`` / ``MIXVIT_STAGE2``: the MixViT schedule (SPEC-MIXVIT 8), also used by
  MixViT-ConvMAE and the MixFormerV2 students.
* ``TINY``, ``TINY_STAGE1``, ``TINY_STAGE2``, ``TINY_REAL``: the CPU-scale recipes of this
  project (``mixformer-tiny``, the default ``mixformer-mbv3`` and the CPU distillation demo).
"""

from __future__ import annotations

from typing import Any

from mixformer.models import get_config
from mixformer.train.config import TrainConfig, register_train_preset

__all__ = [
    "MIXVIT_STAGE1",
    "MIXVIT_STAGE2",
    "TINY",
    "TINY_REAL",
    "TINY_STAGE1",
    "TINY_STAGE2",
    "composite_score_stage",
    "mixvit_presets",
]

# MixViT / MixViT-ConvMAE (SPEC-MIXVIT 8): 500 epochs, LR 4e-4 dropped at 400, backbone x0.1,
# search factor 4.5, MAE / ConvMAE initialisation; stage 2 trains the score module 50 epochs.
# The large models train with AMP and 3-batch gradient accumulation (the reference updates after
# batches 2, 5, 8, ... of an epoch, an off-by-one this trainer does not reproduce: it updates
# after every 3 batches).
MIXVIT_STAGE1: dict[str, Any] = dict(
    stage=1,
    epochs=500,
    lr_drop_epoch=400,
    lr=4e-4,
    backbone_lr_mult=0.1,
    batch_size=32,
    search_factor=4.5,
    search_center_jitter=4.5,
    search_scale_jitter=0.5,
    val_every=5,
)
MIXVIT_STAGE2: dict[str, Any] = dict(
    stage=2,
    sampler="trident_pro",
    epochs=50,
    lr_drop_epoch=40,
    lr=1e-4,
    backbone_lr_mult=1.0,
    batch_size=32,
    search_factor=4.5,
    val_every=5,
    stage1_checkpoint="MixFormer_ep0500.pth.tar",
)
_LARGE_STAGE1 = dict(batch_size=12, amp=True, accum_iter=3)
_FIRST_6 = tuple(f"blocks.{i}." for i in range(6)) + ("patch_embed",)
_GOT_ONLY = dict(datasets=("got10k_train_full",), dataset_ratio=(1.0,))


def mixvit_presets(model: str, pretrained: str, large: bool) -> None:
    """Register ``{model}-stage1/2`` and ``{model}-got-stage1/2`` for one MixViT model.

    Args:
        model: a MixViT or MixViT-ConvMAE model preset (its crop sizes are used).
        pretrained: the backbone initialisation file of stage 1.
        large: the large models' AMP, accumulation and (plain ViT) frozen first blocks.
    """
    mc = get_config(model)
    s1 = {**MIXVIT_STAGE1, "model": model, "pretrained": pretrained}
    if large:
        s1.update(_LARGE_STAGE1)
        if mc.family == "vit":
            s1["freeze_patterns"] = _FIRST_6
    s2 = {**MIXVIT_STAGE2, "model": model}
    if large:
        s2.update(val_every=2, lr_drop_epoch=30)
    register_train_preset(f"{model}-stage1")(lambda: TrainConfig(**s1))
    register_train_preset(f"{model}-stage2")(lambda: TrainConfig(**s2))
    register_train_preset(f"{model}-got-stage1")(
        lambda: TrainConfig(**{**s1, **_GOT_ONLY, "samples_per_epoch": 15000})
    )
    register_train_preset(f"{model}-got-stage2")(lambda: TrainConfig(**{**s2, **_GOT_ONLY}))


# CPU scale. One torch thread: on a shared 2-core machine, 2 threads ran 4x slower than 1
# (spinning OpenMP workers); the DataLoader worker runs the data pipeline beside it. The search
# jitter is milder than the reference's so the few thousand samples a CPU hour affords
# concentrate on the frame-to-frame motion the tracker meets.
TINY: dict[str, Any] = dict(
    model="mixformer-tiny",
    datasets=("synthetic",),
    dataset_ratio=(1.0,),
    val_datasets=("synthetic",),
    val_every=4,
    val_samples=64,
    synthetic_sequences=20000,
    synthetic_frames=30,
    template_size=64,
    search_size=160,
    search_center_jitter=3.0,
    search_scale_jitter=0.25,
    keep_checkpoints=2,
    num_workers=1,
    threads=1,
)

# What stage 1 and stage 2 of every CPU-scale recipe share.
TINY_STAGE1: dict[str, Any] = dict(
    stage=1, batch_size=16, samples_per_epoch=2400, backbone_lr_mult=1.0
)
TINY_STAGE2: dict[str, Any] = dict(
    stage=2,
    sampler="trident_pro",
    epochs=1,
    lr_drop_epoch=1,
    batch_size=16,
    lr=4e-4,
    backbone_lr_mult=1.0,
    val_every=1,
    val_samples=32,
)

# Real-image composites (`mixformer data corpus` builds the corpus; data_roots.corpus names it):
# objects cut from real photos composited over real photos and video frames.
TINY_REAL: dict[str, Any] = {
    **TINY,
    "datasets": ("composite",),
    "val_datasets": ("composite_val",),
    "data_roots": {"corpus": "mixformer-corpus"},
    "synthetic_frames": 40,
    "synthetic_seed": 11,
    "synthetic_val_seed": 12,
}


def composite_score_stage(base: dict[str, Any], stage1_run: str) -> TrainConfig:
    """CPU-scale stage 2 on the composites: the score module of ``runs/<stage1_run>``'s final
    weights, 9,600 samples, half the negatives hard (look-alikes and background from the same
    frames)."""
    return TrainConfig(
        **{**base, **TINY_STAGE2},
        stage1_checkpoint=f"runs/{stage1_run}/model_final.pth",
        samples_per_epoch=9600,
        hard_negative_prob=0.5,
    )
