"""Primitive layers shared by the backbone and the heads (SPEC 1.3)."""

from __future__ import annotations

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
        if x.dtype == torch.float32:
            return super().forward(x)
        return F.layer_norm(
            x.float(), self.normalized_shape, self.weight.float(), self.bias.float(), self.eps
        ).to(x.dtype)


class QuickGELU(nn.Module):
    """``x * sigmoid(1.702 x)``: the activation of the transformer MLPs (not erf-GELU)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


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
    """``fc2(QuickGELU(fc1(x)))`` over the last dimension: ``(..., D) -> (..., D)``."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = QuickGELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))
