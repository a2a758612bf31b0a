"""MixFormerV2: the MixViT backbone plus four learned prediction tokens (SPEC-MIXFORMERV2 2).

The prediction tokens (``reg_tokens + pos_embed_reg``, order left, right, top, bottom) are
appended to the search side: search-side queries are ``[search ; 4 tokens]`` and attend to all
keys ``[templates ; search ; tokens]``; the template side never sees them. There is no final
norm and none of timm's classifier parameters. The position tables are computed in float32
(SPEC-MIXFORMERV2 2.2).

Unlike the reference (whose joint forward hard-codes one online template, quirk 9.1), the cached
path here takes any number of online templates: ``encode_templates`` runs the ``(1+N)*T``
template tokens jointly, ``forward_search`` runs search + prediction tokens against them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from mixformer.models.attention import KVCache, Segment
from mixformer.models.backbones.vit import (
    MixedTokens,
    PatchEmbed,
    PlainViTConfig,
    ViTAttention,
    init_linear_and_norm,
    load_mae_like,
    make_pos_param,
    vit_blocks,
)
from mixformer.models.blocks import run_joint, run_search, to_maps
from mixformer.models.layers import GemmPacks
from mixformer.models.registry import BACKBONES

PRED_TOKEN_NAMES = ("left", "right", "top", "bottom")
"""Meaning of the prediction tokens, in token order (SPEC-MIXFORMERV2 2.2)."""


@dataclass(frozen=True)
class V2Config(PlainViTConfig):
    """Hyper-parameters of a MixFormerV2 backbone (``VIT_TYPE base_patch16``): the fields of
    :class:`~mixformer.models.backbones.vit.PlainViTConfig` (8 / 4 blocks for the B / S presets,
    MLP ratio 4 / 1; width 768 and 12 heads hard-coded by the reference) and

    Attributes:
        num_pred_tokens: prediction tokens appended to the search side (4).
    """

    family = "v2"
    depth: int = 8
    num_pred_tokens: int = 4


class PredTokenAttention(ViTAttention):
    """:class:`ViTAttention` whose search side carries ``num_pred`` extra tokens after the
    search image; only the names of the recorded attention segments differ."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool, num_pred: int) -> None:
        super().__init__(dim, num_heads, qkv_bias)
        self.num_pred = num_pred
        self._q_packs = GemmPacks()  # the two halves of qkv in forward_pred_queries
        self._kv_packs = GemmPacks()

    def fuse(self) -> None:
        """Fused attention, and packed GEMMs for the halves of ``qkv``."""
        super().fuse()
        self._q_packs.enable()
        self._kv_packs.enable()

    def forward_search(self, tokens: torch.Tensor, h: int, w: int, cache: KVCache) -> torch.Tensor:
        """Search + prediction-token queries ``(B, h*w + num_pred, D)`` over all keys."""
        q, k, v = self.project_qkv(tokens, 1, h, w)
        k = torch.cat([cache[0], k], dim=2)
        v = torch.cat([cache[1], v], dim=2)
        q_seg: tuple[Segment, ...] = (("search", h, w), ("pred_tokens", self.num_pred, 1))
        k_seg: tuple[Segment, ...] = ()
        if self.keep_attention:
            t_keys = self._template_keys
            if sum(a * b for _, a, b in t_keys) != cache[0].shape[2]:
                t_keys = (("templates", cache[0].shape[2], 1),)
            k_seg = (*t_keys, *q_seg)
        return self.proj(self.merge(self._attend(q, k, v, "search", q_seg, k_seg)))

    def forward_pred_queries(
        self, tokens: torch.Tensor, h: int, w: int, cache: KVCache
    ) -> torch.Tensor:
        """:meth:`forward_search` for the prediction-token queries only: ``(B, num_pred, D)``.

        Keys and values still come from every token; the search queries are skipped (the last
        block's search outputs feed nothing). Not for attention recording.
        """
        b, t, d = tokens.shape
        n, hd = self.num_pred, d // self.num_heads
        w, bias = self.qkv.weight, self.qkv.bias
        kv = self._kv_packs.linear(tokens, w[d:], None if bias is None else bias[d:])
        k, v = kv.reshape(b, t, 2, self.num_heads, hd).permute(2, 0, 3, 1, 4).unbind(0)
        q = self._q_packs.linear(tokens[:, t - n :], w[:d], None if bias is None else bias[:d])
        k = torch.cat([cache[0], k], dim=2)
        v = torch.cat([cache[1], v], dim=2)
        q_seg: tuple[Segment, ...] = (("pred_tokens", n, 1),)
        return self.proj(self.merge(self._attend(self.heads(q), k, v, "search", q_seg, ())))


class LinearPatchEmbed(PatchEmbed):
    """:class:`PatchEmbed` whose deployment form is one Linear over the flattened patches
    (``(c, ky, kx)`` order, the conv weight's own): faster on the CPU than the strided conv
    (1.1 vs 1.9 ms at 224 px, 2 threads), same numbers up to float rounding; MKL's packed
    GEMM (:class:`~mixformer.models.layers.GemmPacks`) in float32 on the CPU."""

    def __init__(self, patch: int, dim: int, in_chans: int = 3) -> None:
        super().__init__(patch, dim, in_chans)
        self.as_linear = False
        self._packs = GemmPacks()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.as_linear:
            return super().forward(x)
        n, c, h, w = x.shape
        p = self.proj.kernel_size[0]
        patches = x.reshape(n, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)
        patches = patches.reshape(n, (h // p) * (w // p), c * p * p)
        weight = self.proj.weight.reshape(self.proj.out_channels, -1)
        return self._packs.linear(patches, weight, self.proj.bias)

    def fuse(self) -> None:
        self.as_linear = True
        self._packs.enable()


@BACKBONES.register("v2")
class V2Backbone(MixedTokens):
    """MixFormerV2 backbone (class ``VisionTransformer`` of ``mixformer2_vit``).

    Outputs (contract of :class:`~mixformer.models.backbones.base.Backbone`, with the prediction
    tokens as the search features):

    * ``forward(z, o, x)`` -> ``(z_map (B, D, Gt, Gt), tokens (B, 4, D))``;
    * ``encode_templates(z, online (B, N, 3, Ht, Ht))`` -> ``(kv, z_map)`` (inherited);
    * ``forward_search(x, kv)`` -> ``tokens (B, 4, D)``: the prediction tokens after the last
      block, order left, right, top, bottom.

    Args:
        cfg: hyper-parameters; template_size / search_size: crop sides (position tables).
    """

    Config = V2Config
    pretrained_families: ClassVar[tuple[str, ...]] = ("vit",)
    """Pretrained-backbone files of these families load too (MAE ViT, SPEC-MIXFORMERV2 6.3)."""

    def __init__(self, cfg: V2Config, template_size: int = 128, search_size: int = 288) -> None:
        super().__init__(cfg)
        d = cfg.embed_dim
        self.pos_embed_s = make_pos_param(search_size // cfg.patch_size, d, np.float32)
        self.pos_embed_t = make_pos_param(template_size // cfg.patch_size, d, np.float32)
        self.reg_tokens = nn.Parameter(torch.zeros(1, cfg.num_pred_tokens, d))
        self.pos_embed_reg = nn.Parameter(torch.zeros(1, cfg.num_pred_tokens, d))
        self.build_embedding(cfg)
        self.blocks = vit_blocks(
            d,
            cfg.depth,
            lambda: PredTokenAttention(d, cfg.num_heads, cfg.qkv_bias, cfg.num_pred_tokens),
            cfg.mlp_ratio,
            cfg.drop_path_rate,
            cfg.norm_eps,
        )
        _init_v2(self)

    def build_embedding(self, cfg: V2Config) -> None:
        """Create the modules that turn crops into tokens (here ``patch_embed``); a subclass
        with another embedding overrides this and :meth:`embed`."""
        self.patch_embed = LinearPatchEmbed(cfg.patch_size, cfg.embed_dim)

    def pred_tokens(self, batch: int) -> torch.Tensor:
        """Prediction tokens entering block 0: ``reg_tokens + pos_embed_reg``, ``(B, 4, D)``."""
        return (self.reg_tokens + self.pos_embed_reg).expand(batch, -1, -1)

    def forward(
        self, template: torch.Tensor, online_template: torch.Tensor, search: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Joint forward (SPEC-MIXFORMERV2 2.3) for one online template per sample.

        Args:
            template, online_template: ``(B, 3, Ht, Ht)``; search: ``(B, 3, Hs, Hs)``.
        Returns:
            ``(z_map (B, D, Gt, Gt), tokens (B, 4, D))``.
        """
        z, _, _, tokens = self.forward_all(template, online_template, search)
        return z, tokens

    def forward_all(  # type: ignore[override]
        self, template: torch.Tensor, online_template: torch.Tensor, search: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Joint forward returning ``(z_map, o_map, x_map, tokens)`` (the reference backbone's
        first four outputs: maps ``(B, D, G, G)``, prediction tokens ``(B, 4, D)``)."""
        b = template.shape[0]
        gt, gs = self._grid(template.shape[-1]), self._grid(search.shape[-1])
        zo = self.embed(torch.cat([template, online_template], dim=0)) + self.pos_embed_t
        xs = self.embed(search) + self.pos_embed_s
        seq = torch.cat([zo[:b], zo[b:], xs, self.pred_tokens(b)], dim=1)
        seq = run_joint(self.mixed_blocks, seq, (gt, gt), (gs, gs))
        t, s = gt * gt, gs * gs
        return (
            to_maps(seq[:, :t], gt, gt),
            to_maps(seq[:, t : 2 * t], gt, gt),
            to_maps(seq[:, 2 * t : 2 * t + s], gs, gs),
            seq[:, 2 * t + s :],
        )

    def forward_search(self, search: torch.Tensor, kv: list[KVCache]) -> torch.Tensor:
        """Search + prediction tokens against the template cache; returns the prediction
        tokens after the last block, ``(B, 4, D)``."""
        g = self._grid(search.shape[-1])
        tokens = self.embed(search) + self.pos_embed_s
        tokens = torch.cat([tokens, self.pred_tokens(tokens.shape[0])], dim=1)
        last = self.blocks[-1]
        if last.attn.keep_attention or torch.is_grad_enabled():
            return run_search(self.mixed_blocks, tokens, g, g, kv)[:, g * g :]
        # Inference: the last block computes only the prediction tokens (its search outputs
        # feed nothing), 14% of MixFormerV2-S's multiply-adds; same numbers up to rounding.
        tokens = run_search(self.blocks[:-1], tokens, g, g, kv[:-1])
        a = last.attn.forward_pred_queries(last.norm1(tokens), g, g, kv[-1])
        return last.after_attention(tokens[:, g * g :], a)

    @classmethod
    def is_pretrained_file(cls, state_dict: dict[str, torch.Tensor]) -> bool:
        """MixFormerV2 backbone keys: the prediction tokens beside ViT blocks."""
        return "reg_tokens" in state_dict and "patch_embed.proj.weight" in state_dict

    def load_pretrained(self, state_dict: dict[str, torch.Tensor]) -> list[str]:
        """MAE ViT-B (``model`` entry): position tables and mask token dropped, ``strict=False``
        (SPEC-MIXFORMERV2 6.3); the prediction tokens keep their initialisation."""
        return load_mae_like(self, state_dict, "MAE ViT")


def _init_v2(module: nn.Module) -> None:
    """Training init: Linear trunc-normal 0.02 / bias 0, LayerNorm 1/0, ``reg_tokens``
    trunc-normal 0.02, ``pos_embed_reg`` zeros (SPEC-MIXFORMERV2 2.2)."""
    init_linear_and_norm(module)
    nn.init.trunc_normal_(module.reg_tokens, std=0.02)
