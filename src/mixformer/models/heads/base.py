"""What every box head provides: a frozen config and a module that turns the search map into
two corner heat maps and their soft-argmax box.

Contract: ``forward(x_map (B, C, Gs, Gs), prior=None)`` -> boxes ``(B, 4)`` float32, normalised
xyxy in the search crop; ``score_maps(x_map)`` -> the raw ``(tl, br)`` heat maps, each
``(B, 1, F, F)``; buffers ``coord_x`` / ``coord_y`` ``(F*F,)``: crop-pixel coordinates of the
heat-map cells (row-major), and ``img_size`` (the search crop side the boxes are normalised by).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import nn


@dataclass(frozen=True)
class HeadConfig:
    """Base of the head configs.

    Attributes:
        channel: width of the head's first conv (384 in every released model).
        bn: ``"frozen"`` (online model, FrozenBatchNorm2d) or ``"batch"`` (stage 1).
    """

    type: ClassVar[str] = ""
    channel: int = 384
    bn: Literal["frozen", "batch"] = "frozen"

    def map_size(self, search_size: int, backbone_stride: int) -> int:
        """Side ``F`` of the corner heat maps for a search crop of ``search_size`` pixels."""
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """Plain-python dict with the ``type`` name."""
        return {"type": self.type, **dataclasses.asdict(self)}


class CornerHeadBase(nn.Module):
    """Soft-argmax over two corner heat maps on a grid of cell corners (SPEC 1.9, SPEC-MIXVIT 4).

    Args:
        map_size: heat-map side ``F``; cell_stride: crop pixels per cell. Cell ``k`` (row-major)
            sits at ``(cell_stride * (k mod F), cell_stride * (k div F))``: its top-left corner,
            no half-cell offset (SPEC 5 quirk 2). Boxes are divided by ``F * cell_stride``.
    """

    def __init__(self, map_size: int, cell_stride: int) -> None:
        super().__init__()
        self.feat_size = map_size
        self.img_size = map_size * cell_stride
        idx = torch.arange(map_size, dtype=torch.float32) * cell_stride
        self.register_buffer("coord_x", idx.repeat(map_size), persistent=False)
        self.register_buffer("coord_y", idx.repeat_interleave(map_size), persistent=False)

    def score_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw heat maps ``(tl, br)``, each ``(B, 1, F, F)``, for the search map ``x``."""
        raise NotImplementedError

    def soft_argmax(
        self, score_map: torch.Tensor, prior: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Expected ``(x, y)`` in crop pixels, each ``(B,)`` float32, under the map's softmax.

        ``prior``: optional ``(B, F*F)`` float32 log-prior added to the flattened map first.
        """
        logits = score_map.flatten(1).float()
        if prior is not None:
            logits = logits + prior
        prob = torch.softmax(logits, dim=1)
        return prob @ self.coord_x.float(), prob @ self.coord_y.float()

    def forward(self, x: torch.Tensor, prior: torch.Tensor | None = None) -> torch.Tensor:
        """Search map ``(B, C, Gs, Gs)`` -> boxes ``(B, 4)`` float32, normalised xyxy in the crop.

        ``prior``: optional ``(B, 2, F*F)`` log-prior for the top-left / bottom-right maps (see
        :func:`mixformer.models.heads.corner_prior`); None is the reference head.
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
        coord_x / coord_y: ``(F*F,)`` pixel coordinates of the heat-map cells (the head's grid).
        sigma: standard deviation in crop pixels (> 0).
    Returns:
        ``(B, 2, F*F)`` float32: ``-d^2 / (2 sigma^2)`` for the top-left and bottom-right maps.
    """
    c = corners.float().view(-1, 2, 2)  # (B, corner, xy)
    dx = coord_x.float()[None, None] - c[..., 0:1]
    dy = coord_y.float()[None, None] - c[..., 1:2]
    return -(dx * dx + dy * dy) / (2.0 * sigma * sigma)
