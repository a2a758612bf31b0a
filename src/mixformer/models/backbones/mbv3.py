"""MixFormer-MBV3: pretrained MobileNetV3 stages, then mixed-attention ViT blocks.

The ConvMAE recipe (convolutional stages before the mixed-attention blocks) on a small budget:
the convolutional stages are a MobileNetV3-Large 0.75 trained on COCO
(:mod:`mixformer.models.mobilenetv3`, weights shipped as ``weights/mbv3-centernet-s16.pth``), so
the network starts from features that know what objects look like, which a CPU-scale training
run on a few hundred photos cannot learn.

Per image (template, online templates and search separately): ImageNet-normalised crop ->
RGB 0..255 -> MobileNetV3 up to ``expanded_conv_11`` (stride 16, 88 channels) -> LayerNorm ->
Linear to ``embed_dim`` -> + sin-cos position table; then ``blocks``, the MixViT blocks.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import torch
from torch import nn

from mixformer.models.backbones.base import BackboneConfig
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
        self.features = MobileNetV3Features()
        self.embed_norm = LayerNorm(self.features.out_dim)
        self.embed_proj = nn.Linear(self.features.out_dim, d)
        self.blocks = vit_blocks(
            d, cfg.depth, lambda: ViTAttention(d, cfg.num_heads), cfg.mlp_ratio,
            cfg.drop_path_rate, 1e-6,
        )  # fmt: skip
        init_linear_and_norm(self)
        if cfg.pretrained_features and not self.features.stem.weight.is_meta:
            self.features.load_state_dict(load_pretrained_features())

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Tokens ``(N, G*G, D)`` of ImageNet-normalised crops ``(N, 3, H, W)``."""
        rgb = self.features.from_imagenet(images)
        # float32 whatever the network's dtype (see MobileNetV3Features); autocast off for the
        # same reason (CUDA AMP training would run the convolutions in fp16)
        with torch.autocast(images.device.type, enabled=False):
            f = self.features(rgb)
        f = f.to(images.dtype).flatten(2).transpose(1, 2)
        return self.embed_proj(self.embed_norm(f))
