"""Precise RoI Pooling against brute-force numerical integration of the bilinear surface."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mixformer.models.prroi_pool import prroi_pool2d


def _bilinear(feat: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """f(x, y) = sum_ij F[i, j] max(0, 1-|x-j|) max(0, 1-|y-i|) for arrays of points."""
    h, w = feat.shape
    wx = np.maximum(0, 1 - np.abs(x[..., None] - np.arange(w)))  # (..., W)
    wy = np.maximum(0, 1 - np.abs(y[..., None] - np.arange(h)))  # (..., H)
    return np.einsum("...h,hw,...w->...", wy, feat, wx)


def _brute_force(
    feat: np.ndarray, roi: tuple[float, ...], bins: int = 4, n: int = 200
) -> np.ndarray:
    x0, y0, x1, y1 = roi
    bw, bh = max(x1 - x0, 0) / bins, max(y1 - y0, 0) / bins
    out = np.zeros((bins, bins))
    if bw * bh == 0:
        return out
    u = (np.arange(n) + 0.5) / n  # midpoint rule
    for p in range(bins):
        for q in range(bins):
            xs = x0 + (q + u) * bw
            ys = y0 + (p + u) * bh
            gx, gy = np.meshgrid(xs, ys)
            out[p, q] = _bilinear(feat, gx, gy).mean()
    return out


@pytest.mark.parametrize(
    "roi",
    [
        (2.3, 4.1, 9.7, 12.2),  # inside
        (-3.0, -2.5, 4.4, 5.0),  # crosses the top-left border (zero outside)
        (15.2, 16.0, 22.5, 21.0),  # crosses the bottom-right border
        (5.0, 5.0, 5.5, 5.25),  # smaller than a cell
        (0.0, 0.0, 19.0, 19.0),  # the whole map
    ],
)
def test_matches_numerical_integration(roi):
    rng = np.random.default_rng(0)
    feat = rng.normal(size=(20, 20))
    got = prroi_pool2d(
        torch.from_numpy(feat)[None, None].double(), torch.tensor([roi], dtype=torch.float64)
    )[0, 0].numpy()
    np.testing.assert_allclose(got, _brute_force(feat, roi), atol=2e-4)


def test_degenerate_and_inverted_boxes_give_zero():
    feat = torch.randn(2, 3, 20, 20)
    rois = torch.tensor([[5.0, 5.0, 5.0, 9.0], [8.0, 8.0, 4.0, 12.0]])
    out = prroi_pool2d(feat, rois)
    assert out.shape == (2, 3, 4, 4)
    assert torch.equal(out, torch.zeros_like(out))


def test_constant_map_inside_gives_constant_and_is_differentiable():
    feat = torch.full((1, 1, 20, 20), 3.0, requires_grad=True)
    rois = torch.tensor([[2.0, 3.0, 10.0, 11.0]], requires_grad=True)
    out = prroi_pool2d(feat, rois)
    torch.testing.assert_close(out, torch.full_like(out, 3.0))
    out.sum().backward()
    assert feat.grad is not None and feat.grad.sum() > 0
    assert rois.grad is not None


def test_batch_index_is_roi_index():
    feat = torch.stack([torch.full((1, 20, 20), 1.0), torch.full((1, 20, 20), 2.0)])
    rois = torch.tensor([[2.0, 2.0, 6.0, 6.0], [2.0, 2.0, 6.0, 6.0]])
    out = prroi_pool2d(feat, rois)
    assert torch.allclose(out[0], torch.ones(1, 4, 4)) and torch.allclose(
        out[1], 2 * torch.ones(1, 4, 4)
    )
