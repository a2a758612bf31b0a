"""Networks: layers, the CvT/MAM backbone, heads, the score module, presets and the factory."""

from mixformer.models.config import ModelConfig, get_config, list_models, register_preset
from mixformer.models.factory import build_model, load_weights
from mixformer.models.mixformer import MixFormer, TemplateCache
from mixformer.models.weights import CheckpointError, save_weights

__all__ = [
    "CheckpointError",
    "MixFormer",
    "ModelConfig",
    "TemplateCache",
    "build_model",
    "get_config",
    "list_models",
    "load_weights",
    "register_preset",
    "save_weights",
]
