"""The pyramid corner head of MixViT / MixViT-ConvMAE (``HEAD_TYPE: CORNER_UP``, SPEC-MIXVIT 4):
two towers that upsample the stride-16 search map to stride 4 with nearest-neighbour steps and
add pyramid side branches."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mixformer.models.heads.base import CornerHeadBase, HeadConfig
from mixformer.models.layers import ConvBNAct
from mixformer.models.registry import HEADS


@dataclass(frozen=True)
class CornerUpConfig(HeadConfig):
    """Pyramid corner head: heat maps at ``stride`` pixels per cell (4: 72x72 for a 288 crop).

    Attributes:
        stride: crop pixels per heat-map cell.
    """

    type = "corner_up"
    stride: int = 4

    def map_size(self, search_size: int, backbone_stride: int) -> int:
        return int(search_size / self.stride)


def _up(x: torch.Tensor, k: int) -> torch.Tensor:
    """Nearest-neighbour upsampling by ``k``: ``out[i, j] = in[i // k, j // k]``."""
    return F.interpolate(x, scale_factor=k)


@HEADS.register("corner_up")
class PyramidCornerHead(CornerHeadBase):
    """Per corner (``tl``, ``br``; independent weights), with ``c = channel`` and input ``X0``::

        a1 = conv1(X0) [c @ G];  a2 = conv2(a1) [c/2 @ G]
        u1 = up2(adjust1(X0)) + up2(a2) [c/2 @ 2G];  a3 = conv3(u1) [c/4 @ 2G]
        u2 = up4(adjust2(X0)) + up2(a3) [c/4 @ 4G];  a4 = conv4(u2) [c/8 @ 4G]
        map = conv5(a4) + up4(adjust3(a2)) + up2(adjust4(a3)) [1 @ 4G]

    ``conv*`` / ``adjust*`` are 3x3 conv-BN-ReLU (``adjust3``/``adjust4`` chains ending in one
    channel, so their terms are >= 0); ``conv5`` is a 1x1 conv.

    Args:
        in_dim: channels ``C`` of the search map; cfg: head config;
        search_size / backbone_stride: crop side and the search map's stride (16).
    """

    Config = CornerUpConfig

    def __init__(
        self, in_dim: int, cfg: CornerUpConfig, search_size: int, backbone_stride: int
    ) -> None:
        super().__init__(cfg.map_size(search_size, backbone_stride), cfg.stride)
        c, bn = cfg.channel, cfg.bn
        for s in ("tl", "br"):
            setattr(self, f"conv1_{s}", ConvBNAct(in_dim, c, 3, bn))
            setattr(self, f"conv2_{s}", ConvBNAct(c, c // 2, 3, bn))
            setattr(self, f"conv3_{s}", ConvBNAct(c // 2, c // 4, 3, bn))
            setattr(self, f"conv4_{s}", ConvBNAct(c // 4, c // 8, 3, bn))
            setattr(self, f"conv5_{s}", nn.Conv2d(c // 8, 1, 1))
            setattr(self, f"adjust1_{s}", ConvBNAct(in_dim, c // 2, 3, bn))
            setattr(self, f"adjust2_{s}", ConvBNAct(in_dim, c // 4, 3, bn))
            setattr(
                self,
                f"adjust3_{s}",
                nn.Sequential(
                    ConvBNAct(c // 2, c // 4, 3, bn),
                    ConvBNAct(c // 4, c // 8, 3, bn),
                    ConvBNAct(c // 8, 1, 3, bn),
                ),
            )
            setattr(
                self,
                f"adjust4_{s}",
                nn.Sequential(ConvBNAct(c // 4, c // 8, 3, bn), ConvBNAct(c // 8, 1, 3, bn)),
            )

    def _tower(self, x0: torch.Tensor, s: str) -> torch.Tensor:
        layer = lambda name: getattr(self, f"{name}_{s}")  # noqa: E731
        a2 = layer("conv2")(layer("conv1")(x0))
        u1 = _up(layer("adjust1")(x0), 2) + _up(a2, 2)
        a3 = layer("conv3")(u1)
        u2 = _up(layer("adjust2")(x0), 4) + _up(a3, 2)
        a4 = layer("conv4")(u2)
        return layer("conv5")(a4) + _up(layer("adjust3")(a2), 4) + _up(layer("adjust4")(a3), 2)

    def score_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._tower(x, "tl"), self._tower(x, "br")
