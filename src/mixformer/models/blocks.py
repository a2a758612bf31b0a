"""The pre-norm mixed-attention block and the token <-> map conversions every family shares."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mixformer.models.attention import KVCache, MixedAttention
from mixformer.models.layers import DropPath, LayerNorm, Mlp


def to_maps(tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Tokens ``(N, h*w, D)`` -> maps ``(N, D, h, w)``: a channels-last *view*, no copy."""
    n, _, d = tokens.shape
    return tokens.reshape(n, h, w, d).permute(0, 3, 1, 2)


def to_tokens(maps: torch.Tensor) -> torch.Tensor:
    """Maps ``(N, D, h, w)`` -> tokens ``(N, h*w, D)`` (a view when ``maps`` is channels-last)."""
    n, d = maps.shape[:2]
    return maps.permute(0, 2, 3, 1).reshape(n, -1, d)


class Block(nn.Module):
    """Pre-norm residual block: ``x + DropPath(Attn(LN1 x))``, then ``x + DropPath(Mlp(LN2 x))``.

    Args:
        dim: width ``D``.
        attn: the family's :class:`MixedAttention`.
        mlp_ratio: MLP hidden width / ``D``.
        drop_path: stochastic-depth rate (training only).
        norm_eps: LayerNorm eps (CvT 1e-5, ViT/ConvMAE 1e-6).
        act: MLP activation (:func:`mixformer.models.layers.activation`).
    """

    def __init__(
        self,
        dim: int,
        attn: MixedAttention,
        mlp_ratio: float,
        drop_path: float,
        norm_eps: float = 1e-5,
        act: str = "quick_gelu",
    ) -> None:
        super().__init__()
        self.norm1 = LayerNorm(dim, eps=norm_eps)
        self.attn = attn
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act)

    def after_attention(self, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """The rest of the block once the attention output ``a`` of the tokens ``x`` is known:
        ``x + a``, then ``+ Mlp(LN2 .)`` (stochastic depth on both branches in training).
        Outside training the drop-path modules are not called at all (Python between the
        operations costs the fast path measurable time)."""
        x = x + (self.drop_path(a) if self.training else a)
        y = self.mlp(self.norm2(x))
        return x + (self.drop_path(y) if self.training else y)

    def forward(self, x: torch.Tensor, t_h: int, t_w: int, s_h: int, s_w: int) -> torch.Tensor:
        """Joint forward on ``(B, 2*t_h*t_w + s_h*s_w, D)`` tokens ``[z ; o ; x]``."""
        return self.after_attention(x, self.attn.mixed(self.norm1(x), t_h, t_w, s_h, s_w))

    def forward_templates(
        self, x: torch.Tensor, n_images: int, h: int, w: int
    ) -> tuple[torch.Tensor, KVCache]:
        """Template-side block on ``(B, n_images*h*w, D)``; also returns this block's k/v cache."""
        a, cache = self.attn.forward_templates(self.norm1(x), n_images, h, w)
        return self.after_attention(x, a), cache

    def forward_search(self, x: torch.Tensor, h: int, w: int, cache: KVCache) -> torch.Tensor:
        """Search-side block on ``(B, h*w, D)`` against this block's template cache."""
        return self.after_attention(x, self.attn.forward_search(self.norm1(x), h, w, cache))


def run_joint(
    blocks: Sequence[Block], tokens: torch.Tensor, t_hw: tuple[int, int], s_hw: tuple[int, int]
) -> torch.Tensor:
    """All blocks, joint forward, on ``[z ; o ; x]`` tokens ``(B, 2*T + S, D)``."""
    for blk in blocks:
        tokens = blk(tokens, *t_hw, *s_hw)
    return tokens


def run_templates(
    blocks: Sequence[Block], tokens: torch.Tensor, n_images: int, h: int, w: int
) -> tuple[torch.Tensor, list[KVCache]]:
    """All blocks on template-side tokens ``(B, n_images*h*w, D)``; returns tokens and caches."""
    caches = []
    for blk in blocks:
        tokens, kv = blk.forward_templates(tokens, n_images, h, w)
        caches.append(kv)
    return tokens, caches


def run_search(
    blocks: Sequence[Block], tokens: torch.Tensor, h: int, w: int, caches: Sequence[KVCache]
) -> torch.Tensor:
    """All blocks on search tokens ``(B, h*w, D)`` against their caches."""
    for blk, kv in zip(blocks, caches, strict=True):
        tokens = blk.forward_search(tokens, h, w, kv)
    return tokens
