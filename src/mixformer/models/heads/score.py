"""Score Prediction Module (SPEC 1.10)."""

from __future__ import annotations

import torch
from torch import nn

from mixformer.models.attention import attention
from mixformer.models.layers import LayerNorm
from mixformer.models.prroi_pool import prroi_pool2d


class MLP(nn.Module):
    """Linear layers with ReLU between them: ``C -> C -> ... -> out``."""

    def __init__(self, dim: int, out_dim: int, num_layers: int = 3) -> None:
        super().__init__()
        dims = [dim] * num_layers + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = torch.relu(x)
        return x


class ScorePredictionModule(nn.Module):
    """A learnable score token cross-attends to RoI-pooled search features, then to the template.

    Two cross-attention layers without residual or FFN (SPEC 5, quirk 3), then a 3-layer MLP.

    Args:
        dim: channels ``C`` of the features.
        pool_size: PrRoIPool output side (4).
    """

    def __init__(self, dim: int, pool_size: int = 4) -> None:
        super().__init__()
        self.dim = dim
        self.num_heads = max(dim // 64, 1)
        self.pool_size = pool_size
        self.scale = dim**-0.5
        self.score_token = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.trunc_normal_(self.score_token, std=0.02)
        self.score_head = MLP(dim, 1, 3)
        self.proj_q = nn.ModuleList(nn.Linear(dim, dim) for _ in range(2))
        self.proj_k = nn.ModuleList(nn.Linear(dim, dim) for _ in range(2))
        self.proj_v = nn.ModuleList(nn.Linear(dim, dim) for _ in range(2))
        self.proj = nn.ModuleList(nn.Linear(dim, dim) for _ in range(2))
        self.norm1 = LayerNorm(dim)
        self.norm2 = nn.ModuleList(LayerNorm(dim) for _ in range(2))

    @property
    def output_layer(self) -> nn.Linear:
        """The ``Linear(C, 1)`` that gives the score logit (calibration folds into it)."""
        return self.score_head.layers[-1]

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        return x.reshape(b, t, self.num_heads, d // self.num_heads).transpose(1, 2)

    def forward(
        self, search_feat: torch.Tensor, template_feat: torch.Tensor, boxes_xyxy: torch.Tensor
    ) -> torch.Tensor:
        """Score logits.

        Args:
            search_feat: ``(B, C, H, W)`` search features (20x20).
            template_feat: ``(B, C, h, w)`` template features (8x8).
            boxes_xyxy: ``(B, 4)`` normalised xyxy boxes in the search crop (not clamped).
        Returns:
            ``(B,)`` raw logits.
        """
        b = search_feat.shape[0]
        rois = boxes_xyxy * search_feat.shape[-1]  # the map width scales both axes
        pooled = prroi_pool2d(search_feat, rois, self.pool_size)
        memories = [pooled.flatten(2).transpose(1, 2), template_feat.flatten(2).transpose(1, 2)]
        t = self.norm1(self.score_token).expand(b, -1, -1)
        for i, mem in enumerate(memories):
            q = self._heads(self.proj_q[i](t))
            k = self._heads(self.proj_k[i](mem))
            v = self._heads(self.proj_v[i](mem))
            a = attention(q, k, v, self.scale)
            t = self.norm2[i](self.proj[i](a.transpose(1, 2).reshape(b, 1, self.dim)))
        return self.score_head(t).reshape(-1)
