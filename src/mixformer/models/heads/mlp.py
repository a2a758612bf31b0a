"""The box head of MixFormerV2 (``HEAD_TYPE: MLP``, SPEC-MIXFORMERV2 3): a distribution ("bin")
regressor applied to each of the four prediction tokens with shared weights.

Per token ``tau`` (left, right, top, bottom): bin logits ``s = LN_F(Linear(ReLU(LN_D(Linear(t)))))``
(the logits themselves are layer-normalised, quirk 9.4), ``p = softmax(s)`` and the coordinate
``c = sum_i p_i * pos_i`` with float32 bin positions ``pos_i = fl32(i) * fl32(Hs / F)``. The box
``(c_l, c_t, c_r, c_b) / (F * Hs / F)`` is normalised xyxy in the search crop; each coordinate
lies in ``[0, (F - 1) / F]`` (quirk 9.5) and nothing orders ``x0 < x1`` (quirk 9.6).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from mixformer.models.heads.base import HeadConfig
from mixformer.models.layers import LayerNorm
from mixformer.models.registry import HEADS


@dataclass(frozen=True)
class MlpHeadConfig(HeadConfig):
    """``HEAD_TYPE: MLP`` of MixFormerV2 (``channel`` / ``bn`` of the base are unused).

    Attributes:
        bins: ``F = MODEL.FEAT_SZ``, bins per box side (96 for the online presets).
        norm_eps: eps of the head's two LayerNorms (1e-5).
    """

    type = "mlp"
    bins: int = 96
    norm_eps: float = 1e-5

    def map_size(self, search_size: int, backbone_stride: int) -> int:
        """``F``: the 1-D distributions have ``bins`` cells (there are no heat maps)."""
        return self.bins


@HEADS.register("mlp")
class MlpBoxHead(nn.Module):
    """``layers.0 = [Linear(D, D), LayerNorm(D), ReLU]``, ``layers.1 = [Linear(D, F),
    LayerNorm(F)]`` on each prediction token.

    Args:
        in_dim: width ``D`` of the prediction tokens.
        cfg: head config; search_size: crop side ``Hs`` (bin stride ``Hs / F`` as a Python
            float); backbone_stride: unused.

    Attributes:
        bin_stride: ``Hs / F`` (Python float), crop pixels per bin.
        img_size: ``F * (Hs / F)`` (Python float), the divisor of the box.
    """

    Config = MlpHeadConfig

    def __init__(
        self, in_dim: int, cfg: MlpHeadConfig, search_size: int, backbone_stride: int
    ) -> None:
        super().__init__()
        f = cfg.bins
        stride = search_size / f
        self.feat_size = f
        self.img_size = f * stride
        self.layers = nn.ModuleList(
            [
                nn.Sequential(
                    nn.Linear(in_dim, in_dim), LayerNorm(in_dim, eps=cfg.norm_eps), nn.ReLU()
                ),
                nn.Sequential(nn.Linear(in_dim, f), LayerNorm(f, eps=cfg.norm_eps)),
            ]
        )
        self.bin_stride = stride

    @property
    def bin_positions(self) -> torch.Tensor:
        """``(F,)`` float32 ``fl32(i) * fl32(stride)`` on the head's device (computed, so that a
        low-precision copy of the head keeps float32 positions)."""
        dev = self.layers[1][0].weight.device
        step = float(np.float32(self.bin_stride))  # a float32 scalar: fl32(i) * fl32(stride)
        return torch.arange(self.feat_size, dtype=torch.float32, device=dev) * step

    def __getattr__(self, name: str) -> torch.Tensor | nn.Module:
        if name in ("coord_x", "coord_y"):  # what the corner-map motion prior reads
            raise AttributeError(
                f"the MixFormerV2 bin head has no corner-map grid ({name}): it takes no corner "
                "prior, set motion_prior=0"
            )
        return super().__getattr__(name)

    def hidden(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, 4, D) -> (B, 4, D)``: the output of ``layers.0``."""
        return self.layers[0](tokens)

    def bin_logits(self, tokens: torch.Tensor) -> torch.Tensor:
        """Bin logits after the final LayerNorm, ``(B, 4, F)`` float32 (token order l, r, t, b)."""
        return self.layers[1](self.hidden(tokens)).float()

    def distributions(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-side probabilities ``prob_l``, ``prob_t``, ``prob_r``, ``prob_b``, each ``(B, F)``
        float32 (softmax of :meth:`bin_logits`)."""
        p = torch.softmax(self.bin_logits(tokens), dim=-1)
        return {"prob_l": p[:, 0], "prob_t": p[:, 2], "prob_r": p[:, 1], "prob_b": p[:, 3]}

    def boxes(self, probs: torch.Tensor) -> torch.Tensor:
        """Expected ``(x0, y0, x1, y1)`` from token probabilities ``(B, 4, F)`` (order l, r, t, b),
        normalised by ``img_size``: ``(B, 4)`` float32 xyxy."""
        c = probs.float() @ self.bin_positions  # (B, 4): l, r, t, b in crop pixels
        return torch.stack([c[:, 0], c[:, 2], c[:, 1], c[:, 3]], dim=1) / self.img_size

    def forward(self, tokens: torch.Tensor, prior: torch.Tensor | None = None) -> torch.Tensor:
        """Prediction tokens ``(B, 4, D)`` -> boxes ``(B, 4)`` float32, normalised xyxy.

        Raises:
            ValueError: a corner prior (``motion_prior``): this head has no corner maps.
        """
        if prior is not None:
            raise ValueError("the MixFormerV2 box head has no corner maps: set motion_prior=0")
        return self.boxes(torch.softmax(self.bin_logits(tokens), dim=-1))
