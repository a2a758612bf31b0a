"""Asymmetric mixed attention, written once for every backbone family (SPEC 1.5, 1.6, 1.12;
SPEC-MIXVIT 2.4, 6.2), and the recording of its probabilities (attention maps).

Token layout: every token sequence is ``(B, T, D)`` with tokens flattened row-major from
``(h, w)`` maps. Template-side sequences hold ``n`` images of equal size one after another
(template first, then online templates); the search sequence holds one image. Template-side
queries attend only to template-side keys; search queries attend to all keys ``[templates ;
search]``. Families differ only in how ``q, k, v`` are projected
(:meth:`MixedAttention.project_qkv`: CvT's depthwise conv + Linear projections with stride-2
keys, ViT's fused ``qkv`` Linear) and in the softmax scale (CvT and the score module: full
width ``D ** -0.5``; ViT: per head).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

KVCache = tuple[torch.Tensor, torch.Tensor]
"""Per-block template keys and values after the projections, each ``(B, heads, T, D/heads)``."""

Segment = tuple[str, int, int]
"""``(name, h, w)``: a run of ``h * w`` tokens of one image in a token sequence."""


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """``softmax(q k^T * scale) v`` over the key axis; all tensors ``(B, heads, T, d)``.

    With autograd enabled (training) the fused ``scaled_dot_product_attention`` kernel is used:
    it never materialises the attention matrix and is ~3x faster on the CPU (results agree to
    ~1e-7). Inference keeps the explicit formula (the executable specification); fused layers
    (:meth:`MixedAttention.fuse`) call the kernel directly.
    """
    if torch.is_grad_enabled() and q.requires_grad:
        return F.scaled_dot_product_attention(q, k, v, scale=scale)
    attn = torch.softmax((q @ k.transpose(-2, -1)) * scale, dim=-1)
    return attn @ v


@dataclass(frozen=True)
class AttentionMap:
    """The attention probabilities of one mixed-attention layer in one call.

    Attributes:
        layer: module path of the layer in the network (e.g. ``backbone.stage2.blocks.3.attn``).
        kind: ``"template"`` (template-side queries over template keys, recorded by
            ``encode_templates``) or ``"search"`` (search queries over all keys).
        probs: ``(B, heads, Q, K)`` float32, softmax over the last axis.
        query_segments / key_segments: ``(name, h, w)`` runs in token order; names
            ``"template"``, ``"online0"``, ``"online1"``, ..., ``"search"``. ``Q`` and ``K`` are the
            sums of ``h * w``. Reshape ``probs[..., a:a + h*w]`` to ``(h, w)`` for an image.
            CvT keys are stride-2 projections, so their grids are smaller than the queries'.
    """

    layer: str
    kind: Literal["template", "search"]
    probs: torch.Tensor
    query_segments: tuple[Segment, ...]
    key_segments: tuple[Segment, ...]


def template_segments(n_images: int, h: int, w: int) -> tuple[Segment, ...]:
    """Segments of a template-side sequence: the template, then ``n_images - 1`` online ones."""
    names = ["template"] + [f"online{i}" for i in range(n_images - 1)]
    return tuple((n, h, w) for n in names)


class MixedAttention(nn.Module):
    """Asymmetric mixed attention; subclasses define :meth:`project_qkv`, :meth:`key_grid` and an
    output projection ``proj: Linear(D, D)`` (registered after their q/k/v layers, for key order).

    Args:
        dim: width ``D`` (divisible by ``num_heads``).
        num_heads: heads.
        scale: softmax scale (``D ** -0.5`` for CvT, ``(D / heads) ** -0.5`` for ViT).

    Attributes:
        fused_attn: use ``scaled_dot_product_attention`` (set by :meth:`fuse`).
        keep_attention: record probabilities (:func:`set_keep_attention`); while set, the
            explicit softmax runs even in a fused layer.
    """

    def __init__(self, dim: int, num_heads: int, scale: float) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.scale = scale
        self.fused_attn = False
        self.keep_attention = False
        self.records: dict[str, AttentionMap] = {}
        self._template_keys: tuple[Segment, ...] = ()
        self._name = ""

    # -- what a family defines --------------------------------------------------------------
    def project_qkv(
        self, tokens: torch.Tensor, n_images: int, h: int, w: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Project normed tokens ``(B, n_images*h*w, D)`` to ``q, k, v`` ``(B, heads, T, d)``."""
        raise NotImplementedError

    def key_grid(self, h: int, w: int) -> tuple[int, int]:
        """Grid of the keys of an image whose query grid is ``(h, w)``."""
        return h, w

    # -- shared ---------------------------------------------------------------------------------
    def heads(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, D) -> (B, heads, T, D/heads)``."""
        b, t, d = x.shape
        return x.reshape(b, t, self.num_heads, d // self.num_heads).transpose(1, 2)

    @staticmethod
    def merge(x: torch.Tensor) -> torch.Tensor:
        """``(B, heads, T, d) -> (B, T, heads*d)`` (channel ``h*d + k``)."""
        b, h, t, d = x.shape
        return x.transpose(1, 2).reshape(b, t, h * d)

    def fuse(self) -> None:
        """Deployment form: the fused attention kernel."""
        self.fused_attn = True

    def _attend(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        kind: Literal["template", "search"],
        q_seg: tuple[Segment, ...],
        k_seg: tuple[Segment, ...],
    ) -> torch.Tensor:
        if self.keep_attention:
            probs = torch.softmax((q.float() @ k.float().transpose(-2, -1)) * self.scale, dim=-1)
            self.records[kind] = AttentionMap(self._name, kind, probs.detach(), q_seg, k_seg)
            return (probs.to(v.dtype)) @ v
        if self.fused_attn:
            return F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        return attention(q, k, v, self.scale)

    def forward_templates(
        self, tokens: torch.Tensor, n_images: int, h: int, w: int
    ) -> tuple[torch.Tensor, KVCache]:
        """Template-side attention: all template queries over all template keys.

        Args:
            tokens: normed template tokens ``(B, n_images*h*w, D)``.
        Returns:
            ``(out (B, n_images*h*w, D) , (k, v))``; ``k, v`` are the search's cache.
        """
        q, k, v = self.project_qkv(tokens, n_images, h, w)
        kh, kw = self.key_grid(h, w)
        self._template_keys = template_segments(n_images, kh, kw)
        a = self._attend(
            q, k, v, "template", template_segments(n_images, h, w), self._template_keys
        )
        return self.proj(self.merge(a)), (k, v)

    def forward_search(self, tokens: torch.Tensor, h: int, w: int, cache: KVCache) -> torch.Tensor:
        """Search-side attention: search queries over ``[cached template keys ; search keys]``.

        Args:
            tokens: normed search tokens ``(B, h*w, D)``.
            cache: ``(k, v)`` from :meth:`forward_templates` of the same layer.
        Returns:
            ``(B, h*w, D)``.
        """
        q, k, v = self.project_qkv(tokens, 1, h, w)
        k = torch.cat([cache[0], k], dim=2)
        v = torch.cat([cache[1], v], dim=2)
        k_seg: tuple[Segment, ...] = ()
        if self.keep_attention:
            kh, kw = self.key_grid(h, w)
            t_keys = self._template_keys
            if sum(a * b for _, a, b in t_keys) != cache[0].shape[2]:
                t_keys = (("templates", cache[0].shape[2], 1),)  # cache from another source
            k_seg = (*t_keys, ("search", kh, kw))
        return self.proj(self.merge(self._attend(q, k, v, "search", (("search", h, w),), k_seg)))

    def mixed(self, x: torch.Tensor, t_h: int, t_w: int, s_h: int, s_w: int) -> torch.Tensor:
        """Joint forward (SPEC 1.6) on ``[template ; online ; search]`` normed tokens.

        Args:
            x: ``(B, 2*t_h*t_w + s_h*s_w, D)``.
        Returns:
            ``(B, same T, D)``, token order unchanged.
        """
        n_t = 2 * t_h * t_w
        out_mt, cache = self.forward_templates(x[:, :n_t], 2, t_h, t_w)
        out_s = self.forward_search(x[:, n_t:], s_h, s_w, cache)
        return torch.cat([out_mt, out_s], dim=1)


def set_keep_attention(module: nn.Module, flag: bool) -> None:
    """Make every mixed-attention layer in ``module`` record (or stop recording) its
    probabilities; works on plain and fused networks. Turning it off drops the records."""
    for name, m in module.named_modules():
        if isinstance(m, MixedAttention):
            m.keep_attention = flag
            m._name = name
            if not flag:
                m.records = {}


def collect_attention(module: nn.Module) -> list[AttentionMap]:
    """The latest :class:`AttentionMap` of each layer and kind, in block order (template kind
    first per layer): template maps come from the last ``encode_templates``, search maps from
    the last ``track`` / joint forward."""
    out = []
    for m in module.modules():
        if isinstance(m, MixedAttention):
            out.extend(m.records[k] for k in ("template", "search") if k in m.records)
    return out
