"""MixFormer-MBV3: pretrained MobileNetV3 stages, then mixed-attention ViT blocks.

The ConvMAE recipe (convolutional stages before the mixed-attention blocks) on a small budget:
the convolutional stages are a MobileNetV3-Large 0.75 trained on COCO
(:mod:`mixformer.models.mobilenetv3`, weights shipped as ``weights/mbv3-centernet-s16.pth``), so
the network starts from features that know what objects look like, which a CPU-scale training
run on a few hundred photos cannot learn.

Per image (template, online templates and search separately): ImageNet-normalised crop ->
RGB 0..255 -> MobileNetV3 up to ``expanded_conv_11`` (stride 16, 88 channels) -> LayerNorm ->
Linear to ``embed_dim`` -> + sin-cos position table; then ``blocks``, the MixViT blocks.

:class:`V2MBV3Backbone` (family ``"v2-mbv3"``) is the MixFormerV2 member on the same stem: the
MobileNetV3 embedding, then MixFormerV2 blocks with four prediction tokens (the student that
``mixformer distill`` makes from the default model; its parameter names are the
``mixformer-mbv3`` backbone's, so that the teacher's weights initialise it).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import torch
from torch import nn

from mixformer.models.backbones.base import BackboneConfig
from mixformer.models.backbones.v2 import V2Backbone, V2Config
from mixformer.models.backbones.vit import (
    MixedTokens,
    ViTAttention,
    init_linear_and_norm,
    make_pos_param,
    vit_blocks,
)
from mixformer.models.layers import LayerNorm
from mixformer.models.mobilenetv3 import MobileNetV3Features
from mixformer.models.registry import BACKBONES

FEATURES_FILE = "mbv3-centernet-s16.pth"
"""Shipped pretrained MobileNetV3 weights (package ``mixformer.weights``)."""


@dataclass(frozen=True)
class MBV3Config(BackboneConfig):
    """Hyper-parameters of the MixFormer-MBV3 backbone.

    Attributes:
        embed_dim: width of the mixed-attention blocks.
        depth: number of mixed-attention blocks.
        num_heads: attention heads.
        mlp_ratio: MLP hidden width / width.
        drop_path_rate: stochastic depth of the blocks.
        pretrained_features: initialise the MobileNetV3 stages from the shipped COCO weights
            (False: random init, for tests that need no weights).
    """

    family = "mbv3"
    embed_dim: int = 128
    depth: int = 4
    num_heads: int = 4
    mlp_ratio: float = 4.0
    drop_path_rate: float = 0.0
    pretrained_features: bool = True

    @property
    def out_dim(self) -> int:
        return self.embed_dim

    @property
    def stride(self) -> int:
        return 16

    @property
    def num_blocks(self) -> int:
        return self.depth


def load_pretrained_features() -> dict[str, torch.Tensor]:
    """The shipped MobileNetV3 state dict (float32)."""
    ref = resources.files("mixformer") / "weights" / FEATURES_FILE
    with resources.as_file(ref) as path:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    return {k: v.float() for k, v in sd.items()}


@BACKBONES.register("mbv3")
class MBV3Backbone(MixedTokens):
    """MixFormer-MBV3 backbone: ``features`` (MobileNetV3), ``embed_norm`` + ``embed_proj``,
    ``blocks`` (mixed attention)."""

    Config = MBV3Config

    def __init__(self, cfg: MBV3Config, template_size: int = 128, search_size: int = 256) -> None:
        super().__init__(cfg)
        d = cfg.embed_dim
        self.pos_embed_s = make_pos_param(search_size // cfg.stride, d)
        self.pos_embed_t = make_pos_param(template_size // cfg.stride, d)
        add_feature_stem(self, d)
        self.blocks = vit_blocks(
            d, cfg.depth, lambda: ViTAttention(d, cfg.num_heads), cfg.mlp_ratio,
            cfg.drop_path_rate, 1e-6,
        )  # fmt: skip
        init_linear_and_norm(self)
        init_feature_stem(self, cfg.pretrained_features)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Tokens ``(N, G*G, D)`` of ImageNet-normalised crops ``(N, 3, H, W)``."""
        return embed_features(self, images)


def add_feature_stem(backbone: nn.Module, embed_dim: int) -> None:
    """Give ``backbone`` the MobileNetV3 embedding: ``features``, ``embed_norm``, ``embed_proj``
    (PyTorch's default init; see :func:`init_feature_stem`)."""
    backbone.features = MobileNetV3Features()
    backbone.embed_norm = LayerNorm(backbone.features.out_dim)
    backbone.embed_proj = nn.Linear(backbone.features.out_dim, embed_dim)


def init_feature_stem(backbone: nn.Module, pretrained: bool) -> None:
    """The MobileNetV3 stages from the shipped COCO weights when ``pretrained`` (and the
    module is not on the meta device)."""
    if pretrained and not backbone.features.stem.weight.is_meta:
        backbone.features.load_state_dict(load_pretrained_features())


def embed_features(backbone: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Tokens ``(N, G*G, D)`` of ImageNet-normalised crops ``(N, 3, H, W)`` through the
    MobileNetV3 embedding of :func:`add_feature_stem`."""
    rgb = backbone.features.from_imagenet(images)
    # float32 whatever the network's dtype (see MobileNetV3Features); autocast off for the
    # same reason (CUDA AMP training would run the convolutions in fp16)
    with torch.autocast(images.device.type, enabled=False):
        f = backbone.features(rgb)
    f = f.to(images.dtype).flatten(2).transpose(1, 2)
    return backbone.embed_proj(backbone.embed_norm(f))


@dataclass(frozen=True)
class V2MBV3Config(V2Config):
    """Hyper-parameters of the MixFormerV2 backbone on the MobileNetV3 stem: the fields of
    :class:`~mixformer.models.backbones.v2.V2Config`, with :class:`MBV3Config`'s width, heads,
    MLP ratio and stochastic depth as defaults (stride 16), 2 blocks, and

    Attributes:
        pretrained_features: the MobileNetV3 stages from the shipped COCO weights.
    """

    family = "v2-mbv3"
    embed_dim: int = MBV3Config.embed_dim
    depth: int = 2
    num_heads: int = MBV3Config.num_heads
    mlp_ratio: float = MBV3Config.mlp_ratio
    drop_path_rate: float = MBV3Config.drop_path_rate
    pretrained_features: bool = True


@BACKBONES.register("v2-mbv3")
class V2MBV3Backbone(V2Backbone):
    """MixFormerV2 blocks and prediction tokens over the MobileNetV3 embedding (the outputs of
    :class:`~mixformer.models.backbones.v2.V2Backbone`); ``features``, ``embed_norm``,
    ``embed_proj`` and ``blocks`` are named as in :class:`MBV3Backbone`."""

    Config = V2MBV3Config
    pretrained_families = ()

    def __init__(self, cfg: V2MBV3Config, template_size: int = 128, search_size: int = 256) -> None:
        super().__init__(cfg, template_size, search_size)  # the stem via build_embedding
        init_feature_stem(self, cfg.pretrained_features)

    def build_embedding(self, cfg: V2MBV3Config) -> None:
        """The MobileNetV3 embedding (:func:`add_feature_stem`) instead of patches."""
        add_feature_stem(self, cfg.embed_dim)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Tokens ``(N, G*G, D)`` of ImageNet-normalised crops ``(N, 3, H, W)``."""
        return embed_features(self, images)

    @classmethod
    def is_pretrained_file(cls, state_dict: dict[str, torch.Tensor]) -> bool:
        """No pretrained-backbone files of its own (the stem's weights ship in the package)."""
        return False
