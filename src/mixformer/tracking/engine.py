"""Which network implementation a tracker runs: plain, fast (fp32/bf16/fp16) or ONNX Runtime.

All engines share one contract, the one of :class:`~mixformer.models.MixFormer`:
``encode_templates(template (1, 3, 128, 128), online (N, 3, 128, 128)) -> cache`` once per
template update, and ``track(search (1, 3, 320, 320), cache) -> {"pred_boxes" (1, 1, 4)
normalised cxcywh, "pred_scores" (1,) logits}`` per frame. Inputs are ImageNet-normalised float32.
"""

from __future__ import annotations

import logging
from typing import Any, Literal, Protocol

import torch

from mixformer.models.config import ModelConfig
from mixformer.models.mixformer import MixFormer

log = logging.getLogger(__name__)

Backend = Literal["torch", "onnxruntime"]
BACKENDS: tuple[str, ...] = ("torch", "onnxruntime")


class InferenceEngine(Protocol):
    """Anything with the ``encode_templates`` / ``track`` contract of :class:`MixFormer`."""

    config: ModelConfig

    def encode_templates(self, template: torch.Tensor, online_templates: torch.Tensor) -> Any:
        """Template cache for ``template (1, 3, S, S)`` and ``online_templates (N, 3, S, S)``."""
        ...

    def track(
        self, search: torch.Tensor, cache: Any, corner_prior: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """``pred_boxes (1, 1, 4)`` normalised cxcywh and ``pred_scores (1,)`` logits.

        ``corner_prior``: optional ``(B, 2, H*W)`` log-prior for the corner maps
        (:func:`mixformer.models.head.corner_prior`); every engine takes it (the ONNX
        search graph has a ``corner_prior`` input).
        """
        ...


def build_engine(
    model: MixFormer,
    dtype: str = "fp32",
    backend: str = "torch",
    fast: bool | None = None,
) -> InferenceEngine:
    """Choose the implementation that runs ``model``.

    Args:
        model: the plain network (already on its device, eval mode).
        dtype: ``"fp32"``, ``"bf16"`` or ``"fp16"`` (the latter two imply the fast path).
        backend: ``"torch"`` or ``"onnxruntime"`` (exports the network to a temporary folder;
            fp32 only; needs the ``export`` extra: ``pip install onnx onnxruntime``).
        fast: use the fast torch path (:mod:`mixformer.models.fast`); default: only when
            ``dtype`` is not fp32, so the default tracker runs the plain reference arithmetic.
    Returns:
        ``model`` itself, a :class:`~mixformer.models.fast.FastMixFormer` or an ONNX Runtime
        model.
    Raises:
        ValueError: unknown dtype or backend, or a combination that does not exist.
        ImportError: the onnxruntime backend without the ``export`` extra.
    """
    from mixformer.models.fast import make_fast, resolve_dtype

    dt = resolve_dtype(dtype)
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    if backend == "onnxruntime":
        if dt != torch.float32:
            raise ValueError("the onnxruntime backend runs fp32 graphs only (use dtype='fp32')")
        from mixformer.export.onnx import OnnxRuntimeModel, require_onnx

        require_onnx()
        return OnnxRuntimeModel.from_model(model)
    if fast is None:
        fast = dt != torch.float32
    if not fast:
        if dt != torch.float32:
            raise ValueError(f"dtype {dtype!r} needs the fast path (fast=True)")
        return model
    return make_fast(model, dt)
