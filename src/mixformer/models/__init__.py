"""Networks of every MixFormer family: layers, backbones and heads (found through registries),
the model, presets, the fused deployment form and the factory."""

from mixformer.models.attention import AttentionMap, collect_attention, set_keep_attention
from mixformer.models.config import (
    ModelConfig,
    TrackingDefaults,
    get_config,
    list_models,
    register_preset,
)
from mixformer.models.errors import CheckpointError
from mixformer.models.factory import build_model, default_weights_path, load_weights
from mixformer.models.fuse import fuse_model, resolve_dtype
from mixformer.models.mixformer import MixFormer, TemplateCache
from mixformer.models.mixformerv2 import MixFormerV2
from mixformer.models.registry import BACKBONES, HEADS
from mixformer.models.weights import save_weights

__all__ = [
    "BACKBONES",
    "HEADS",
    "AttentionMap",
    "CheckpointError",
    "MixFormer",
    "MixFormerV2",
    "ModelConfig",
    "TemplateCache",
    "TrackingDefaults",
    "build_model",
    "collect_attention",
    "default_weights_path",
    "fuse_model",
    "get_config",
    "list_models",
    "load_weights",
    "register_preset",
    "resolve_dtype",
    "save_weights",
    "set_keep_attention",
]
