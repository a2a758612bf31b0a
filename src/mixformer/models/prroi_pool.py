"""Precise RoI Pooling in plain PyTorch (SPEC 1.10), differentiable, on any device.

The feature map is the bilinear interpolation of its samples (cell ``(i, j)`` at ``(x=j, y=i)``,
zero outside). The average over a bin is an exact integral, and it separates per axis:
``out[c, p, q] = sum_ij F[c, i, j] * Wy[p, i] * Wx[q, j] / (bin_w * bin_h)`` where ``Wx[q, j]``
integrates the hat function ``max(0, 1 - |x - j|)`` over bin ``q``.
"""

from __future__ import annotations

import torch


def _hat_cdf(t: torch.Tensor) -> torch.Tensor:
    """Integral of ``max(0, 1 - |u|)`` from ``-inf`` to ``t`` (0 below -1, 1 above 1)."""
    t = t.clamp(-1.0, 1.0)
    return torch.where(t <= 0, 0.5 * (t + 1) ** 2, 1 - 0.5 * (1 - t) ** 2)


def _axis_weights(lo: torch.Tensor, hi: torch.Tensor, bins: int, size: int) -> torch.Tensor:
    """Integral weights ``(R, bins, size)`` of each sample position over each bin."""
    step = (hi - lo).clamp(min=0) / bins  # (R,)
    k = torch.arange(bins + 1, device=lo.device, dtype=lo.dtype)
    edges = lo[:, None] + k[None] * step[:, None]  # (R, bins+1)
    pos = torch.arange(size, device=lo.device, dtype=lo.dtype)
    cdf = _hat_cdf(edges[:, :, None] - pos[None, None])  # (R, bins+1, size)
    return cdf[:, 1:] - cdf[:, :-1]


def prroi_pool2d(
    features: torch.Tensor, rois: torch.Tensor, output_size: int = 4, spatial_scale: float = 1.0
) -> torch.Tensor:
    """Average of the bilinearly interpolated features over each RoI bin, computed exactly.

    Args:
        features: ``(B, C, H, W)`` float feature map.
        rois: ``(B, 4)`` boxes ``(x0, y0, x1, y1)`` in feature-map coordinates (before
            ``spatial_scale``); RoI ``i`` pools from batch element ``i``. Inverted or empty boxes
            give zeros.
        output_size: bins per side.
        spatial_scale: multiplier applied to ``rois``.
    Returns:
        ``(B, C, output_size, output_size)``.
    """
    _, _, h, w = features.shape
    r = rois.to(features.dtype) * spatial_scale
    wx = _axis_weights(r[:, 0], r[:, 2], output_size, w)  # (B, Q, W)
    wy = _axis_weights(r[:, 1], r[:, 3], output_size, h)  # (B, P, H)
    area = ((r[:, 2] - r[:, 0]).clamp(min=0) / output_size) * (
        (r[:, 3] - r[:, 1]).clamp(min=0) / output_size
    )
    pooled = torch.einsum("bph,bchw,bqw->bcpq", wy, features, wx)
    safe = torch.where(area > 0, area, torch.ones_like(area))
    out = pooled / safe[:, None, None, None]
    return torch.where((area > 0)[:, None, None, None], out, torch.zeros_like(out))
