"""MixViT-ConvMAE: convolutional embedding stages, then mixed-attention ViT blocks
(SPEC-MIXVIT 3).

Per image (template, online templates and search separately): ``patch_embed1`` (conv 4/4 + LN +
GELU) -> CBlocks -> ``patch_embed2`` (2/2) -> CBlocks -> ``patch_embed3`` (2/2) -> flatten ->
``patch_embed4`` (Linear) -> + sin-cos position table; then ``blocks3``, the MixViT blocks.
``backbone.norm`` is dead but kept for the strict load.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mixformer.models.backbones.base import BackboneConfig
from mixformer.models.backbones.vit import (
    MixedTokens,
    ViTAttention,
    init_linear_and_norm,
    load_mae_like,
    make_pos_param,
    vit_blocks,
)
from mixformer.models.layers import LayerNorm
from mixformer.models.registry import BACKBONES


@dataclass(frozen=True)
class ConvMAEConfig(BackboneConfig):
    """Hyper-parameters of a ConvMAE backbone (defaults: ``convmae_base``).

    Attributes:
        dims: widths of the two conv stages and of the mixed-attention stage.
        depths: CBlocks of the two conv stages, mixed-attention blocks (11 for base, 20 large).
        patch_sizes: kernel = stride of ``patch_embed1..3``.
        num_heads: heads of the mixed-attention blocks.
        mlp_ratio: MLP hidden width / width, in CBlocks and blocks.
        cblock_kernel: depthwise conv side of the CBlocks (5).
        drop_path_rate: stochastic depth of the mixed blocks (0 in every released config).
        norm_eps: LayerNorm eps of the mixed blocks (1e-6; 1e-5 in embeddings and CBlocks).
    """

    family = "convmae"
    dims: tuple[int, int, int] = (256, 384, 768)
    depths: tuple[int, int, int] = (2, 2, 11)
    patch_sizes: tuple[int, int, int] = (4, 2, 2)
    num_heads: int = 12
    mlp_ratio: float = 4.0
    cblock_kernel: int = 5
    drop_path_rate: float = 0.0
    norm_eps: float = 1e-6

    @property
    def out_dim(self) -> int:
        return self.dims[-1]

    @property
    def stride(self) -> int:
        s = 1
        for v in self.patch_sizes:
            s *= v
        return s

    @property
    def num_blocks(self) -> int:
        return self.depths[-1]


def _channel_norm(norm: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    """LayerNorm over the channels of each position of a ``(N, C, H, W)`` map."""
    return norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvPatchEmbed(nn.Module):
    """``Conv2d(k = stride = p)`` -> LayerNorm over channels (eps 1e-5) -> GELU, on maps."""

    def __init__(self, c_in: int, c_out: int, patch: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(c_in, c_out, patch, stride=patch)
        self.norm = LayerNorm(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(_channel_norm(self.norm, self.proj(x)))


class CMlp(nn.Module):
    """``fc2(GELU(fc1(x)))`` with 1x1 convs on maps."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class CBlock(nn.Module):
    """``Y + conv2(attn(conv1(LN1 Y)))``, then ``Y + mlp(LN2 Y)``; ``attn`` is a depthwise conv."""

    def __init__(self, dim: int, mlp_ratio: float, kernel: int) -> None:
        super().__init__()
        self.norm1 = LayerNorm(dim)
        self.conv1 = nn.Conv2d(dim, dim, 1)
        self.conv2 = nn.Conv2d(dim, dim, 1)
        self.attn = nn.Conv2d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.norm2 = LayerNorm(dim)
        self.mlp = CMlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.conv2(self.attn(self.conv1(_channel_norm(self.norm1, x))))
        return x + self.mlp(_channel_norm(self.norm2, x))


@BACKBONES.register("convmae")
class ConvMAEBackbone(MixedTokens):
    """MixViT-ConvMAE backbone (class ``ConvViT`` of the reference)."""

    Config = ConvMAEConfig

    def __init__(
        self, cfg: ConvMAEConfig, template_size: int = 128, search_size: int = 288
    ) -> None:
        super().__init__(cfg)
        c1, c2, c3 = cfg.dims
        p1, p2, p3 = cfg.patch_sizes
        self.pos_embed_s = make_pos_param(search_size // cfg.stride, c3)
        self.pos_embed_t = make_pos_param(template_size // cfg.stride, c3)
        self.patch_embed1 = ConvPatchEmbed(3, c1, p1)
        self.patch_embed2 = ConvPatchEmbed(c1, c2, p2)
        self.patch_embed3 = ConvPatchEmbed(c2, c3, p3)
        self.patch_embed4 = nn.Linear(c3, c3)
        k, r = cfg.cblock_kernel, cfg.mlp_ratio
        self.blocks1 = nn.ModuleList(CBlock(c1, r, k) for _ in range(cfg.depths[0]))
        self.blocks2 = nn.ModuleList(CBlock(c2, r, k) for _ in range(cfg.depths[1]))
        self.blocks3 = vit_blocks(
            c3,
            cfg.depths[2],
            lambda: ViTAttention(c3, cfg.num_heads),
            r,
            cfg.drop_path_rate,
            cfg.norm_eps,
        )
        self.norm = LayerNorm(c3, eps=cfg.norm_eps)
        init_linear_and_norm(self)  # training init (SPEC-MIXVIT 6.4)

    @property
    def mixed_blocks(self) -> nn.ModuleList:
        return self.blocks3

    def conv_stages(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Maps after ``blocks1`` ``(N, C1, H/4, W/4)`` and ``blocks2`` ``(N, C2, H/8, W/8)``."""
        x = self.patch_embed1(images)
        for blk in self.blocks1:
            x = blk(x)
        s1 = x
        x = self.patch_embed2(x)
        for blk in self.blocks2:
            x = blk(x)
        return s1, x

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Tokens ``(N, G*G, C3)`` after ``patch_embed4``, before the position table."""
        x = self.patch_embed3(self.conv_stages(images)[1])
        return self.patch_embed4(x.flatten(2).transpose(1, 2))

    @classmethod
    def is_pretrained_file(cls, state_dict: dict[str, torch.Tensor]) -> bool:
        """ConvMAE files: raw ``patch_embed1.*`` and ``blocks3.*`` keys."""
        return "patch_embed1.proj.weight" in state_dict

    def load_pretrained(self, state_dict: dict[str, torch.Tensor]) -> list[str]:
        """ConvMAE base/large (``convmae_{base,large}.pth``, ``model`` entry): position tables and
        mask token dropped, ``strict=False`` (SPEC-MIXVIT 6.3)."""
        return load_mae_like(self, state_dict, "ConvMAE")
