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

from mixformer.datagen.composite_config import COMPOSITE_VARIANTS
from mixformer.models.registry import Registry

__all__ = [
    "TrainConfig",
    "apply_overrides",
    "get_train_config",
    "list_train_configs",
    "load_train_config",
    "parse_key_values",
    "register_train_preset",
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
            (``mixformer.datagen.composite_config.COMPOSITE_VARIANTS``: ``train``,
            ``train-border``, ``train-large``, ``plain``, ``hard``).
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
            (``DISTILL_LAYERS_STUDENT`` / ``_TEACHER``; empty: no feature term). With
            ``distill: dense`` (ours; the reference has no feature term there) the corner-head
            teacher must be ViT-style (MixViT, ConvMAE, MobileNetV3) and of the student's width.
        init_from_teacher: ``distill: dense``: the student starts from the teacher's tensors of
            the same name and shape (ours: a student on the teacher's stem and blocks, such as
            ``mixformerv2-mbv3`` from ``mixformer-mbv3``, then learns only its prediction
            tokens and bin head from scratch).
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
    init_from_teacher: bool = False

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
        if self.composite_variant not in COMPOSITE_VARIANTS:
            raise ValueError(
                f"composite_variant must be one of {', '.join(COMPOSITE_VARIANTS)}, got "
                f"{self.composite_variant!r}"
            )
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
        if len(self.distill_layers_student) != len(self.distill_layers_teacher):
            raise ValueError(
                f"distill_layers_student has {len(self.distill_layers_student)} entries, "
                f"distill_layers_teacher {len(self.distill_layers_teacher)}: they are pairs"
            )
        if self.init_from_teacher and self.distill != "dense":
            raise ValueError(
                "init_from_teacher goes with distill='dense' (later runs start "
                "from init_checkpoint)"
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


TRAIN_PRESETS: Registry[Callable[[], TrainConfig]] = Registry("training preset")
"""Training presets: name -> a function returning the :class:`TrainConfig`. The presets live
with their family in :mod:`mixformer.train.presets` (use :func:`register_train_preset`)."""


def register_train_preset(
    name: str,
) -> Callable[[Callable[[], TrainConfig]], Callable[[], TrainConfig]]:
    """Decorator registering a function that returns the training preset ``name``."""
    return TRAIN_PRESETS.register(name)


def _presets() -> Registry[Callable[[], TrainConfig]]:
    """The registry with every family's presets imported (importing them registers them)."""
    import mixformer.train.presets  # noqa: F401

    return TRAIN_PRESETS


def list_train_configs() -> list[str]:
    """Names of the training presets, sorted."""
    return list(_presets())


def get_train_config(name: str) -> TrainConfig:
    """The preset ``name``; unknown names raise ``KeyError`` naming the closest preset."""
    return _presets().get(name)()


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
        elif str(source) in _presets():
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
