"""The corner head of MixCvT (SPEC 1.9): two conv towers on the stride-16 search map."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mixformer.models.heads.base import CornerHeadBase, HeadConfig
from mixformer.models.layers import ConvBNAct, FrozenBatchNorm2d, channels_last_
from mixformer.models.registry import HEADS


@dataclass(frozen=True)
class CornerConfig(HeadConfig):
    """``HEAD_TYPE: CORNER``: heat maps at the backbone's stride (20x20 for a 320 crop)."""

    type = "corner"

    def map_size(self, search_size: int, backbone_stride: int) -> int:
        return search_size // backbone_stride


@HEADS.register("corner")
class CornerHead(CornerHeadBase):
    """Top-left and bottom-right towers: four conv-BN-ReLU (``c, c/2, c/4, c/8``) + a 1x1 conv.

    Args:
        in_dim: channels ``C`` of the search map.
        cfg: head config; search_size / backbone_stride: crop side and the map's stride.
    """

    Config = CornerConfig

    def __init__(
        self, in_dim: int, cfg: CornerConfig, search_size: int, backbone_stride: int
    ) -> None:
        super().__init__(cfg.map_size(search_size, backbone_stride), backbone_stride)
        c = cfg.channel
        for side in ("tl", "br"):
            setattr(self, f"conv1_{side}", ConvBNAct(in_dim, c, 3, cfg.bn))
            setattr(self, f"conv2_{side}", ConvBNAct(c, c // 2, 3, cfg.bn))
            setattr(self, f"conv3_{side}", ConvBNAct(c // 2, c // 4, 3, cfg.bn))
            setattr(self, f"conv4_{side}", ConvBNAct(c // 4, c // 8, 3, cfg.bn))
            setattr(self, f"conv5_{side}", nn.Conv2d(c // 8, 1, 1))
        self.tower: nn.Sequential | None = None

    def _tower(self, x: torch.Tensor, side: str) -> torch.Tensor:
        for i in range(1, 6):
            x = getattr(self, f"conv{i}_{side}")(x)
        return x

    def score_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.tower is not None:
            maps = self.tower(x.contiguous(memory_format=torch.channels_last))
            return maps[:, :1], maps[:, 1:]
        return self._tower(x, "tl"), self._tower(x, "br")

    @torch.no_grad()
    def fuse(self) -> None:
        """Both towers as one conv per layer: the first conv's outputs concatenated, the later
        ones grouped (``groups=2``); frozen BN folded. A trainable-BN (stage-1) head stays as is."""
        if any(
            not isinstance(getattr(self, f"conv{i}_{s}")[1], FrozenBatchNorm2d | nn.Identity)
            for i in range(1, 5)
            for s in ("tl", "br")
        ):
            return
        layers: list[nn.Module] = []
        for i in range(1, 6):
            tl, br = getattr(self, f"conv{i}_tl"), getattr(self, f"conv{i}_br")
            if i < 5:
                tl.fuse()
                br.fuse()
                tl, br = tl[0], br[0]
            conv = nn.Conv2d(
                tl.in_channels * (1 if i == 1 else 2),
                tl.out_channels * 2,
                tl.kernel_size,
                padding=tl.padding,
                groups=1 if i == 1 else 2,
            )
            conv.weight.copy_(torch.cat([tl.weight, br.weight], dim=0))
            conv.bias.copy_(torch.cat([tl.bias, br.bias], dim=0))
            layers.append(channels_last_(conv.to(tl.weight.device)))
            if i < 5:
                layers.append(nn.ReLU(inplace=True))
        for i in range(1, 6):  # the merged tower replaces the per-side layers
            delattr(self, f"conv{i}_tl")
            delattr(self, f"conv{i}_br")
        self.tower = nn.Sequential(*layers)
