"""Backbone families (CvT, ViT, ConvMAE, MixFormerV2, MBV3), found through
:data:`mixformer.models.registry.BACKBONES`."""

from mixformer.models.backbones import convmae, cvt, mbv3, v2, vit  # noqa: F401  (registration)
from mixformer.models.backbones.base import Backbone, BackboneConfig
from mixformer.models.backbones.convmae import ConvMAEBackbone, ConvMAEConfig
from mixformer.models.backbones.cvt import CvTBackbone, CvTConfig
from mixformer.models.backbones.mbv3 import MBV3Backbone, MBV3Config
from mixformer.models.backbones.v2 import V2Backbone, V2Config
from mixformer.models.backbones.vit import ViTBackbone, ViTConfig

__all__ = [
    "Backbone",
    "BackboneConfig",
    "ConvMAEBackbone",
    "ConvMAEConfig",
    "CvTBackbone",
    "CvTConfig",
    "MBV3Backbone",
    "MBV3Config",
    "V2Backbone",
    "V2Config",
    "ViTBackbone",
    "ViTConfig",
]
