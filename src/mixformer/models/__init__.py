"""Networks of every MixFormer family: layers, backbones and heads (found through registries),
the model, presets (one module per family in :mod:`mixformer.models.presets`), the fused
deployment form and the factory."""

from mixformer.models import presets as _presets  # noqa: F401  (registers the presets)
from mixformer.models.attention import AttentionMap, collect_attention, set_keep_attention
from mixformer.models.config import (
    ModelConfig,
    Preset,
    get_config,
    get_preset,
    list_models,
    register_preset,
)
from mixformer.models.errors import CheckpointError
from mixformer.models.factory import build_model, default_weights_path, load_weights
from mixformer.models.fuse import fuse_model, resolve_dtype
from mixformer.models.mixformer import MixFormer, TemplateCache
from mixformer.models.mixformerv2 import MixFormerV2
from mixformer.models.registry import BACKBONES, HEADS, NETWORKS, PRESETS
from mixformer.models.release import Release, TrackingDefaults
from mixformer.models.weights import save_weights

__all__ = [
    "BACKBONES",
    "HEADS",
    "NETWORKS",
    "PRESETS",
    "AttentionMap",
    "CheckpointError",
    "MixFormer",
    "MixFormerV2",
    "ModelConfig",
    "Preset",
    "Release",
    "TemplateCache",
    "TrackingDefaults",
    "build_model",
    "collect_attention",
    "default_weights_path",
    "fuse_model",
    "get_config",
    "get_preset",
    "list_models",
    "load_weights",
    "register_preset",
    "resolve_dtype",
    "save_weights",
    "set_keep_attention",
]
