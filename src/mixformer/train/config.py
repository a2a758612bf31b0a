"""Training configuration: a frozen dataclass, named presets and YAML override files.

A YAML file names a preset with ``base:`` and overrides only the keys it changes::

    base: mixformer-22k-stage2
    stage1_checkpoint: runs/22k-stage1/model_final.pth
    data_roots: {lasot: /data/lasot, got10k: /data/got10k/train}

Unknown keys are rejected with the closest valid key. Command-line ``key=value`` pairs are
parsed as YAML scalars (``epochs=3``, ``lr=1e-3``, ``datasets=[synthetic]``) and applied last.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "TrainConfig",
    "apply_overrides",
    "get_train_config",
    "list_train_configs",
    "load_train_config",
    "parse_key_values",
]

DATASET_NAMES = (
    "synthetic",
    "composite",
    "composite_val",
    "lasot",
    "got10k_vottrain",
    "got10k_votval",
    "got10k_train_full",
    "trackingnet",
    "coco17",
    "generic",
)

DISTILL_KINDS = ("", "dense", "remove", "finetune")
"""``TrainConfig.distill`` values: none, run 1, run 2a, run 2b (SPEC-DISTILL 1)."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on (SPEC 3.1-3.5 defaults are the stage-1 22k values).

    Attributes:
        stage: 1 (box head, CIoU + L1) or 2 (score module, BCE).
        model: model preset name (``mixformer.list_models()``).
        model_overrides: :class:`~mixformer.models.ModelConfig` fields to change.
        pretrained: stage 1: ImageNet CvT backbone file (SPEC 3.10), "" for random init.
        stage1_checkpoint: stage 2: the stage-1 checkpoint the network starts from.
        init_checkpoint: stage 1: a network checkpoint (this project's or a release file;
            ``default``: the weights shipped for ``model``) whose backbone and box head the run
            starts from (fine-tuning; its score module, if any, is dropped). "" for none.
        datasets: training dataset names, sampled with ``dataset_ratio``.
        dataset_ratio: relative sampling weights (empty: uniform).
        val_datasets: validation dataset names (empty: no validation).
        data_roots: dataset name (or family: ``lasot``, ``got10k``, ``trackingnet``, ``coco``,
            ``generic``, ``corpus``) -> root folder; ``corpus`` is the real-image corpus of
            ``mixformer data corpus`` that ``composite`` / ``composite_val`` read.
        synthetic_sequences / synthetic_frames / synthetic_size / synthetic_seed: the on-the-fly
            synthetic training set (sequence ``k`` is generated from ``(seed, k)``).
        synthetic_val_seed: seed of the synthetic validation set.
            The ``synthetic_*`` fields size the ``composite`` datasets too (sequences, frames,
            frame size, seeds).
        composite_variant: difficulty of the composited training sequences
            (``mixformer.datagen.composite.COMPOSITE_VARIANTS``: ``train``, ``plain``, ``hard``).
        sampler: ``causal`` (stage 1) or ``trident_pro`` (stage 2).
        max_gap: frame gap for sampling; pos_prob: positive-sample probability (stage 2).
        hard_negative_prob: stage 2 (ours; 0 = the reference): fraction of negatives whose
            search box sits on a distractor or on background of the same frame.
        template_factor / template_size / search_factor / search_size: crop geometry; sizes 0
            (the default) are the model's (``ModelConfig.template_size`` / ``search_size``).
        search_center_jitter / search_scale_jitter: search-box jitter (templates: none).
        grayscale_prob / brightness_jitter: augmentations.
        epochs / lr_drop_epoch: schedule (StepLR gamma 0.1 after ``lr_drop_epoch`` epochs).
        batch_size: samples per process per micro-batch; accum_iter: micro-batches per step.
        samples_per_epoch / val_samples: samples drawn per epoch (all processes together).
        val_every: validate when ``epoch % val_every == 0``.
        lr / backbone_lr_mult / weight_decay / grad_clip: AdamW and clipping.
        freeze_stage0: large model: train only backbone stages 1-2 and the box head.
        freeze_patterns: stage 1: parameters whose name contains one of these are frozen
            (MixViT-L's ``FREEZE_FIRST_6LAYERS``: ``blocks.0.`` ... ``blocks.5.``, ``patch_embed``).
        slow_patterns / slow_lr_mult: stage 1 (ours): trainable parameters whose name contains
            one of ``slow_patterns`` learn at ``lr * slow_lr_mult`` (pretrained stages fine-tuned
            slowly); checked after ``freeze_patterns``.
        iou_weight / l1_weight / score_weight: loss weights.
        amp: mixed precision (CUDA only; ignored with a warning on the CPU).
        num_workers: DataLoader workers per process.
        seed: base seed (data, model init and DropPath derive from it).
        keep_checkpoints: how many epoch checkpoints to keep (0: all).
        tensorboard: write TensorBoard scalars when the package is installed.
        log_every: steps between TensorBoard / progress updates.
        threads: torch CPU threads (0: leave the torch default).
        distill: MixFormerV2 distillation (SPEC-DISTILL; ``stage`` must be 1, ``model`` a
            MixFormerV2 student): ``""`` none, ``dense`` (dense-to-sparse from a corner-head
            teacher, run 1), ``remove`` (deep-to-shallow layer removal, run 2a: the blocks
            ``remove_layers`` are phased out along the cosine schedule and frozen; the final
            weights are the converted shallower student), ``finetune`` (the shallower student
            distilled further, run 2b).
        teacher_model: the teacher's model preset; "" takes the config recorded in
            ``teacher_checkpoint`` (a checkpoint of this project, e.g. a distilled student).
        teacher_overrides: :class:`~mixformer.models.ModelConfig` fields of the teacher to change
            (e.g. its crop sizes; they must equal the student's, quirk 8.2).
        teacher_checkpoint: the teacher's weights; ``default``: the weights shipped for
            ``teacher_model``. The teacher is frozen and runs in eval mode.
        kl_weight / feat_weight: weights of the mean bin KL (``CORNER_WEIGHT``) and of the
            feature-mimicking MSE (``FEAT_WEIGHT``, used with feature pairs).
        remove_layers: ``remove``: the student blocks phased out; ``finetune``: blocks dropped
            from a deeper ``init_checkpoint`` (the reference's ``INVALID_LAYERS``).
        phase_out_epochs: epochs of the cosine removal schedule (the reference's hard-coded 40).
        distill_layers_student / distill_layers_teacher: paired blocks of the feature term
            (``DISTILL_LAYERS_STUDENT`` / ``_TEACHER``; empty: no feature term).
    """

    stage: int = 1
    model: str = "mixformer-22k"
    model_overrides: dict[str, Any] = field(default_factory=dict)
    pretrained: str = ""
    stage1_checkpoint: str = ""
    init_checkpoint: str = ""
    datasets: tuple[str, ...] = ("got10k_vottrain", "lasot", "coco17", "trackingnet")
    dataset_ratio: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0)
    val_datasets: tuple[str, ...] = ("got10k_votval",)
    data_roots: dict[str, str] = field(default_factory=dict)
    synthetic_sequences: int = 2000
    synthetic_frames: int = 60
    synthetic_size: tuple[int, int] = (240, 320)
    synthetic_seed: int = 1
    synthetic_val_seed: int = 2
    composite_variant: str = "train"
    sampler: str = "causal"
    max_gap: int = 200
    pos_prob: float = 0.5
    hard_negative_prob: float = 0.0
    template_factor: float = 2.0
    template_size: int = 0
    search_factor: float = 5.0
    search_size: int = 0
    search_center_jitter: float = 4.5
    search_scale_jitter: float = 0.5
    grayscale_prob: float = 0.05
    brightness_jitter: float = 0.2
    epochs: int = 500
    lr_drop_epoch: int = 400
    batch_size: int = 8
    accum_iter: int = 1
    samples_per_epoch: int = 60000
    val_samples: int = 10000
    val_every: int = 5
    lr: float = 1e-4
    backbone_lr_mult: float = 0.1
    weight_decay: float = 1e-4
    grad_clip: float = 0.1
    freeze_stage0: bool = False
    freeze_patterns: tuple[str, ...] = ()
    slow_patterns: tuple[str, ...] = ()
    slow_lr_mult: float = 0.1
    iou_weight: float = 2.0
    l1_weight: float = 5.0
    score_weight: float = 1.0
    amp: bool = False
    num_workers: int = 0
    seed: int = 42
    keep_checkpoints: int = 3
    tensorboard: bool = True
    log_every: int = 10
    threads: int = 0
    distill: str = ""
    teacher_model: str = ""
    teacher_overrides: dict[str, Any] = field(default_factory=dict)
    teacher_checkpoint: str = ""
    kl_weight: float = 5.0
    feat_weight: float = 0.2
    remove_layers: tuple[int, ...] = ()
    phase_out_epochs: int = 40
    distill_layers_student: tuple[int, ...] = ()
    distill_layers_teacher: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        for name in (
            "datasets",
            "dataset_ratio",
            "val_datasets",
            "synthetic_size",
            "freeze_patterns",
            "slow_patterns",
            "remove_layers",
            "distill_layers_student",
            "distill_layers_teacher",
        ):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first inconsistent field."""
        if self.stage not in (1, 2):
            raise ValueError(f"stage must be 1 or 2, got {self.stage}")
        if self.sampler not in ("causal", "trident_pro"):
            raise ValueError(f"sampler must be 'causal' or 'trident_pro', got {self.sampler!r}")
        for name in self.datasets + self.val_datasets:
            if name not in DATASET_NAMES:
                close = difflib.get_close_matches(name, DATASET_NAMES, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ValueError(
                    f"unknown dataset {name!r}{hint} (known: {', '.join(DATASET_NAMES)})"
                )
        if not self.datasets:
            raise ValueError("datasets must name at least one training dataset")
        if self.dataset_ratio and len(self.dataset_ratio) != len(self.datasets):
            raise ValueError(
                f"dataset_ratio has {len(self.dataset_ratio)} entries for "
                f"{len(self.datasets)} datasets"
            )
        positive = ("epochs", "batch_size", "accum_iter", "samples_per_epoch", "val_every")
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if len(self.synthetic_size) != 2:
            raise ValueError(f"synthetic_size must be (height, width), got {self.synthetic_size}")
        self._validate_distill()

    def _validate_distill(self) -> None:
        if self.distill not in DISTILL_KINDS:
            raise ValueError(
                f"distill must be one of {', '.join(repr(k) for k in DISTILL_KINDS)}, "
                f"got {self.distill!r}"
            )
        if not self.distill:
            return
        if self.stage != 1:
            raise ValueError("distill runs are stage 1 (the score head is a plain stage 2)")
        if self.distill == "remove" and not self.remove_layers:
            raise ValueError("distill='remove' needs remove_layers (the blocks to phase out)")
        if self.distill == "dense" and self.distill_layers_student:
            raise ValueError("feature pairs need a MixFormerV2 teacher (distill remove/finetune)")
        if len(self.distill_layers_student) != len(self.distill_layers_teacher):
            raise ValueError(
                f"distill_layers_student has {len(self.distill_layers_student)} entries, "
                f"distill_layers_teacher {len(self.distill_layers_teacher)}: they are pairs"
            )
        if self.phase_out_epochs < 1:
            raise ValueError(f"phase_out_epochs must be >= 1, got {self.phase_out_epochs}")

    @property
    def ratio(self) -> tuple[float, ...]:
        """Sampling weights, one per training dataset."""
        return self.dataset_ratio or tuple(1.0 for _ in self.datasets)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes``; unknown keys raise ``KeyError`` naming the closest key."""
        valid = {f.name for f in dataclasses.fields(self)}
        for key in changes:
            if key not in valid:
                raise KeyError(_unknown_key(key, valid))
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain python types only (lists for tuples), for checkpoints and YAML."""
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = (
                list(v) if isinstance(v, tuple) else (dict(v) if isinstance(v, dict) else v)
            )
        return out

    def with_model_crops(self) -> TrainConfig:
        """This config with crop sizes 0 replaced by the model's (preset + ``model_overrides``)."""
        if self.template_size and self.search_size:
            return self
        from mixformer.models import get_config

        mc = get_config(self.model).replace(**self.model_overrides)
        return self.replace(
            template_size=self.template_size or mc.template_size,
            search_size=self.search_size or mc.search_size,
        )

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`."""
        return cls().replace(**d)


def _unknown_key(key: str, valid: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, sorted(valid), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown training config key {key!r}{hint}"


_PRESETS: dict[str, Callable[[], TrainConfig]] = {}


def _preset(name: str) -> Callable[[Callable[[], TrainConfig]], Callable[[], TrainConfig]]:
    def deco(fn: Callable[[], TrainConfig]) -> Callable[[], TrainConfig]:
        _PRESETS[name] = fn
        return fn

    return deco


def list_train_configs() -> list[str]:
    """Names of the training presets, sorted."""
    return sorted(_PRESETS)


def get_train_config(name: str) -> TrainConfig:
    """The preset ``name``; unknown names raise ``KeyError`` naming the closest preset."""
    if name not in _PRESETS:
        close = difflib.get_close_matches(name, list(_PRESETS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise KeyError(
            f"unknown training preset {name!r}{hint} (available: {', '.join(list_train_configs())})"
        )
    return _PRESETS[name]()


_STAGE2 = dict(
    stage=2,
    sampler="trident_pro",
    epochs=30,
    lr_drop_epoch=20,
    batch_size=32,
    backbone_lr_mult=1.0,
)


@_preset("mixformer-22k-stage1")
def _s1_22k() -> TrainConfig:
    """``experiments/mixformer_cvt/baseline.yaml``: CvT-21 IN-22k init, batch 8, 500 epochs."""
    return TrainConfig(model="mixformer-22k", pretrained="CvT-21-384x384-IN-22k.pth")


@_preset("mixformer-22k-stage2")
def _s2_22k() -> TrainConfig:
    """``experiments/mixformer_cvt_online/baseline.yaml``: SPM, 30 epochs, LR drop at 20."""
    return TrainConfig(
        model="mixformer-22k", stage1_checkpoint="MixFormer_ep0500.pth.tar", **_STAGE2
    )


@_preset("mixformer-1k-stage1")
def _s1_1k() -> TrainConfig:
    """``baseline_1k.yaml``: CvT-21 IN-1k init and backbone LR multiplier 1.0."""
    return TrainConfig(
        model="mixformer-1k", pretrained="CvT-21-384x384-IN-1k.pth", backbone_lr_mult=1.0
    )


@_preset("mixformer-1k-stage2")
def _s2_1k() -> TrainConfig:
    """``mixformer_cvt_online/baseline_1k.yaml``: 40 epochs, LR drop at 30."""
    s2 = {**_STAGE2, "epochs": 40, "lr_drop_epoch": 30}
    return TrainConfig(model="mixformer-1k", stage1_checkpoint="MixFormer_ep0500.pth.tar", **s2)


@_preset("mixformer-large-stage1")
def _s1_large() -> TrainConfig:
    """``baseline_large.yaml``: CvT-W24 init, stage 0 frozen, batch 16."""
    return TrainConfig(
        model="mixformer-large",
        pretrained="CvT-w24-384x384-IN-22k.pth",
        freeze_stage0=True,
        batch_size=16,
    )


@_preset("mixformer-large-stage2")
def _s2_large() -> TrainConfig:
    """``mixformer_cvt_online/baseline_large.yaml``: batch 16, 40 epochs, LR drop at 30."""
    s2 = {**_STAGE2, "epochs": 40, "lr_drop_epoch": 30, "batch_size": 16}
    return TrainConfig(model="mixformer-large", stage1_checkpoint="MixFormer_ep0500.pth.tar", **s2)


@_preset("mixformer-got-stage1")
def _s1_got() -> TrainConfig:
    """``baseline_got.yaml``: GOT-10k train-full only, batch 32."""
    return TrainConfig(
        model="mixformer-22k",
        pretrained="CvT-21-384x384-IN-22k.pth",
        datasets=("got10k_train_full",),
        dataset_ratio=(1.0,),
        batch_size=32,
    )


@_preset("mixformer-got-stage2")
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


# MixViT / MixViT-ConvMAE (SPEC-MIXVIT 8): 500 epochs, LR 4e-4 dropped at 400, backbone x0.1,
# search factor 4.5, MAE / ConvMAE initialisation; stage 2 trains the score module 50 epochs.
# The large models train with AMP and 3-batch gradient accumulation (the reference updates after
# batches 2, 5, 8, ... of an epoch, an off-by-one this trainer does not reproduce: it updates
# after every 3 batches).
_MIXVIT_STAGE1 = dict(
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
_MIXVIT_STAGE2 = dict(
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


def _mixvit_presets(model: str, stem: str, pretrained: str, large: bool) -> None:
    """Register ``{stem}-stage1/2`` and ``{stem}-got-stage1/2`` for one MixViT model."""
    from mixformer.models import get_config

    mc = get_config(model)
    sizes = dict(model=model)  # crop sizes: the model's
    s1 = {**_MIXVIT_STAGE1, **sizes, "pretrained": pretrained}
    if large:
        s1.update(_LARGE_STAGE1)
        if mc.family == "vit":
            s1["freeze_patterns"] = _FIRST_6
    s2 = {**_MIXVIT_STAGE2, **sizes}
    if large:
        s2.update(val_every=2, lr_drop_epoch=30)
    _preset(f"{stem}-stage1")(lambda: TrainConfig(**s1))
    _preset(f"{stem}-stage2")(lambda: TrainConfig(**s2))
    _preset(f"{stem}-got-stage1")(
        lambda: TrainConfig(**{**s1, **_GOT_ONLY, "samples_per_epoch": 15000})
    )
    _preset(f"{stem}-got-stage2")(lambda: TrainConfig(**{**s2, **_GOT_ONLY}))


_mixvit_presets("mixvit-b", "mixvit-b", "mae_pretrain_vit_base.pth", large=False)
_mixvit_presets("mixvit-l", "mixvit-l", "mae_pretrain_vit_large.pth", large=True)
_mixvit_presets("mixvit-convmae-b", "mixvit-convmae-b", "convmae_base.pth", large=False)
_mixvit_presets("mixvit-convmae-l", "mixvit-convmae-l", "convmae_large.pth", large=True)


# CPU scale. One torch thread: on a shared 2-core machine, 2 threads ran 4x slower than 1
# (spinning OpenMP workers); the DataLoader worker runs the data pipeline beside it. The search
# jitter is milder than the reference's so the few thousand samples a CPU hour affords
# concentrate on the frame-to-frame motion the tracker meets.
_TINY = dict(
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


# What stage 1 and stage 2 of every tiny recipe share.
_TINY_STAGE1 = dict(stage=1, batch_size=16, samples_per_epoch=2400, backbone_lr_mult=1.0)
_TINY_STAGE2 = dict(
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


@_preset("tiny-synthetic-stage1")
def _s1_tiny() -> TrainConfig:
    """CPU scale: ``mixformer-tiny`` from random init on on-the-fly synthetic sequences."""
    return TrainConfig(**{**_TINY, **_TINY_STAGE1, "epochs": 28, "lr_drop_epoch": 22, "lr": 5e-4})


@_preset("tiny-synthetic-stage2")
def _s2_tiny() -> TrainConfig:
    """CPU scale stage 2: train the score module of ``mixformer-tiny`` on synthetic data."""
    return TrainConfig(
        **{**_TINY, **_TINY_STAGE2},
        stage1_checkpoint="runs/tiny-synthetic-stage1/model_final.pth",
        samples_per_epoch=12800,
    )


# Real-image fine-tuning of mixformer-tiny (the shipped model): starts from the synthetic stage 1
# and trains on objects cut from real photos composited over real photos and video frames
# (`mixformer data corpus` builds the corpus; data_roots.corpus names it).
_TINY_REAL = {
    **_TINY,
    "datasets": ("composite",),
    "val_datasets": ("composite_val",),
    "data_roots": {"corpus": "mixformer-corpus"},
    "synthetic_frames": 40,
    "synthetic_seed": 11,
    "synthetic_val_seed": 12,
}


@_preset("tiny-real-stage1")
def _s1_tiny_real() -> TrainConfig:
    """CPU scale: fine-tune ``mixformer-tiny``'s backbone and box head on real-image composites."""
    return TrainConfig(
        **{**_TINY_REAL, **_TINY_STAGE1, "epochs": 36, "lr_drop_epoch": 30, "lr": 3e-4},
        init_checkpoint="runs/tiny-synthetic-stage1/model_final.pth",
    )


@_preset("tiny-real-stage2")
def _s2_tiny_real() -> TrainConfig:
    """CPU scale stage 2: the score module of ``mixformer-tiny`` on real-image composites."""
    return TrainConfig(
        **{**_TINY_REAL, **_TINY_STAGE2},
        stage1_checkpoint="runs/tiny-real-stage1/model_final.pth",
        samples_per_epoch=9600,
        hard_negative_prob=0.5,
    )


# The default model (``mixformer-mbv3``): its COCO-pretrained MobileNetV3 stages stay frozen
# (``freeze_patterns``), so the few hundred photos of the corpus train only the mixed-attention
# blocks, the corner head and the score module on top of features that already know objects.
# Data: real-image composites, a quarter procedural scenes (a second, differently built
# generator, so that no single generator's look is what the network learns).
_MBV3_REAL = {
    **_TINY_REAL,
    "model": "mixformer-mbv3",
    "datasets": ("composite", "synthetic"),
    "dataset_ratio": (3.0, 1.0),
    "template_size": 0,
    "search_size": 0,
    "search_factor": 4.5,
    "freeze_patterns": ("backbone.features.",),
}


@_preset("mbv3-real-stage1")
def _s1_mbv3_real() -> TrainConfig:
    """CPU scale: ``mixformer-mbv3``'s mixed-attention blocks and box head on composites."""
    return TrainConfig(
        **{**_MBV3_REAL, **_TINY_STAGE1, "epochs": 14, "lr_drop_epoch": 11, "lr": 4e-4}
    )


@_preset("mbv3-real-stage2")
def _s2_mbv3_real() -> TrainConfig:
    """CPU scale stage 2: the score module of ``mixformer-mbv3``, half the negatives hard."""
    return TrainConfig(
        **{**_MBV3_REAL, **_TINY_STAGE2},
        stage1_checkpoint="runs/mbv3-real-stage1/model_final.pth",
        samples_per_epoch=9600,
        hard_negative_prob=0.5,
    )


# Fine-tuning the default model's pretrained stages slowly: from the shipped weights, the
# stride-16 MobileNetV3 blocks (6-11) learn at a tenth of the rate, the stem and the stride-2..8
# blocks (0-5) stay frozen.
_MBV3_EARLY = ("backbone.features.stem.",) + tuple(
    f"backbone.features.blocks.{i}." for i in range(6)
)


@_preset("mbv3-finetune-stage1")
def _s1_mbv3_finetune() -> TrainConfig:
    """CPU scale: ``mixformer-mbv3`` from its shipped weights with the stride-16 MobileNetV3
    blocks fine-tuned at a tenth of the learning rate."""
    return TrainConfig(
        **{
            **_MBV3_REAL,
            **_TINY_STAGE1,
            "epochs": 6,
            "lr_drop_epoch": 4,
            "lr": 1e-4,
            "freeze_patterns": _MBV3_EARLY,
        },
        init_checkpoint="default",
        slow_patterns=("backbone.features.",),
        slow_lr_mult=0.1,
    )


@_preset("mbv3-finetune-stage2")
def _s2_mbv3_finetune() -> TrainConfig:
    """CPU scale stage 2: the score module after ``mbv3-finetune-stage1``."""
    return TrainConfig(
        **{**_MBV3_REAL, **_TINY_STAGE2},
        stage1_checkpoint="runs/mbv3-finetune-stage1/model_final.pth",
        samples_per_epoch=9600,
        hard_negative_prob=0.5,
    )


def _coerce(cfg: TrainConfig, key: str, value: Any) -> Any:
    """Make YAML values fit the field type (lists -> tuples for tuple fields)."""
    current = getattr(cfg, key)
    if (
        isinstance(value, str)
        and isinstance(current, (int, float))
        and not isinstance(current, bool)
    ):
        # YAML 1.1 reads "1e-4" as a string.
        try:
            return type(current)(float(value)) if isinstance(current, float) else int(value)
        except ValueError as exc:
            raise ValueError(f"{key} must be a number, got {value!r}") from exc
    if isinstance(current, tuple) and isinstance(value, (list, tuple)):
        return tuple(value)
    if isinstance(current, tuple) and isinstance(value, str):
        return (value,)
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(current, dict) and not isinstance(value, dict):
        raise ValueError(f"{key} must be a mapping, got {value!r}")
    return value


def apply_overrides(cfg: TrainConfig, overrides: dict[str, Any]) -> TrainConfig:
    """``cfg`` with ``overrides`` applied (dict fields are merged, not replaced).

    Raises:
        KeyError: unknown key (the message names the closest valid key).
    """
    valid = {f.name for f in dataclasses.fields(cfg)}
    changes: dict[str, Any] = {}
    for key, value in overrides.items():
        if key not in valid:
            raise KeyError(_unknown_key(key, valid))
        value = _coerce(cfg, key, value)
        if isinstance(value, dict):
            value = {**getattr(cfg, key), **value}
        changes[key] = value
    if "datasets" in changes and "dataset_ratio" not in changes:
        changes["dataset_ratio"] = ()  # uniform over the new list
    return cfg.replace(**changes)


def parse_key_values(pairs: Iterable[str]) -> dict[str, Any]:
    """``["epochs=3", "data_roots.lasot=/d"]`` -> ``{"epochs": 3, "data_roots": {"lasot": "/d"}}``.

    Raises:
        ValueError: an item without ``=``.
    """
    out: dict[str, Any] = {}
    for item in pairs:
        if "=" not in item:
            raise ValueError(f"expected key=value, got {item!r}")
        key, raw = item.split("=", 1)
        value = yaml.safe_load(raw) if raw else ""
        if "." in key:
            top, sub = key.split(".", 1)
            out.setdefault(top, {})[sub] = value
        else:
            out[key] = value
    return out


def load_train_config(
    source: str | Path, overrides: dict[str, Any] | None = None
) -> tuple[TrainConfig, str]:
    """Read a YAML override file (or take a preset name) and apply ``overrides``.

    Args:
        source: a YAML file path, or a preset name from :func:`list_train_configs`. Shipped
            files can be named without their folder (``tiny-synthetic-stage1.yaml``).
        overrides: extra ``key -> value`` pairs applied last.
    Returns:
        ``(config, name)`` where ``name`` is the YAML stem or preset name.
    Raises:
        FileNotFoundError: neither a file, a shipped file nor a preset.
        KeyError: unknown key.
        ValueError: malformed YAML or invalid values.
    """
    path = Path(source)
    if not path.is_file():
        shipped = Path(__file__).parent / "configs" / path.name
        if shipped.is_file():
            path = shipped
        elif str(source) in _PRESETS:
            cfg = get_train_config(str(source))
            return apply_overrides(cfg, overrides or {}), str(source)
        else:
            raise FileNotFoundError(
                f"training config {source} not found (neither a file nor a preset; "
                f"presets: {', '.join(list_train_configs())})"
            )
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of config keys")
    base = data.pop("base", None)
    cfg = get_train_config(base) if base else TrainConfig()
    cfg = apply_overrides(cfg, data)
    return apply_overrides(cfg, overrides or {}), path.stem


# MixFormerV2-B / -S students (SPEC-MIXFORMERV2 1.2, 6.3) trained directly with the box losses of
# stage 1 (CIoU + L1 on the prediction-token box) and the score head in stage 2 (the online
# stage: backbone and box head frozen, BCE on the score). The reference's distillation from a
# MixViT teacher is not part of this trainer. Schedule and jitter as MixViT's; search factor of
# the yamls' DATA.SEARCH.FACTOR (5.0 for B, 4.5 for S); MAE ViT-B initialisation.
def _mixformerv2_presets(model: str, search_factor: float) -> None:
    sizes = dict(model=model)  # crop sizes: the model's
    s1 = {
        **_MIXVIT_STAGE1,
        **sizes,
        "search_factor": search_factor,
        "pretrained": "mae_pretrain_vit_base.pth",
    }
    s2 = {**_MIXVIT_STAGE2, **sizes, "search_factor": search_factor}
    _preset(f"{model}-stage1")(lambda: TrainConfig(**s1))
    _preset(f"{model}-stage2")(lambda: TrainConfig(**s2))


_mixformerv2_presets("mixformerv2-b", 5.0)
_mixformerv2_presets("mixformerv2-s", 4.5)


# ---- MixFormerV2 distillation (SPEC-DISTILL) ---------------------------------------------------
# Four runs chained through their final weights (``runs/<preset>/model_final.pth``):
# ``-stage1`` dense-to-sparse from a corner-head teacher, ``-stage2`` layer removal (its final
# weights are the converted shallower student), ``-stage2-finetune`` the shallower student
# distilled further, ``-score`` the score head (a plain stage 2 of the shallower student).
def _distill_presets(
    stem: str,
    common: dict[str, Any],
    student: dict[str, Any],
    teacher: dict[str, Any],
    remove: tuple[int, ...],
    pairs: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]],
    lengths: tuple[int, int, int],
    score: dict[str, Any],
) -> None:
    """Register ``{stem}-stage1``, ``-stage2``, ``-stage2-finetune`` and ``-score``.

    ``pairs``: (teacher blocks, student blocks during removal, student blocks after it);
    ``lengths``: epochs of stage 1, the removal run and the fine-tune (LR drop at 4/5).
    """
    depth = int(student["depth"])
    shallow = {**student, "depth": depth - len(remove)}
    s1_final = f"runs/{stem}-stage1/model_final.pth"
    t_layers, s_remove, s_shallow = pairs

    def run(epochs: int, **kw: Any) -> dict[str, Any]:
        return {**common, "epochs": epochs, "lr_drop_epoch": max(1, epochs * 4 // 5), **kw}

    s1 = run(lengths[0], distill="dense", model_overrides=student, **teacher)
    s2 = run(
        lengths[1],
        distill="remove",
        model_overrides=student,
        pretrained="",
        init_checkpoint=s1_final,
        teacher_checkpoint=s1_final,
        remove_layers=remove,
        distill_layers_student=s_remove,
        distill_layers_teacher=t_layers,
    )
    s3 = run(
        lengths[2],
        distill="finetune",
        model_overrides=shallow,
        pretrained="",
        init_checkpoint=f"runs/{stem}-stage2/model_final.pth",
        teacher_checkpoint=s1_final,
        distill_layers_student=s_shallow,
        distill_layers_teacher=t_layers,
    )
    sc = {
        **score,
        "model_overrides": {k: v for k, v in shallow.items() if k != "drop_path_rate"},
        "stage1_checkpoint": f"runs/{stem}-stage2-finetune/model_final.pth",
    }
    _preset(f"{stem}-stage1")(lambda: TrainConfig(**s1))
    _preset(f"{stem}-stage2")(lambda: TrainConfig(**s2))
    _preset(f"{stem}-stage2-finetune")(lambda: TrainConfig(**s3))
    _preset(f"{stem}-score")(lambda: TrainConfig(**sc))


# MixFormerV2-B (SPEC-DISTILL 1.1): MixViT-B teacher at 128/288, a 12-block student with 72 bins
# from MAE ViT-B, blocks 0, 3, 6, 9 phased out over 40 of 45 epochs, 500 fine-tune epochs, the
# score head at LR 1e-4 for 40 epochs (LR drop at 20). The score stage keeps the student's 72
# bins (the reference loads a 72-bin student into a 96-bin online model and fails, quirk 8.8).
_DISTILL_B = dict(
    model="mixformerv2-b",
    lr=4e-4,
    backbone_lr_mult=0.1,
    batch_size=32,
    search_factor=5.0,
    val_every=5,
)
_distill_presets(
    "mixformerv2-b-distill",
    _DISTILL_B,
    {"depth": 12, "bins": 72, "drop_path_rate": 0.1},
    {
        "teacher_model": "mixvit-b",
        "teacher_checkpoint": "mixformer_vit_base_online.pth.tar",
        "pretrained": "mae_pretrain_vit_base.pth",
    },
    (0, 3, 6, 9),
    ((2, 5, 8, 11), (2, 5, 8, 11), (1, 3, 5, 7)),
    (500, 45, 500),
    {
        **_MIXVIT_STAGE2,
        "model": "mixformerv2-b",
        "search_factor": 5.0,
        "epochs": 40,
        "lr_drop_epoch": 20,
    },
)

# MixFormerV2-S: the reference has no recipe (SPEC-DISTILL 7). Ours, from the paper's
# description (4 blocks, MLP ratio 1, 224 search crop): the MLP ratio is 1 from the first run
# (layer removal drops whole blocks and cannot narrow an MLP), 8 blocks phased out to 4, search
# factor 4.5 as the online -S yaml. The MixViT-B teacher sees the same 112/224 crops (its sin-cos
# tables recomputed for them), so its corner map and the student have 56 bins. No MAE init: an
# MLP-ratio-1 block cannot take MAE's ratio-4 MLP weights.
_distill_presets(
    "mixformerv2-s-distill",
    {**_DISTILL_B, "model": "mixformerv2-s", "search_factor": 4.5},
    {"depth": 8, "mlp_ratio": 1.0, "bins": 56, "drop_path_rate": 0.1},
    {
        "teacher_model": "mixvit-b",
        "teacher_overrides": {"template_size": 112, "search_size": 224},
        "teacher_checkpoint": "mixformer_vit_base_online.pth.tar",
    },
    (0, 2, 4, 6),
    ((1, 3, 5, 7), (1, 3, 5, 7), (0, 1, 2, 3)),
    (500, 45, 500),
    {**_MIXVIT_STAGE2, "model": "mixformerv2-s", "epochs": 40, "lr_drop_epoch": 20},
)

# CPU scale: the shipped default model (mixformer-mbv3, corner head, 16x16 map at 256) teaches
# a 4-block MixFormerV2 of width 128 (16 bins, 128/256 crops, MLP ratio 2) from random init on
# the composites of mbv3-real-stage1; blocks 0 and 2 are phased out over 4 of 5 epochs (the
# reference's 40 of 45, scaled), leaving a 2-block student.
MBV3_DISTILL_STUDENT = {
    "embed_dim": 128,
    "depth": 4,
    "num_heads": 4,
    "mlp_ratio": 2.0,
    "bins": 16,
    "template_size": 128,
    "search_size": 256,
    "drop_path_rate": 0.0,
}
_MBV3_DISTILL = {
    **_MBV3_REAL,
    **_TINY_STAGE1,
    "model": "mixformerv2-s",
    "freeze_patterns": (),
    "lr": 4e-4,
    "phase_out_epochs": 4,
}
_distill_presets(
    "mbv3-distill-v2",
    _MBV3_DISTILL,
    MBV3_DISTILL_STUDENT,
    {"teacher_model": "mixformer-mbv3", "teacher_checkpoint": "default"},
    (0, 2),
    ((1, 3), (1, 3), (0, 1)),
    (8, 5, 4),
    {
        **_MBV3_REAL,
        **_TINY_STAGE2,
        "model": "mixformerv2-s",
        "freeze_patterns": (),
        "samples_per_epoch": 3200,
        "hard_negative_prob": 0.5,
    },
)
