"""Corner head with soft-argmax (SPEC 1.9)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from mixformer.models.layers import FrozenBatchNorm2d


def _conv_bn_relu(c_in: int, c_out: int, bn: Literal["frozen", "batch"]) -> nn.Sequential:
    norm = FrozenBatchNorm2d(c_out) if bn == "frozen" else nn.BatchNorm2d(c_out)
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), norm, nn.ReLU(inplace=True))


class CornerHead(nn.Module):
    """Two conv towers (top-left, bottom-right) producing score maps and their soft-argmax.

    Args:
        in_dim: input channels ``C`` of the search feature map.
        channel: width of the first conv (the tower narrows by 2 each layer).
        feat_size: side of the square feature map (20).
        stride: pixels per feature cell (16).
        bn: ``"frozen"`` (online model) or ``"batch"`` (stage-1 model).
    """

    def __init__(
        self,
        in_dim: int,
        channel: int = 384,
        feat_size: int = 20,
        stride: int = 16,
        bn: Literal["frozen", "batch"] = "frozen",
    ) -> None:
        super().__init__()
        self.feat_size = feat_size
        self.img_size = feat_size * stride
        c = channel
        for side in ("tl", "br"):
            setattr(self, f"conv1_{side}", _conv_bn_relu(in_dim, c, bn))
            setattr(self, f"conv2_{side}", _conv_bn_relu(c, c // 2, bn))
            setattr(self, f"conv3_{side}", _conv_bn_relu(c // 2, c // 4, bn))
            setattr(self, f"conv4_{side}", _conv_bn_relu(c // 4, c // 8, bn))
            setattr(self, f"conv5_{side}", nn.Conv2d(c // 8, 1, 1))
        # Cell top-left corners 0, 16, ..., 304 (no half-cell offset, SPEC 5 quirk 2).
        idx = torch.arange(feat_size, dtype=torch.float32) * stride
        self.register_buffer("coord_x", idx.repeat(feat_size), persistent=False)
        self.register_buffer("coord_y", idx.repeat_interleave(feat_size), persistent=False)

    def _tower(self, x: torch.Tensor, side: str) -> torch.Tensor:
        for i in range(1, 6):
            x = getattr(self, f"conv{i}_{side}")(x)
        return x

    def score_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw score maps ``(B, 1, 20, 20)`` for the top-left and bottom-right corners."""
        return self._tower(x, "tl"), self._tower(x, "br")

    def soft_argmax(
        self, score_map: torch.Tensor, prior: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Expected ``(x, y)`` in crop pixels, each ``(B,)``, under the softmax of the map.

        ``prior``: optional ``(B, H*W)`` float32 log-prior added to the flattened map first.
        """
        logits = score_map.flatten(1).float()
        if prior is not None:
            logits = logits + prior
        prob = torch.softmax(logits, dim=1)
        return prob @ self.coord_x, prob @ self.coord_y

    def forward(self, x: torch.Tensor, prior: torch.Tensor | None = None) -> torch.Tensor:
        """Search map ``(B, C, 20, 20)`` -> boxes ``(B, 4)``, normalised xyxy in the crop.

        ``prior``: optional ``(B, 2, H*W)`` log-prior for the top-left / bottom-right maps (see
        :func:`corner_prior`); None is the reference head.
        """
        tl, br = self.score_maps(x)
        x0, y0 = self.soft_argmax(tl, None if prior is None else prior[:, 0])
        x1, y1 = self.soft_argmax(br, None if prior is None else prior[:, 1])
        return torch.stack([x0, y0, x1, y1], dim=1) / self.img_size


def corner_prior(
    corners: torch.Tensor, coord_x: torch.Tensor, coord_y: torch.Tensor, sigma: float
) -> torch.Tensor:
    """Gaussian log-prior on the corner heat maps around expected corner positions.

    Args:
        corners: ``(B, 4)`` expected ``x0, y0, x1, y1`` in crop pixels (float32).
        coord_x / coord_y: ``(H*W,)`` pixel coordinates of the heat-map cells (the head's grid).
        sigma: standard deviation in crop pixels (> 0).
    Returns:
        ``(B, 2, H*W)`` float32: ``-d^2 / (2 sigma^2)`` for the top-left and bottom-right maps.
    """
    c = corners.float().view(-1, 2, 2)  # (B, corner, xy)
    dx = coord_x.float()[None, None] - c[..., 0:1]
    dy = coord_y.float()[None, None] - c[..., 1:2]
    return -(dx * dx + dy * dy) / (2.0 * sigma * sigma)
