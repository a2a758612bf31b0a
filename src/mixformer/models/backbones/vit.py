"""MixViT: a plain ViT/16 backbone with mixed-attention blocks (SPEC-MIXVIT 2).

Template, online template and search are patch-embedded separately, get fixed 2-D sin-cos
position tables (one per crop size, both grids starting at 0), and run through ``depth`` blocks
of asymmetric mixed attention with a fused ``qkv`` Linear and the per-head softmax scale. The
timm classifier parts (``cls_token``, the 197-token ``pos_embed``, ``norm``, ``head``) are dead
but kept: the released files load with ``strict=True``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from mixformer.models.attention import KVCache, MixedAttention
from mixformer.models.backbones.base import Backbone, BackboneConfig
from mixformer.models.blocks import Block, run_joint, run_search, run_templates, to_maps
from mixformer.models.errors import CheckpointError
from mixformer.models.layers import LayerNorm, channels_last_
from mixformer.models.registry import BACKBONES


@dataclass(frozen=True)
class PlainViTConfig(BackboneConfig):
    """What every plain-ViT backbone config has (MixViT, MixFormerV2; defaults: ViT-B/16).

    Attributes:
        embed_dim / depth / num_heads: width ``D``, mixed-attention blocks, heads.
        patch_size: patch side (stride) of the embedding conv.
        mlp_ratio: MLP hidden width / ``D``.
        drop_path_rate: block ``j`` of ``L`` drops at ``linspace(0, rate, L)[j]`` (training).
        qkv_bias: bias of the fused ``qkv`` Linear.
        norm_eps: LayerNorm eps of the blocks (1e-6).
    """

    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    patch_size: int = 16
    mlp_ratio: float = 4.0
    drop_path_rate: float = 0.1
    qkv_bias: bool = True
    norm_eps: float = 1e-6

    @property
    def out_dim(self) -> int:
        return self.embed_dim

    @property
    def stride(self) -> int:
        return self.patch_size

    @property
    def num_blocks(self) -> int:
        return self.depth


@dataclass(frozen=True)
class ViTConfig(PlainViTConfig):
    """Hyper-parameters of a MixViT backbone (``VIT_TYPE base_patch16`` by default): the fields
    of :class:`PlainViTConfig` and

    Attributes:
        dead_pos_embed_len / num_classes: shapes of the unused timm ``pos_embed`` and ``head``.
    """

    family = "vit"
    dead_pos_embed_len: int = 197
    num_classes: int = 1000


def sincos_pos_embed(grid: int, dim: int, dtype: type = np.float64) -> torch.Tensor:
    """Fixed 2-D sin-cos table ``(1, grid*grid, dim)`` float32, computed in ``dtype``.

    Token ``i*grid + j`` (row ``i``, column ``j``) gets ``[sin(j w), cos(j w), sin(i w), cos(i w)]``
    with ``w_k = 1 / 10000^(k / (dim/4))``: the first half of the channels encodes the column
    (SPEC-MIXVIT 2.2, quirk 2). ``dtype``: ``np.float64`` (MixFormer v1, MixViT) or
    ``np.float32`` (MixFormerV2, SPEC-MIXFORMERV2 2.2: every step in float32).
    """
    if dim % 4:
        raise ValueError(f"position table width {dim} is not divisible by 4")
    k = dim // 4
    omega = 1.0 / 10000 ** (np.arange(k, dtype=dtype) / dtype(k))
    rows, cols = np.meshgrid(
        np.arange(grid, dtype=dtype), np.arange(grid, dtype=dtype), indexing="ij"
    )
    x = cols.reshape(-1, 1) * omega[None]
    y = rows.reshape(-1, 1) * omega[None]
    table = np.concatenate([np.sin(x), np.cos(x), np.sin(y), np.cos(y)], axis=1)
    return torch.from_numpy(table.astype(np.float32))[None]


class ViTAttention(MixedAttention):
    """Mixed attention with a fused ``qkv: Linear(D, 3D)`` (output channel ``s*D + h*d + k``)
    and the per-head scale ``(D / heads) ** -0.5`` (SPEC-MIXVIT quirk 1)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__(dim, num_heads, (dim // num_heads) ** -0.5)
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def project_qkv(
        self, tokens: torch.Tensor, n_images: int, h: int, w: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(B, T, D)`` -> ``q, k, v`` each ``(B, heads, T, D/heads)`` (images do not matter)."""
        b, t, d = tokens.shape
        qkv = self.qkv(tokens).reshape(b, t, 3, self.num_heads, d // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        return q, k, v


class PatchEmbed(nn.Module):
    """``Conv2d(3, D, p, stride p)`` and row-major flattening: ``(N, 3, H, W) -> (N, G*G, D)``."""

    def __init__(self, patch: int, dim: int, in_chans: int = 3) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)

    def fuse(self) -> None:
        channels_last_(self.proj)


def drop_path_rates(rate: float, depth: int) -> list[float]:
    """``linspace(0, rate, depth)`` (timm's stochastic-depth ramp)."""
    return [float(r) for r in np.linspace(0.0, rate, depth)] if depth else []


def vit_blocks(
    dim: int,
    depth: int,
    attn: Callable[[], MixedAttention],
    mlp_ratio: float,
    drop_path_rate: float,
    norm_eps: float,
) -> nn.ModuleList:
    """``depth`` pre-norm blocks (exact erf GELU) over ``attn()`` layers, stochastic depth
    ramped by :func:`drop_path_rates`: the mixed-attention stage of MixViT, ConvMAE and V2."""
    return nn.ModuleList(
        Block(dim, attn(), mlp_ratio, r, norm_eps, "gelu")
        for r in drop_path_rates(drop_path_rate, depth)
    )


def init_linear_and_norm(module: nn.Module) -> None:
    """Training init of the ViT-style families (SPEC-MIXVIT 6.4): Linear weights trunc-normal
    std 0.02, biases 0; LayerNorm 1 / 0; convolutions keep PyTorch's."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class MixedTokens(Backbone):
    """Shared part of the ViT-style families: position tables and the mixed-attention stage.

    Subclasses embed images to tokens with :meth:`embed` ``(N, 3, H, W) -> (N, G*G, D)``
    (position table not yet added) and hold ``self.blocks`` (ViT) or ``self.blocks3`` (ConvMAE).
    """

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Patch tokens ``(N, G*G, D)`` before the position table (default: ``patch_embed``)."""
        return self.patch_embed(images)

    @property
    def mixed_blocks(self) -> nn.ModuleList:
        """The mixed-attention blocks (default: ``blocks``)."""
        return self.blocks

    def _grid(self, size: int) -> int:
        return size // self.config.stride

    def forward(
        self, template: torch.Tensor, online_template: torch.Tensor, search: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Joint forward (SPEC-MIXVIT 2.3-2.5).

        Args:
            template, online_template: ``(B, 3, Ht, Ht)``; search: ``(B, 3, Hs, Hs)``.
        Returns:
            ``(z_map (B, D, Gt, Gt), x_map (B, D, Gs, Gs))``; the online map is discarded.
        """
        return self.forward_all(template, online_template, search)[::2]

    def forward_all(
        self, template: torch.Tensor, online_template: torch.Tensor, search: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Joint forward returning all three maps ``(z_map, o_map, x_map)``."""
        b = template.shape[0]
        gt, gs = self._grid(template.shape[-1]), self._grid(search.shape[-1])
        zo = self.embed(torch.cat([template, online_template], dim=0)) + self.pos_embed_t
        xs = self.embed(search) + self.pos_embed_s
        tokens = run_joint(
            self.mixed_blocks, torch.cat([zo[:b], zo[b:], xs], 1), (gt, gt), (gs, gs)
        )
        t = gt * gt
        return (
            to_maps(tokens[:, :t], gt, gt),
            to_maps(tokens[:, t : 2 * t], gt, gt),
            to_maps(tokens[:, 2 * t :], gs, gs),
        )

    def encode_templates(
        self, template: torch.Tensor, online_templates: torch.Tensor
    ) -> tuple[list[KVCache], torch.Tensor]:
        """``set_online`` (SPEC-MIXVIT 6.2) for any batch: the ``(1+N)*T`` template tokens of a
        sample attend to each other jointly.

        Args:
            template: ``(B, 3, Ht, Ht)``; online_templates: ``(B, N, 3, Ht, Ht)``.
        Returns:
            ``(kv, z_map (B, D, Gt, Gt))``, ``kv`` one ``(k, v)`` per block.
        """
        b, n = online_templates.shape[:2]
        g = self._grid(template.shape[-1])
        images = torch.cat([template[:, None], online_templates], dim=1).flatten(0, 1)
        tokens = self.embed(images) + self.pos_embed_t  # (B*(1+N), T, D)
        tokens = tokens.reshape(b, (n + 1) * g * g, -1)
        tokens, kv = run_templates(self.mixed_blocks, tokens, n + 1, g, g)
        return kv, to_maps(tokens[:, : g * g], g, g)

    def forward_search(self, search: torch.Tensor, kv: list[KVCache]) -> torch.Tensor:
        """``forward_test``: search map ``(B, D, Gs, Gs)`` against the template cache."""
        g = self._grid(search.shape[-1])
        tokens = self.embed(search) + self.pos_embed_s
        return to_maps(run_search(self.mixed_blocks, tokens, g, g, kv), g, g)


def make_pos_param(grid: int, dim: int, dtype: type = np.float64) -> nn.Parameter:
    """A fixed sin-cos table as a frozen parameter (it is in every checkpoint)."""
    return nn.Parameter(sincos_pos_embed(grid, dim, dtype), requires_grad=False)


def mae_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An MAE/ConvMAE pretrained file's ``model`` entry as the reference loads it: keys holding
    ``pos_embed`` or ``mask_token`` removed (SPEC-MIXVIT 6.3)."""
    return {k: v for k, v in state_dict.items() if "pos_embed" not in k and "mask_token" not in k}


def load_mae_like(backbone: nn.Module, state_dict: dict[str, torch.Tensor], what: str) -> list[str]:
    """``strict=False`` load of a pretrained backbone file after :func:`mae_state_dict`, with
    shape checks and a refusal when nothing of the backbone is in it. Returns ignored keys."""
    sd = mae_state_dict(state_dict)
    own = backbone.state_dict()
    bad = [k for k, v in sd.items() if k in own and own[k].shape != v.shape]
    if bad:
        raise CheckpointError(
            f"{what} file does not fit this backbone: {bad[0]} {tuple(sd[bad[0]].shape)} vs "
            f"{tuple(own[bad[0]].shape)}"
        )
    used = [k for k in sd if k in own]
    if not any(".attn." in k for k in used):
        raise CheckpointError(f"{what} file holds none of this backbone's block weights")
    backbone.load_state_dict({k: sd[k] for k in used}, strict=False)
    return [k for k in sd if k not in own]


@BACKBONES.register("vit")
class ViTBackbone(MixedTokens):
    """MixViT backbone (class ``VisionTransformer`` of the reference)."""

    Config = ViTConfig

    def __init__(self, cfg: ViTConfig, template_size: int = 128, search_size: int = 288) -> None:
        super().__init__(cfg)
        d = cfg.embed_dim
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.dead_pos_embed_len, d))
        self.pos_embed_s = make_pos_param(search_size // cfg.patch_size, d)
        self.pos_embed_t = make_pos_param(template_size // cfg.patch_size, d)
        self.patch_embed = PatchEmbed(cfg.patch_size, d)
        self.blocks = vit_blocks(
            d,
            cfg.depth,
            lambda: ViTAttention(d, cfg.num_heads, cfg.qkv_bias),
            cfg.mlp_ratio,
            cfg.drop_path_rate,
            cfg.norm_eps,
        )
        self.norm = LayerNorm(d, eps=cfg.norm_eps)
        self.head = nn.Linear(d, cfg.num_classes)
        _init_vit(self)

    @classmethod
    def is_pretrained_file(cls, state_dict: dict[str, torch.Tensor]) -> bool:
        """MAE ViT files: raw ``patch_embed.proj.*`` and ``blocks.{j}.attn.qkv.*`` keys."""
        return "patch_embed.proj.weight" in state_dict and any(
            k.startswith("blocks.") and ".attn.qkv." in k for k in state_dict
        )

    def load_pretrained(self, state_dict: dict[str, torch.Tensor]) -> list[str]:
        """MAE ViT-B/L (``mae_pretrain_vit_{base,large}.pth``, ``model`` entry): position tables and
        mask token dropped, ``strict=False`` (SPEC-MIXVIT 6.3)."""
        return load_mae_like(self, state_dict, "MAE ViT")


def _init_vit(module: nn.Module) -> None:
    """Training init (SPEC-MIXVIT 6.4): :func:`init_linear_and_norm`, then the dead timm
    ``pos_embed`` and ``cls_token`` trunc-normal 0.02."""
    init_linear_and_norm(module)
    for name in ("pos_embed", "cls_token"):
        if hasattr(module, name):
            nn.init.trunc_normal_(getattr(module, name), std=0.02)
