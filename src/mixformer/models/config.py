"""Model configuration: a frozen dataclass plus a registry of named presets.

Every preset describes the same architecture (SPEC 1.2); only widths, depths and head counts change.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of a MixFormer-CvT network.

    Attributes:
        dim_embed: channel width of each of the three backbone stages.
        num_heads: attention heads per stage (head dim = ``dim_embed[i] / num_heads[i]``).
        depth: number of Mixed Attention blocks per stage.
        patch_size / patch_stride / patch_padding: ConvEmbed conv geometry per stage.
        mlp_ratio: hidden width of the block MLP relative to the stage width.
        drop_path_rate: maximum stochastic-depth rate per stage (linear ramp over the blocks).
        head_dim: channel width of the corner head's first conv (384 in every released model).
        score_head: build the Score Prediction Module (the online / stage-2 model).
        head_bn: ``"frozen"`` (online model, FrozenBatchNorm2d) or ``"batch"`` (stage 1).
        template_size / search_size: crop sides in pixels the network is built for.
    """

    dim_embed: tuple[int, int, int] = (64, 192, 384)
    num_heads: tuple[int, int, int] = (1, 3, 6)
    depth: tuple[int, int, int] = (1, 4, 16)
    patch_size: tuple[int, int, int] = (7, 3, 3)
    patch_stride: tuple[int, int, int] = (4, 2, 2)
    patch_padding: tuple[int, int, int] = (2, 1, 1)
    mlp_ratio: float = 4.0
    drop_path_rate: tuple[float, float, float] = (0.0, 0.0, 0.1)
    head_dim: int = 384
    score_head: bool = True
    head_bn: Literal["frozen", "batch"] = "frozen"
    template_size: int = 128
    search_size: int = 320
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def hidden_dim(self) -> int:
        """Channel width ``C`` of the final backbone features (input width of the heads)."""
        return self.dim_embed[-1]

    @property
    def feat_stride(self) -> int:
        """Total stride of the backbone (16 for every preset)."""
        s = 1
        for v in self.patch_stride:
            s *= v
        return s

    def replace(self, **changes: Any) -> ModelConfig:
        """Return a copy with ``changes`` applied; unknown names raise ``KeyError`` with a hint."""
        valid = {f.name for f in dataclasses.fields(self)}
        for k in changes:
            if k not in valid:
                raise KeyError(_unknown_key_message(k, valid))
        coerced = {k: tuple(v) if isinstance(v, list) else v for k, v in changes.items()}
        return dataclasses.replace(self, **coerced)

    def to_dict(self) -> dict[str, Any]:
        """Plain-python dict (lists instead of tuples) suitable for checkpoints and YAML."""
        d = dataclasses.asdict(self)
        d.pop("extra", None)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``KeyError``."""
        return cls().replace(**d)


def _unknown_key_message(key: str, valid: set[str]) -> str:
    close = difflib.get_close_matches(key, sorted(valid), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown config key {key!r}{hint} (valid: {', '.join(sorted(valid))})"


_PRESETS: dict[str, Callable[[], ModelConfig]] = {}


def register_preset(name: str) -> Callable[[Callable[[], ModelConfig]], Callable[[], ModelConfig]]:
    """Decorator registering a zero-argument function returning a :class:`ModelConfig`."""

    def deco(fn: Callable[[], ModelConfig]) -> Callable[[], ModelConfig]:
        if name in _PRESETS:
            raise ValueError(f"model preset {name!r} is already registered")
        _PRESETS[name] = fn
        return fn

    return deco


def list_models() -> list[str]:
    """Names of all registered model presets, sorted."""
    return sorted(_PRESETS)


def get_config(name: str) -> ModelConfig:
    """Config of preset ``name``; an unknown name raises ``KeyError`` naming the closest preset."""
    if name not in _PRESETS:
        close = difflib.get_close_matches(name, list(_PRESETS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise KeyError(f"unknown model {name!r}{hint} (available: {', '.join(list_models())})")
    return _PRESETS[name]()


@register_preset("mixformer-22k")
def _mixformer_22k() -> ModelConfig:
    """MixFormer-CvT-21, ImageNet-22k pretraining (``baseline.yaml``)."""
    return ModelConfig()


@register_preset("mixformer-1k")
def _mixformer_1k() -> ModelConfig:
    """Same architecture as 22k, ImageNet-1k pretraining (``baseline_1k.yaml``)."""
    return ModelConfig()


@register_preset("mixformer-large")
def _mixformer_large() -> ModelConfig:
    """MixFormer-L with a CvT-W24 backbone (``baseline_large.yaml``)."""
    return ModelConfig(
        dim_embed=(192, 768, 1024),
        num_heads=(3, 12, 16),
        depth=(2, 2, 12),
        drop_path_rate=(0.0, 0.0, 0.3),
    )


@register_preset("mixformer-tiny")
def _mixformer_tiny() -> ModelConfig:
    """A small member of the same architecture for tests, CPU demos and the shipped weights.

    Crops are half the reference's sides (64/160 px, the same 2:5 ratio), which costs a sixth of
    the compute per training sample: on CPU that buys six times the training data in an hour.
    """
    return ModelConfig(
        dim_embed=(32, 64, 128),
        num_heads=(1, 1, 2),
        depth=(1, 2, 2),
        drop_path_rate=(0.0, 0.0, 0.0),
        head_dim=64,
        template_size=64,
        search_size=160,
    )
