"""Primitive layers shared by the backbones and the heads (SPEC 1.3, SPEC-MIXVIT 1.2).

Layers that have a faster deployment form own it as a ``fuse()`` method that rewrites the layer
in place (RepVGG-style re-parameterisation): :func:`mixformer.models.fuse.fuse_model` applies it
to a copy of a network. A fused layer computes the same function up to float rounding.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm2d with fixed statistics and affine parameters, all stored as buffers.

    ``y = x * scale + shift`` with ``scale = weight * rsqrt(running_var + 1e-5)`` and
    ``shift = bias - running_mean * scale`` (the reference's evaluation order, SPEC 1.3).
    Loading silently drops ``num_batches_tracked`` so stage-1 checkpoints load too.

    Args:
        num_features: channels ``C`` of the ``(B, C, H, W)`` input.
    """

    eps = 1e-5

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def _load_from_state_dict(
        self,
        state_dict: Mapping[str, Any],
        prefix: str,
        local_metadata: dict,
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        state_dict.pop(prefix + "num_batches_tracked", None)  # type: ignore[attr-defined]
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def scale_shift(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel ``(scale, shift)``, each ``(C,)`` float32."""
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        return scale, shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale, shift = self.scale_shift()
        return x * scale.reshape(1, -1, 1, 1) + shift.reshape(1, -1, 1, 1)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}"


class LayerNorm(nn.LayerNorm):
    """LayerNorm (eps 1e-5) that normalises in float32 and casts back to the input dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype is torch.float32:
            return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return F.layer_norm(
            x.float(), self.normalized_shape, self.weight.float(), self.bias.float(), self.eps
        ).to(x.dtype)


QUICK_GELU_ALPHA = 1.702


class QuickGELU(nn.Module):
    """``x * sigmoid(1.702 x)``: the activation of the CvT MLPs (not erf-GELU)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(QUICK_GELU_ALPHA * x)


def activation(name: str) -> nn.Module:
    """``"quick_gelu"`` (CvT), ``"gelu"`` (exact erf GELU: ViT, ConvMAE) or ``"silu"``."""
    if name == "quick_gelu":
        return QuickGELU()
    if name == "gelu":
        return nn.GELU()
    if name == "silu":
        return nn.SiLU()
    raise ValueError(f"unknown activation {name!r}; use quick_gelu, gelu or silu")


@torch.no_grad()
def fold_conv_bn(conv: nn.Conv2d, bn: FrozenBatchNorm2d) -> None:
    """Fold ``bn`` (applied after ``conv``) into ``conv``'s weight and bias, in place."""
    scale, shift = bn.scale_shift()
    conv.weight.mul_(scale.reshape(-1, 1, 1, 1).to(conv.weight.dtype))
    bias = shift if conv.bias is None else conv.bias * scale + shift
    conv.bias = nn.Parameter(bias.detach().clone(), requires_grad=False)


def channels_last_(conv: nn.Conv2d) -> nn.Conv2d:
    """Store a conv's weight channels-last (no per-call reordering for channels-last inputs)."""
    conv.weight.data = conv.weight.data.contiguous(memory_format=torch.channels_last)
    return conv


class ConvBNAct(nn.Sequential):
    """``Conv2d -> BatchNorm (frozen or trainable) -> ReLU``; state-dict keys ``0.*``, ``1.*``.

    Args:
        c_in / c_out: channels; kernel: square kernel side (padding ``kernel // 2``).
        bn: ``"frozen"`` (FrozenBatchNorm2d, online models) or ``"batch"`` (BatchNorm2d, stage 1).
    """

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, bn: str = "frozen") -> None:
        norm = FrozenBatchNorm2d(c_out) if bn == "frozen" else nn.BatchNorm2d(c_out)
        conv = nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2)
        super().__init__(conv, norm, nn.ReLU(inplace=True))

    def fuse(self) -> None:
        """Fold a frozen BN into the conv (its slot becomes ``Identity``); weights channels-last."""
        if isinstance(self[1], FrozenBatchNorm2d):
            fold_conv_bn(self[0], self[1])
            self[1] = nn.Identity()
        channels_last_(self[0])


class DropPath(nn.Module):
    """Stochastic depth per sample (timm 0.3.2 semantics), active only in training mode.

    Args:
        p: probability of dropping the residual branch of a sample.
    """

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep_prob = 1.0 - self.p
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        mask = torch.floor(keep_prob + torch.rand(shape, dtype=x.dtype, device=x.device))
        return x / keep_prob * mask

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Mlp(nn.Module):
    """``fc2(act(fc1(x)))`` over the last dimension: ``(..., D) -> (..., D)``.

    Args:
        dim / hidden: widths. act: see :func:`activation` (CvT ``quick_gelu``, ViT ``gelu``).
    """

    def __init__(self, dim: int, hidden: int, act: str = "quick_gelu") -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = activation(act)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))

    @torch.no_grad()
    def fuse(self) -> None:
        """QuickGELU: ``y * sigmoid(1.702 y) = silu(1.702 y) / 1.702``, so 1.702 goes into fc1,
        1 / 1.702 into fc2 and one SiLU pass remains. Exact erf GELU has no such folding."""
        if isinstance(self.act, QuickGELU):
            self.fc1.weight.mul_(QUICK_GELU_ALPHA)
            self.fc1.bias.mul_(QUICK_GELU_ALPHA)
            self.fc2.weight.div_(QUICK_GELU_ALPHA)
            self.act = nn.SiLU(inplace=True)


@functools.cache
def mkl_packing_available() -> bool:
    """Whether this PyTorch build has MKL's packed-GEMM linear (x86 CPU builds do)."""
    mkl = getattr(torch.ops, "mkl", None)
    return bool(
        torch.backends.mkl.is_available()
        and mkl is not None
        and hasattr(mkl, "_mkl_linear")
        and hasattr(mkl, "_mkl_reorder_linear_weight")
    )


class GemmPacks:
    """MKL packed-GEMM copies of one weight matrix, one per input row count: the float32 CPU
    deployment form of a Linear (:class:`PackedLinear`, and layers that multiply by a view of a
    weight, such as a flattened patch-embedding conv or a slice of a fused ``qkv``).

    MKL re-lays the weight out once per row count ``M`` (tokens times batch), and each later
    call with that ``M`` skips the per-call packing of ``F.linear``: measured on 2 cores, 20-25%
    faster for the 768 -> 2304 / 1536 projections of MixFormerV2-S, 8-10% for square ones, with
    the same numbers (MKL runs the same kernels; differences 0 to 2e-5). A pack costs about one
    copy of the weight in memory. The first ``max_packs`` row counts seen are packed and kept
    (later ones run ``F.linear``: evicting instead would re-pack every frame when a
    :class:`~mixformer.tracking.MultiTracker` cycles through more batch sizes); the table is
    emptied when the weight's storage or version changes (weights edited in place are
    re-packed).

    Off until :meth:`enable` (a layer's ``fuse()``), so plain networks stay plain. Autograd,
    tracing, ONNX export, ``torch.compile``, other dtypes and devices (and builds without MKL)
    run ``F.linear``.
    """

    max_packs = 3
    """Row counts packed per weight: the search step, the template update and one more."""
    min_rows = 32
    min_weight = 384 * 384
    """Below these (row count ``M``, weight elements ``N * K``) ``F.linear`` is as fast or
    faster. Measured on 2 cores: -4 to -19% for K <= 64 or M = 4 alone, +5 to +26% for 384- and
    768-wide layers; mixformer-tiny (widths 32-128) ran 2.5% slower with its two 512 -> 128
    layers packed, so such small layers stay plain."""

    def __init__(self, enabled: bool = False) -> None:
        self.enabled = enabled
        self._tag: tuple[int, int] | None = None
        self._packs: dict[int, torch.Tensor] = {}

    def enable(self) -> None:
        """Use packed GEMMs from now on (where :func:`mkl_packing_available`)."""
        self.enabled = True

    def linear(
        self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
    ) -> torch.Tensor:
        """``F.linear(x, weight, bias)``: ``x (..., K)``, ``weight (N, K)`` -> ``(..., N)``.

        The hot path (inference with a pack for this row count) does as little Python as it
        can: Python work between two matrix products slowed the second one by several times
        its own duration in measurements on 2 threads.
        """
        packs = self._packs
        if packs and not torch.is_grad_enabled():
            m = x.numel() // weight.shape[1]
            packed = packs.get(m)
            if (
                packed is not None
                and x.dtype is torch.float32
                and x.is_cpu
                and self._tag == _weight_tag(weight)
                and not torch.jit.is_tracing()
                and not torch.compiler.is_compiling()
            ):
                return torch.ops.mkl._mkl_linear(x, packed, weight, bias, m)
        return self._linear(x, weight, bias)

    def _linear(
        self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
    ) -> torch.Tensor:
        k = weight.shape[1]
        m = x.numel() // k if k else 0
        if (
            not self.enabled
            or weight.numel() < self.min_weight
            or m < self.min_rows
            or not _packable(x, weight)
        ):
            return F.linear(x, weight, bias)
        tag = _weight_tag(weight)
        if tag != self._tag:  # new or edited weights: pack afresh
            self._tag, self._packs = tag, {}
        packed = self._packs.get(m)
        if packed is None:
            if len(self._packs) >= self.max_packs:  # table full: this row count stays plain
                return F.linear(x, weight, bias)
            packed = torch.ops.mkl._mkl_reorder_linear_weight(weight.detach(), m)
            self._packs[m] = packed
        return torch.ops.mkl._mkl_linear(x, packed, weight, bias, m)


def _weight_tag(weight: torch.Tensor) -> tuple[int, int]:
    """Storage address and version of a weight (inference tensors keep no version: -1)."""
    return weight.data_ptr(), -1 if weight.is_inference() else weight._version


def _packable(x: torch.Tensor, weight: torch.Tensor) -> bool:
    # ONNX export either traces (TorchScript exporter) or runs under torch.export (dynamo
    # exporter, ``is_compiling``); ``torch.onnx.is_in_onnx_export()`` itself is not asked: the
    # call slowed the matrix product after it by ~40 us (2 threads, measured).
    if torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling():
        return False
    return (
        x.dtype == torch.float32
        and weight.dtype == torch.float32
        and x.device.type == "cpu"
        and weight.device.type == "cpu"
        and weight.is_contiguous()
        and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))
        and mkl_packing_available()
    )


class PackedLinear(nn.Linear):
    """``nn.Linear`` computed through :class:`GemmPacks` (MKL's packed GEMM for float32 CPU
    inference, ``F.linear`` otherwise): the deployment form every Linear of a fused fp32
    network takes (:func:`pack_linears_`). State-dict keys and shapes are ``nn.Linear``'s."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.packs = GemmPacks(enabled=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.packs.linear(x, self.weight, self.bias)


def pack_linears_(module: nn.Module) -> int:
    """Turn every plain ``nn.Linear`` inside ``module`` with at least :attr:`GemmPacks.min_weight`
    weights into a :class:`PackedLinear` sharing its parameters, in place, when
    :func:`mkl_packing_available`; returns how many."""
    if not mkl_packing_available():
        return 0
    count = 0
    for parent in module.modules():
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear and child.weight.numel() >= GemmPacks.min_weight:
                packed = PackedLinear(
                    child.in_features,
                    child.out_features,
                    bias=child.bias is not None,
                    device="meta",
                )
                packed.weight = child.weight
                packed.bias = child.bias
                setattr(parent, name, packed)
                count += 1
    return count
