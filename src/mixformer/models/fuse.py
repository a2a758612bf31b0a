"""The deployment form of a network: a copy with every layer's ``fuse()`` applied.

Each layer owns its fast form (timm ``fused_attn`` / RepVGG-style re-parameterisation), so there
is no mirrored copy of the model, and the fused network is the same :class:`MixFormer` class with
the same ``encode_templates`` / ``track`` contract. What the layers do:

* frozen BatchNorm folded into the preceding convolution (CvT's depthwise q/k/v projections,
  the corner heads' convs);
* the CvT corner head's two towers merged into one conv per layer (grouped after the first);
* fused attention (``scaled_dot_product_attention``) with each family's explicit scale;
* QuickGELU MLPs (CvT) as one SiLU with the 1.702 factor folded into the Linear layers (erf
  GELU, ViT/ConvMAE, has no such folding);
* channels-last conv weights (the token layout ``(B, T, D)`` *is* channels-last maps);
* in fp32 on the CPU, every Linear of at least ``GemmPacks.min_weight`` (384x384) weights as a
  :class:`~mixformer.models.layers.PackedLinear` (MKL's packed GEMM, weights re-laid out once
  per input row count).

In fp32 the fused network gives the plain network's numbers up to float rounding (boxes within
~1e-5). In bf16/fp16 the backbone and box head compute in that dtype; the soft-argmax and the
score module stay fp32.
"""

from __future__ import annotations

import copy
import logging
from typing import Literal

import torch

from mixformer.models.layers import pack_linears_
from mixformer.models.mixformer import MixFormer

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


def is_fused(model: MixFormer) -> bool:
    """Whether ``model`` is a deployment copy made by :func:`fuse_model`."""
    return bool(getattr(model, "fused", False))


@torch.no_grad()
def fuse_model(model: MixFormer, dtype: str | torch.dtype = "fp32") -> MixFormer:
    """A fused, eval-mode copy of ``model`` (same device; ``model`` itself is untouched).

    Args:
        model: a plain network (its current weights are used).
        dtype: ``"fp32"`` (the plain path's boxes within ~1e-5), ``"bf16"`` or ``"fp16"``.
    """
    dt = resolve_dtype(dtype)
    fused = copy.deepcopy(model).eval()
    for m in list(fused.backbone.modules()) + list(fused.box_head.modules()):
        fuse = getattr(m, "fuse", None)
        if callable(fuse):
            fuse()
    fused.backbone.to(dt)
    fused.box_head.to(dt)
    fused.dtype = dt
    fused.fused = True
    if dt == torch.float32 and all(p.device.type == "cpu" for p in fused.parameters()):
        pack_linears_(fused)
    for p in fused.parameters():
        p.requires_grad_(False)
    log.debug("fused %s in %s", model.name, dt)
    return fused
