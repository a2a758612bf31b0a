"""Model configuration: a frozen dataclass (backbone config + head config + crops + tracker
defaults) and the registry of named presets (:data:`mixformer.models.registry.PRESETS`).

A model is described here, but each family's presets live next to the family, in
:mod:`mixformer.models.presets` (one module per family): the backbone family
(:data:`~mixformer.models.registry.BACKBONES`), the box head
(:data:`~mixformer.models.registry.HEADS`) and the crop sizes the network is built for, registered
with :func:`register_preset` together with the metadata of the preset's weights: the reference's
tracker settings for them on each benchmark (:class:`~mixformer.models.release.TrackingDefaults`,
copied into ``ModelConfig.tracking`` so that ``Tracker(model)`` and
``TrackerConfig.preset(benchmark, model=name)`` find them from the model alone) and the released
files (:class:`~mixformer.models.release.Release`). Checkpoints written by this project record
the whole config.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mixformer.models import backbones as _backbones  # noqa: F401  (registers the families)
from mixformer.models import heads as _heads  # noqa: F401  (registers the heads)
from mixformer.models.backbones.base import BackboneConfig
from mixformer.models.backbones.cvt import CvTConfig
from mixformer.models.heads.base import HeadConfig
from mixformer.models.heads.corner import CornerConfig
from mixformer.models.registry import BACKBONES, HEADS, PRESETS
from mixformer.models.release import Commands, Release, Schedule, TrackingDefaults

__all__ = [
    "DEFAULT_MODEL",
    "Commands",
    "ModelConfig",
    "Preset",
    "Release",
    "Schedule",
    "TrackingDefaults",
    "get_config",
    "get_preset",
    "list_models",
    "register_preset",
]

DEFAULT_MODEL = "mixformer-mbv3"
"""The preset users get without ``--model`` (its weights ship in the package)."""


# Names that ``ModelConfig.replace`` also accepts for head fields (the flat CvT-era names).
_HEAD_ALIASES = {"head_dim": "channel", "head_bn": "bn"}


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of a MixFormer network of any family.

    Attributes:
        backbone: the family's config (:class:`CvTConfig`, :class:`ViTConfig`,
            :class:`ConvMAEConfig`, ...).
        head: the box head's config (:class:`CornerConfig` or :class:`CornerUpConfig`).
        score_head: build the Score Prediction Module (the online / stage-2 model).
        template_size / search_size: crop sides in pixels the network is built for (the tracker
            and the trainer read them from here).
        tracking: the tracker settings that go with the weights (:class:`TrackingDefaults`;
            a preset fills them in from its registration, checkpoints record them). The released
            files of a preset are not part of the config: see :func:`get_preset`.
    """

    backbone: BackboneConfig = field(default_factory=CvTConfig)
    head: HeadConfig = field(default_factory=CornerConfig)
    score_head: bool = True
    template_size: int = 128
    search_size: int = 320
    tracking: TrackingDefaults = field(default_factory=TrackingDefaults, compare=False)

    @property
    def family(self) -> str:
        """Backbone family name (``"cvt"``, ``"vit"``, ``"convmae"``, ...)."""
        return self.backbone.family

    @property
    def hidden_dim(self) -> int:
        """Channel width ``C`` of the final backbone features (input width of the heads)."""
        return self.backbone.out_dim

    @property
    def feat_stride(self) -> int:
        """Total stride of the backbone (16 for every preset)."""
        return self.backbone.stride

    @property
    def head_dim(self) -> int:
        """Width of the corner head's first conv."""
        return self.head.channel

    @property
    def head_bn(self) -> str:
        """``"frozen"`` (online model) or ``"batch"`` (stage 1)."""
        return self.head.bn

    @property
    def corner_map_size(self) -> int:
        """Side of the corner heat maps (20 for CvT at 320, 72 for MixViT-B at 288)."""
        return self.head.map_size(self.search_size, self.feat_stride)

    def replace(self, **changes: Any) -> ModelConfig:
        """Copy with ``changes``: top-level fields, or fields of the backbone or head config
        (``drop_path_rate=...``, ``head_bn="batch"``, ``head_dim=64``); unknown names raise
        ``KeyError`` naming the closest one."""
        top = {f.name for f in dataclasses.fields(self)}
        b_fields = {f.name for f in dataclasses.fields(self.backbone)}
        h_fields = {f.name for f in dataclasses.fields(self.head)} | set(_HEAD_ALIASES)
        new_top: dict[str, Any] = {}
        new_b: dict[str, Any] = {}
        new_h: dict[str, Any] = {}
        for k, v in changes.items():
            v = tuple(v) if isinstance(v, list) else v
            if k in top:
                new_top[k] = v
            elif k in b_fields:
                new_b[k] = v
            elif k in h_fields:
                new_h[_HEAD_ALIASES.get(k, k)] = v
            else:
                raise KeyError(_unknown_key_message(k, top | b_fields | h_fields))
        out = dataclasses.replace(self, **new_top)
        if new_b:
            out = dataclasses.replace(out, backbone=dataclasses.replace(out.backbone, **new_b))
        if new_h:
            out = dataclasses.replace(out, head=dataclasses.replace(out.head, **new_h))
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain-python dict (lists instead of tuples) suitable for checkpoints and YAML."""
        return {
            "backbone": self.backbone.to_dict(),
            "head": self.head.to_dict(),
            "score_head": self.score_head,
            "template_size": self.template_size,
            "search_size": self.search_size,
            "tracking": self.tracking.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict`; also reads the flat CvT dicts of earlier versions and the
        ``releases`` entry of version <= 0.4 dicts (ignored: release files are preset metadata).

        Raises:
            KeyError: an unknown family, head type or key.
        """
        d = dict(d)
        if "backbone" not in d:
            return _from_flat_cvt(d)
        b = dict(d.pop("backbone"))
        h = dict(d.pop("head", {"type": "corner"}))
        bcfg = _build_sub(BACKBONES.get(b.pop("family", "cvt")).Config, b)
        hcfg = _build_sub(HEADS.get(h.pop("type", "corner")).Config, h)
        tracking = TrackingDefaults.from_dict(d.pop("tracking", {}) or {})
        d.pop("releases", None)
        out = cls(backbone=bcfg, head=hcfg, tracking=tracking)
        return out.replace(**d) if d else out


def _build_sub(kind: type, values: Mapping[str, Any]) -> Any:
    valid = {f.name for f in dataclasses.fields(kind)}
    for k in values:
        if k not in valid:
            raise KeyError(_unknown_key_message(k, valid))
    return kind(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def _from_flat_cvt(d: Mapping[str, Any]) -> ModelConfig:
    """A config dict of version <= 0.1 checkpoints: CvT fields, head fields and crops flat."""
    d = {k: v for k, v in d.items() if k != "extra"}
    cfg = ModelConfig(tracking=get_config("mixformer-22k").tracking)
    return cfg.replace(**d)


def _unknown_key_message(key: str, valid: set[str]) -> str:
    close = difflib.get_close_matches(key, sorted(valid), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown config key {key!r}{hint} (valid: {', '.join(sorted(valid))})"


@dataclass(frozen=True)
class Preset:
    """A registered model preset: how to build its config, and the metadata of its weights.

    Attributes:
        name: the preset name (``"mixformer-22k"``).
        build: zero-argument function returning the architecture's :class:`ModelConfig`.
        tracking: the reference's tracker settings for the preset's weights, put into the
            config's ``tracking`` (None: keep what ``build`` returns).
        releases: the released files the preset loads (``build_model(name, weights=FILE)``).
    """

    name: str
    build: Callable[[], ModelConfig]
    tracking: TrackingDefaults | None = None
    releases: tuple[Release, ...] = ()

    def config(self) -> ModelConfig:
        """A fresh :class:`ModelConfig` of the preset (with its tracker defaults)."""
        cfg = self.build()
        return cfg if self.tracking is None else dataclasses.replace(cfg, tracking=self.tracking)

    @property
    def files(self) -> tuple[str, ...]:
        """File names of the released weights (empty for presets of this project)."""
        return tuple(r.file for r in self.releases)

    def release(self, file: str | Path) -> Release | None:
        """The released file named like ``file`` (its base name), or None."""
        name = Path(file).name
        return next((r for r in self.releases if r.file == name), None)

    @property
    def release_page(self) -> str:
        """Where the released files are published (``""`` without released files)."""
        return self.releases[0].page if self.releases else ""


def register_preset(
    name: str,
    *,
    tracking: TrackingDefaults | None = None,
    releases: tuple[Release, ...] = (),
) -> Callable[[Callable[[], ModelConfig]], Callable[[], ModelConfig]]:
    """Decorator registering a zero-argument function returning a :class:`ModelConfig` as preset
    ``name``, with the metadata of its weights (see :class:`Preset`); a second registration of
    ``name`` raises ``ValueError``."""

    def deco(fn: Callable[[], ModelConfig]) -> Callable[[], ModelConfig]:
        PRESETS.register(name)(Preset(name, fn, tracking, tuple(releases)))
        return fn

    return deco


def _presets() -> Any:
    # The family modules register the built-in presets on import (mixformer.models imports them
    # too; this covers ``import mixformer.models.config`` alone).
    import mixformer.models.presets  # noqa: F401

    return PRESETS


def list_models() -> list[str]:
    """Names of all registered model presets, sorted."""
    return list(_presets())


def get_preset(name: str) -> Preset:
    """The registered preset ``name`` (config and weights metadata); an unknown name raises
    ``KeyError`` naming the closest preset."""
    return _presets().get(name)


def get_config(name: str) -> ModelConfig:
    """Config of preset ``name``; an unknown name raises ``KeyError`` naming the closest preset."""
    return get_preset(name).config()
