"""Fast inference path of :class:`~mixformer.models.MixFormer` (issue 5).

:func:`make_fast` turns a (plain, eval-mode) network into a :class:`FastMixFormer` with the same
``encode_templates`` / ``track`` interface and the same numbers up to float rounding. The plain
network stays the executable specification; this module only re-arranges the arithmetic:

* frozen BatchNorm folded into the preceding convolutions (the depthwise q/k/v projections, and
  the corner-head convs, where it becomes a conv bias);
* the two corner-head towers run as one conv per layer: the first conv's outputs are
  concatenated, the later convs are grouped (``groups=2``), which is the same math;
* fused attention (``scaled_dot_product_attention``) with the explicit softmax scale
  ``D ** -0.5`` of the full stage width (SPEC 1.6, not the per-head width);
* tokens kept in ``(B, T, D)`` layout, which *is* the channels-last layout of the ``(B, D, h, w)``
  maps, so going between tokens and maps costs no copy;
* template keys/values cached per block after the Linear layers (:class:`TemplateCache`).

The weights are copied, so converting the fast module to bf16/fp16 leaves the plain one intact.
"""

from __future__ import annotations

import copy
import logging
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from mixformer.geometry import box_xyxy_to_cxcywh
from mixformer.models.attention import ConvProjection, KVCache, MixedAttention
from mixformer.models.backbone import Block, ConvEmbed, Stage
from mixformer.models.head import CornerHead
from mixformer.models.layers import FrozenBatchNorm2d
from mixformer.models.mixformer import MixFormer, TemplateCache

log = logging.getLogger(__name__)

DType = Literal["fp32", "bf16", "fp16"]
_DTYPES: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """``"fp32" | "bf16" | "fp16"`` (or a torch dtype) -> torch dtype; anything else raises."""
    if isinstance(dtype, torch.dtype):
        if dtype not in _DTYPES.values():
            raise ValueError(f"unsupported dtype {dtype}; use one of {', '.join(_DTYPES)}")
        return dtype
    if dtype not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {', '.join(_DTYPES)}")
    return _DTYPES[dtype]


_GELU_ALPHA = 1.702


def _fold_conv_bn(conv: nn.Conv2d, bn: FrozenBatchNorm2d | None) -> nn.Conv2d:
    """A copy of ``conv`` with ``bn`` (applied after it) folded into its weight and bias."""
    out = copy.deepcopy(conv)
    if bn is None:
        return out
    scale, shift = bn.scale_shift()
    with torch.no_grad():
        out.weight.mul_(scale.reshape(-1, 1, 1, 1))
        bias = shift if conv.bias is None else conv.bias * scale + shift
    out.bias = nn.Parameter(bias.detach().clone())
    return out


def _channels_last(conv: nn.Conv2d) -> nn.Conv2d:
    """Store a dense conv's weight channels-last, so that channels-last inputs need no per-call
    weight reordering."""
    conv.weight.data = conv.weight.data.contiguous(memory_format=torch.channels_last)
    return conv


def _maps(tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Tokens ``(N, h*w, D)`` -> maps ``(N, D, h, w)`` as a channels-last *view* (no copy)."""
    n, _, d = tokens.shape
    return tokens.reshape(n, h, w, d).permute(0, 3, 1, 2)


def _tokens(maps: torch.Tensor) -> torch.Tensor:
    """Maps ``(N, D, h, w)`` -> tokens ``(N, h*w, D)`` (a view when ``maps`` is channels-last)."""
    n, d = maps.shape[:2]
    return maps.permute(0, 2, 3, 1).reshape(n, -1, d)


class FastEmbed(nn.Module):
    """ConvEmbed on channels-last maps: ``(N, C_in, H, W) -> (tokens (N, h*w, D), h, w)``."""

    def __init__(self, embed: ConvEmbed) -> None:
        super().__init__()
        self.proj = _channels_last(copy.deepcopy(embed.proj))
        self.norm = copy.deepcopy(embed.norm)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        x = self.proj(x.contiguous(memory_format=torch.channels_last))
        h, w = x.shape[-2:]
        return self.norm(_tokens(x)), h, w


class FastAttention(nn.Module):
    """:class:`MixedAttention` with BN-folded depthwise convs and fused attention."""

    def __init__(self, attn: MixedAttention) -> None:
        super().__init__()
        self.num_heads = attn.num_heads
        self.scale = attn.scale
        convs: list[ConvProjection] = [attn.conv_proj_q, attn.conv_proj_k, attn.conv_proj_v]
        self.conv_q, self.conv_k, self.conv_v = (_fold_conv_bn(c.conv, c.bn) for c in convs)
        self.proj_q = copy.deepcopy(attn.proj_q)
        self.proj_k = copy.deepcopy(attn.proj_k)
        self.proj_v = copy.deepcopy(attn.proj_v)
        self.proj = copy.deepcopy(attn.proj)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        return x.reshape(b, t, self.num_heads, d // self.num_heads).transpose(1, 2)

    def _qkv(
        self, tokens: torch.Tensor, n_images: int, h: int, w: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, _, d = tokens.shape
        maps = _maps(tokens.reshape(b * n_images, h * w, d), h, w)

        def project(conv: nn.Conv2d, lin: nn.Linear) -> torch.Tensor:
            return self._heads(lin(_tokens(conv(maps)).reshape(b, -1, d)))

        return (
            project(self.conv_q, self.proj_q),
            project(self.conv_k, self.proj_k),
            project(self.conv_v, self.proj_v),
        )

    def _out(self, a: torch.Tensor) -> torch.Tensor:
        b, h, t, d = a.shape
        return self.proj(a.transpose(1, 2).reshape(b, t, h * d))

    def forward_templates(
        self, tokens: torch.Tensor, n_images: int, h: int, w: int
    ) -> tuple[torch.Tensor, KVCache]:
        """Template queries over all template keys; returns ``(out, (k, v))`` (see plain path)."""
        q, k, v = self._qkv(tokens, n_images, h, w)
        a = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        return self._out(a), (k, v)

    def forward_search(self, tokens: torch.Tensor, h: int, w: int, cache: KVCache) -> torch.Tensor:
        """Search queries over ``[cached template keys ; search keys]``."""
        q, k, v = self._qkv(tokens, 1, h, w)
        k = torch.cat([cache[0], k], dim=2)
        v = torch.cat([cache[1], v], dim=2)
        return self._out(F.scaled_dot_product_attention(q, k, v, scale=self.scale))


class FastBlock(nn.Module):
    """Pre-norm residual block (SPEC 1.7) over :class:`FastAttention`; eval only (no DropPath)."""

    def __init__(self, blk: Block) -> None:
        super().__init__()
        self.norm1 = copy.deepcopy(blk.norm1)
        self.attn = FastAttention(blk.attn)
        self.norm2 = copy.deepcopy(blk.norm2)
        # QuickGELU(y) = y * sigmoid(1.702 y) = silu(1.702 y) / 1.702: the factor 1.702 goes into
        # fc1 and 1 / 1.702 into fc2, leaving one in-place SiLU pass instead of three.
        self.fc1 = copy.deepcopy(blk.mlp.fc1)
        self.fc2 = copy.deepcopy(blk.mlp.fc2)
        with torch.no_grad():
            self.fc1.weight.mul_(_GELU_ALPHA)
            self.fc1.bias.mul_(_GELU_ALPHA)
            self.fc2.weight.div_(_GELU_ALPHA)

    def _mlp(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(F.silu(self.fc1(self.norm2(x)), inplace=True))

    def forward_templates(
        self, x: torch.Tensor, n_images: int, h: int, w: int
    ) -> tuple[torch.Tensor, KVCache]:
        a, cache = self.attn.forward_templates(self.norm1(x), n_images, h, w)
        return self._mlp(x + a), cache

    def forward_search(self, x: torch.Tensor, h: int, w: int, cache: KVCache) -> torch.Tensor:
        return self._mlp(x + self.attn.forward_search(self.norm1(x), h, w, cache))


class FastStage(nn.Module):
    """One CvT stage: embedding + blocks, on channels-last maps."""

    def __init__(self, stage: Stage) -> None:
        super().__init__()
        self.patch_embed = FastEmbed(stage.patch_embed)
        self.blocks = nn.ModuleList(FastBlock(b) for b in stage.blocks)

    def forward_templates(
        self, maps: torch.Tensor, n_images: int
    ) -> tuple[torch.Tensor, list[KVCache]]:
        """``maps (B*n_images, C, H, W)`` -> ``(maps (B*n_images, D, h, w), per-block k/v)``."""
        tokens, h, w = self.patch_embed(maps)
        d = tokens.shape[-1]
        tokens = tokens.reshape(-1, n_images * h * w, d)
        cache = []
        for blk in self.blocks:
            tokens, kv = blk.forward_templates(tokens, n_images, h, w)
            cache.append(kv)
        return _maps(tokens.reshape(-1, h * w, d), h, w), cache

    def forward_search(self, x: torch.Tensor, cache: list[KVCache]) -> torch.Tensor:
        """``(B, C, H, W) -> (B, D, h, w)`` (channels-last) against this stage's cache."""
        tokens, h, w = self.patch_embed(x)
        for blk, kv in zip(self.blocks, cache, strict=True):
            tokens = blk.forward_search(tokens, h, w, kv)
        return _maps(tokens, h, w)


class FastCornerHead(nn.Module):
    """Both corner towers as one conv per layer (BN folded; grouped convs after the first)."""

    def __init__(self, head: CornerHead) -> None:
        super().__init__()
        self.img_size = head.img_size
        layers: list[nn.Module] = []
        for i in range(1, 6):
            tl, br = getattr(head, f"conv{i}_tl"), getattr(head, f"conv{i}_br")
            if i < 5:
                tl_conv, br_conv = _fold_conv_bn(tl[0], tl[1]), _fold_conv_bn(br[0], br[1])
            else:
                tl_conv, br_conv = tl, br
            groups = 1 if i == 1 else 2
            conv = nn.Conv2d(
                tl_conv.in_channels * (1 if i == 1 else 2),
                tl_conv.out_channels * 2,
                tl_conv.kernel_size,
                padding=tl_conv.padding,
                groups=groups,
            )
            with torch.no_grad():
                conv.weight.copy_(torch.cat([tl_conv.weight, br_conv.weight], dim=0))
                conv.bias.copy_(torch.cat([tl_conv.bias, br_conv.bias], dim=0))
            layers.append(_channels_last(conv))
            if i < 5:
                layers.append(nn.ReLU(inplace=True))
        self.tower = nn.Sequential(*layers)
        self.register_buffer("coord_x", head.coord_x.clone(), persistent=False)
        self.register_buffer("coord_y", head.coord_y.clone(), persistent=False)

    def forward(self, x: torch.Tensor, prior: torch.Tensor | None = None) -> torch.Tensor:
        """Search map ``(B, C, 20, 20)`` -> normalised xyxy boxes ``(B, 4)`` float32.

        ``prior``: optional ``(B, 2, H*W)`` log-prior added to the corner maps.
        """
        maps = self.tower(x.contiguous(memory_format=torch.channels_last))  # (B, 2, 20, 20)
        logits = maps.flatten(2).float()
        if prior is not None:
            logits = logits + prior
        prob = torch.softmax(logits, dim=-1)  # (B, 2, 400)
        cx = prob @ self.coord_x.float()
        cy = prob @ self.coord_y.float()
        return torch.stack([cx[:, 0], cy[:, 0], cx[:, 1], cy[:, 1]], dim=1) / self.img_size


class FastMixFormer(nn.Module):
    """Inference-only MixFormer with the same ``encode_templates`` / ``track`` contract.

    Build it with :func:`make_fast`. Inputs are ImageNet-normalised float32 crops (any dtype is
    cast to the module's compute dtype); outputs are float32.

    Attributes:
        config: the plain model's :class:`~mixformer.models.config.ModelConfig`.
        dtype: compute dtype of the backbone and corner head (the score module runs in fp32).
    """

    def __init__(self, model: MixFormer, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.config = model.config
        self.name = model.name
        self.stages = nn.ModuleList(FastStage(s) for s in model.backbone.stages)
        self.box_head = FastCornerHead(model.box_head)
        self.dtype = dtype
        self.to(dtype)
        # The score module is tiny (one token); fp32 keeps its logits close to the plain path.
        self.score_branch = copy.deepcopy(model.score_branch)
        self.eval()

    def encode_templates(
        self, template: torch.Tensor, online_templates: torch.Tensor
    ) -> TemplateCache:
        """Encode the template and ``N`` online templates once (SPEC 1.12, ``set_online``).

        Args:
            template: ``(B, 3, 128, 128)`` normalised float image.
            online_templates: ``(B, N, 3, 128, 128)``, or ``(N, 3, 128, 128)`` when ``B == 1``.
        Returns:
            :class:`TemplateCache` with per-block ``(k, v)`` of shape ``(B, heads, (1+N)*m, d)``
            in the compute dtype and ``template_feat (B, C, 8, 8)``.
        """
        if online_templates.ndim == 4:
            online_templates = online_templates[None]
        b, n = online_templates.shape[:2]
        maps = torch.cat([template[:, None], online_templates], dim=1).flatten(0, 1)
        maps = maps.to(self.dtype)
        kv = []
        for stage in self.stages:
            maps, cache = stage.forward_templates(maps, n + 1)
            kv.append(cache)
        z = maps.reshape(b, n + 1, *maps.shape[1:])[:, 0]
        return TemplateCache(kv=kv, template_feat=z, num_online=n)

    def search_features(self, search: torch.Tensor, cache: TemplateCache) -> torch.Tensor:
        """Backbone search features ``(B, C, 20, 20)`` (compute dtype, channels-last)."""
        x = search.to(self.dtype)
        for stage, kv in zip(self.stages, cache.kv, strict=True):
            x = stage.forward_search(x, kv)
        return x

    def track(
        self,
        search: torch.Tensor,
        cache: TemplateCache,
        run_score_head: bool = True,
        corner_prior: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Search step: ``pred_boxes (B, 1, 4)`` normalised cxcywh, ``pred_scores (B,)`` logits.

        Args:
            search: ``(B, 3, 320, 320)`` normalised float image.
            cache: from :meth:`encode_templates` of this module (or of the plain model in fp32).
            run_score_head: also compute ``pred_scores`` (when the model has a score module).
            corner_prior: optional ``(B, 2, H*W)`` log-prior for the corner maps (as
                :meth:`MixFormer.track`).
        """
        x = self.search_features(search, cache)
        xyxy = self.box_head(x, corner_prior)
        out = {"pred_boxes": box_xyxy_to_cxcywh(xyxy)[:, None]}
        if run_score_head and self.score_branch is not None:
            out["pred_scores"] = self.score_branch(
                x.float(), cache.template_feat.float(), xyxy.float()
            )
        return out

    def forward(
        self, template: torch.Tensor, online_template: torch.Tensor, search: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Joint forward with one online template, computed as encode + track.

        Equal to the plain joint forward (SPEC 1.12: template tokens never see search tokens).

        Args:
            template, online_template: ``(B, 3, 128, 128)``; search: ``(B, 3, 320, 320)``.
        """
        return self.track(search, self.encode_templates(template, online_template[:, None]))


@torch.no_grad()
def make_fast(model: MixFormer, dtype: str | torch.dtype = "fp32") -> FastMixFormer:
    """Build the fast inference module of ``model`` (copied weights, eval mode, same device).

    Args:
        model: a plain :class:`MixFormer` (its current weights are used).
        dtype: ``"fp32"`` (same boxes as the plain path within ~1e-5), ``"bf16"`` or ``"fp16"``
            (backbone and corner head in that dtype; soft-argmax and score module in fp32).
    """
    dt = resolve_dtype(dtype)
    fast = FastMixFormer(model, dt)
    device = next(model.parameters()).device
    log.debug("fast path for %s in %s on %s", model.name, dt, device)
    return fast.to(device)
