"""Convolutional Vision Transformer backbone with Mixed Attention blocks (SPEC 1.4-1.8, 1.12)."""

from __future__ import annotations

import torch
from torch import nn

from mixformer.models.attention import KVCache, MixedAttention
from mixformer.models.config import ModelConfig
from mixformer.models.layers import DropPath, LayerNorm, Mlp

StageCache = list[KVCache]
"""One :data:`KVCache` per block of a stage."""


class ConvEmbed(nn.Module):
    """Strided conv + per-position LayerNorm: ``(N, C_in, H, W) -> (N, h*w, D)`` tokens."""

    def __init__(self, in_chans: int, dim: int, kernel: int, stride: int, padding: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, kernel, stride=stride, padding=padding)
        self.norm = LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        """Returns ``(tokens (N, h*w, D), h, w)``."""
        x = self.proj(x)
        _, _, h, w = x.shape
        return self.norm(x.flatten(2).transpose(1, 2)), h, w


class Block(nn.Module):
    """Pre-norm residual block: ``x + DropPath(Attn(LN1 x))``, then ``x + DropPath(Mlp(LN2 x))``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, drop_path: float) -> None:
        super().__init__()
        self.norm1 = LayerNorm(dim)
        self.attn = MixedAttention(dim, num_heads)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def _mlp(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop_path(self.mlp(self.norm2(x)))

    def forward(self, x: torch.Tensor, t_h: int, t_w: int, s_h: int, s_w: int) -> torch.Tensor:
        """Joint forward on ``(B, 2*t_h*t_w + s_h*s_w, D)`` tokens."""
        x = x + self.drop_path(self.attn(self.norm1(x), t_h, t_w, s_h, s_w))
        return self._mlp(x)

    def forward_templates(
        self, x: torch.Tensor, n_images: int, h: int, w: int
    ) -> tuple[torch.Tensor, KVCache]:
        """Template-side block on ``(B, n_images*h*w, D)``; also returns this block's k/v cache."""
        a, cache = self.attn.forward_templates(self.norm1(x), n_images, h, w)
        return self._mlp(x + self.drop_path(a)), cache

    def forward_search(self, x: torch.Tensor, h: int, w: int, cache: KVCache) -> torch.Tensor:
        """Search-side block on ``(B, h*w, D)`` against this block's template cache."""
        x = x + self.drop_path(self.attn.forward_search(self.norm1(x), h, w, cache))
        return self._mlp(x)


def _to_maps(tokens: torch.Tensor, n_images: int, h: int, w: int) -> torch.Tensor:
    """``(B, n*h*w, D) -> (B*n, D, h, w)``."""
    b, _, d = tokens.shape
    return tokens.reshape(b * n_images, h, w, d).permute(0, 3, 1, 2).contiguous()


class Stage(nn.Module):
    """ConvEmbed followed by ``depth`` Mixed Attention blocks."""

    def __init__(self, cfg: ModelConfig, i: int) -> None:
        super().__init__()
        in_chans = 3 if i == 0 else cfg.dim_embed[i - 1]
        dim = cfg.dim_embed[i]
        self.patch_embed = ConvEmbed(
            in_chans, dim, cfg.patch_size[i], cfg.patch_stride[i], cfg.patch_padding[i]
        )
        depth = cfg.depth[i]
        top = cfg.drop_path_rate[i]
        rates = [top * j / (depth - 1) if depth > 1 else 0.0 for j in range(depth)]
        self.blocks = nn.ModuleList(Block(dim, cfg.num_heads[i], cfg.mlp_ratio, r) for r in rates)

    def forward(
        self, z: torch.Tensor, o: torch.Tensor, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Joint forward on maps ``z, o: (B, C, H_t, W_t)`` and ``x: (B, C, H_s, W_s)``."""
        b = z.shape[0]
        zo, t_h, t_w = self.patch_embed(torch.cat([z, o], dim=0))
        xs, s_h, s_w = self.patch_embed(x)
        n_t = t_h * t_w
        tokens = torch.cat([zo[:b], zo[b:], xs], dim=1)
        for blk in self.blocks:
            tokens = blk(tokens, t_h, t_w, s_h, s_w)
        return (
            _to_maps(tokens[:, :n_t], 1, t_h, t_w),
            _to_maps(tokens[:, n_t : 2 * n_t], 1, t_h, t_w),
            _to_maps(tokens[:, 2 * n_t :], 1, s_h, s_w),
        )

    def forward_templates(
        self, maps: torch.Tensor, n_images: int
    ) -> tuple[torch.Tensor, StageCache]:
        """Template-side stage.

        Args:
            maps: ``(B*n_images, C, H, W)``, images of one sample consecutive (template first).
        Returns:
            ``(maps (B*n_images, D, h, w), cache)``.
        """
        tokens, h, w = self.patch_embed(maps)
        tokens = tokens.reshape(-1, n_images * h * w, tokens.shape[-1])
        cache: StageCache = []
        for blk in self.blocks:
            tokens, kv = blk.forward_templates(tokens, n_images, h, w)
            cache.append(kv)
        return _to_maps(tokens, n_images, h, w), cache

    def forward_search(self, x: torch.Tensor, cache: StageCache) -> torch.Tensor:
        """Search-side stage: ``(B, C, H, W) -> (B, D, h, w)`` using the template cache."""
        tokens, h, w = self.patch_embed(x)
        for blk, kv in zip(self.blocks, cache, strict=True):
            tokens = blk.forward_search(tokens, h, w, kv)
        return _to_maps(tokens, 1, h, w)


class CvTBackbone(nn.Module):
    """Three CvT stages. ``norm`` and ``head`` are the unused CvT classifier (kept for loading)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.stage0 = Stage(cfg, 0)
        self.stage1 = Stage(cfg, 1)
        self.stage2 = Stage(cfg, 2)
        self.norm = LayerNorm(cfg.hidden_dim)
        self.head = nn.Linear(cfg.hidden_dim, 1000)

    @property
    def stages(self) -> tuple[Stage, Stage, Stage]:
        return (self.stage0, self.stage1, self.stage2)

    def forward(
        self,
        template: torch.Tensor,
        online_template: torch.Tensor,
        search: torch.Tensor,
        return_stages: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor] | list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Joint forward.

        Args:
            template, online_template: ``(B, 3, 128, 128)`` normalised images.
            search: ``(B, 3, 320, 320)`` normalised image.
            return_stages: return ``[(z, o, x) maps]`` of every stage instead.
        Returns:
            ``(z_map (B, C, 8, 8), x_map (B, C, 20, 20))`` of the last stage.
        """
        z, o, x = template, online_template, search
        outs = []
        for stage in self.stages:
            z, o, x = stage(z, o, x)
            outs.append((z, o, x))
        return outs if return_stages else (z, x)

    def encode_templates(
        self, template: torch.Tensor, online_templates: torch.Tensor
    ) -> tuple[list[StageCache], torch.Tensor]:
        """Encode the template and ``N`` online templates once (SPEC 1.12, ``set_online``).

        Args:
            template: ``(B, 3, 128, 128)``.
            online_templates: ``(B, N, 3, 128, 128)``.
        Returns:
            ``(caches, z_map)``: per stage, per block k/v; ``z_map (B, C, 8, 8)``.
        """
        b, n = online_templates.shape[:2]
        maps = torch.cat([template[:, None], online_templates], dim=1).flatten(0, 1)
        caches = []
        for stage in self.stages:
            maps, cache = stage.forward_templates(maps, n + 1)
            caches.append(cache)
        return caches, maps.reshape(b, n + 1, *maps.shape[1:])[:, 0]

    def forward_search(self, search: torch.Tensor, caches: list[StageCache]) -> torch.Tensor:
        """Search features ``(B, C, 20, 20)`` from ``search (B, 3, 320, 320)`` and the caches."""
        x = search
        for stage, cache in zip(self.stages, caches, strict=True):
            x = stage.forward_search(x, cache)
        return x
