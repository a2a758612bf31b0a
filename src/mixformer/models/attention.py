"""Mixed Attention Module (SPEC 1.5, 1.6, 1.12).

Token layout: every token sequence is ``(B, T, D)`` with tokens flattened row-major from
``(h, w)`` maps. Template-side sequences hold ``n`` images of equal size one after another
(template first, then online templates); the search sequence holds one image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mixformer.models.layers import FrozenBatchNorm2d

KVCache = tuple[torch.Tensor, torch.Tensor]
"""Per-block template keys and values after the Linear layers, each ``(B, heads, T, D/heads)``."""


class ConvProjection(nn.Module):
    """Depthwise 3x3 conv (no bias) + FrozenBatchNorm2d, then flatten to tokens ("dw_bn").

    Args:
        dim: channels ``D``.
        stride: 1 for queries, 2 for keys and values.
    """

    def __init__(self, dim: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim, dim, 3, stride=stride, padding=1, bias=False, groups=dim)
        self.bn = FrozenBatchNorm2d(dim)

    def forward(self, tokens: torch.Tensor, n_images: int, h: int, w: int) -> torch.Tensor:
        """Project ``n_images`` maps independently (zero padding at each image's own border).

        Args:
            tokens: ``(B, n_images*h*w, D)``.
        Returns:
            ``(B, n_images*h'*w', D)`` with ``h' = ceil(h / stride)``.
        """
        b, _, d = tokens.shape
        maps = tokens.reshape(b * n_images, h, w, d).permute(0, 3, 1, 2)
        out = self.bn(self.conv(maps))
        return out.flatten(2).transpose(1, 2).reshape(b, -1, d)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """``softmax(q k^T * scale) v`` over the key axis; all tensors ``(B, heads, T, d)``.

    With autograd enabled (training) the fused ``scaled_dot_product_attention`` kernel is used:
    it never materialises the attention matrix and is ~3x faster on the CPU (results agree to
    ~1e-7). Inference keeps the explicit formula, bit-identical to the reference check.
    """
    if torch.is_grad_enabled() and q.requires_grad:
        return F.scaled_dot_product_attention(q, k, v, scale=scale)
    attn = torch.softmax((q @ k.transpose(-2, -1)) * scale, dim=-1)
    return attn @ v


class MixedAttention(nn.Module):
    """Asymmetric mixed attention over template, online-template and search tokens.

    Template-side queries attend only to template-side keys; search queries attend to all keys.
    The softmax scale is ``dim ** -0.5`` of the *full* stage width (SPEC 5, quirk 1).

    Args:
        dim: stage width ``D``.
        num_heads: number of heads (``D`` must be divisible by it).
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.scale = dim**-0.5
        self.conv_proj_q = ConvProjection(dim, stride=1)
        self.conv_proj_k = ConvProjection(dim, stride=2)
        self.conv_proj_v = ConvProjection(dim, stride=2)
        self.proj_q = nn.Linear(dim, dim)
        self.proj_k = nn.Linear(dim, dim)
        self.proj_v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        return x.reshape(b, t, self.num_heads, d // self.num_heads).transpose(1, 2)

    @staticmethod
    def _merge(x: torch.Tensor) -> torch.Tensor:
        b, h, t, d = x.shape
        return x.transpose(1, 2).reshape(b, t, h * d)

    def _qkv(
        self, tokens: torch.Tensor, n_images: int, h: int, w: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        q = self._heads(self.proj_q(self.conv_proj_q(tokens, n_images, h, w)))
        k = self._heads(self.proj_k(self.conv_proj_k(tokens, n_images, h, w)))
        v = self._heads(self.proj_v(self.conv_proj_v(tokens, n_images, h, w)))
        return q, k, v

    def forward_templates(
        self, tokens: torch.Tensor, n_images: int, h: int, w: int
    ) -> tuple[torch.Tensor, KVCache]:
        """Template-side attention: all template queries over all template keys.

        Args:
            tokens: normed template tokens ``(B, n_images*h*w, D)``.
        Returns:
            ``(out (B, n_images*h*w, D), (k, v))`` where ``k, v`` are the cache for the search.
        """
        q, k, v = self._qkv(tokens, n_images, h, w)
        out = self.proj(self._merge(attention(q, k, v, self.scale)))
        return out, (k, v)

    def forward_search(self, tokens: torch.Tensor, h: int, w: int, cache: KVCache) -> torch.Tensor:
        """Search-side attention: search queries over ``[template keys ; search keys]``.

        Args:
            tokens: normed search tokens ``(B, h*w, D)``.
            cache: ``(k, v)`` from :meth:`forward_templates` of the same block.
        Returns:
            ``(B, h*w, D)``.
        """
        q, k, v = self._qkv(tokens, 1, h, w)
        k = torch.cat([cache[0], k], dim=2)
        v = torch.cat([cache[1], v], dim=2)
        return self.proj(self._merge(attention(q, k, v, self.scale)))

    def forward(self, x: torch.Tensor, t_h: int, t_w: int, s_h: int, s_w: int) -> torch.Tensor:
        """Joint forward of SPEC 1.6 on ``[template ; online ; search]`` tokens.

        Args:
            x: ``(B, 2*t_h*t_w + s_h*s_w, D)`` normed tokens.
        Returns:
            ``(B, same T, D)``, token order unchanged.
        """
        n_t = 2 * t_h * t_w
        mt, s = x[:, :n_t], x[:, n_t:]
        q_mt, k_mt, v_mt = self._qkv(mt, 2, t_h, t_w)
        q_s, k_s, v_s = self._qkv(s, 1, s_h, s_w)
        out_mt = attention(q_mt, k_mt, v_mt, self.scale)
        k = torch.cat([k_mt, k_s], dim=2)
        v = torch.cat([v_mt, v_s], dim=2)
        out_s = attention(q_s, k, v, self.scale)
        return self.proj(self._merge(torch.cat([out_mt, out_s], dim=2)))
