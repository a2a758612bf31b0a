"""The score head of MixFormerV2 (``MlpScoreDecoder``, SPEC-MIXFORMERV2 4): an MLP on each of
the four prediction tokens, averaged. There is no score token and no PrRoIPool (quirk 9.7)."""

from __future__ import annotations

import torch
from torch import nn


class MlpScoreHead(nn.Module):
    """``layers = [[Linear(D, D), ReLU], Linear(D, 1)]`` per token, mean over the tokens.

    Args:
        dim: width ``D`` of the prediction tokens.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            [nn.Sequential(nn.Linear(dim, dim), nn.ReLU()), nn.Linear(dim, 1)]
        )

    @property
    def output_layer(self) -> nn.Linear:
        """The ``Linear(D, 1)`` that gives each token's logit; the score is their mean, so an
        affine map of it folds into this layer (calibration)."""
        return self.layers[1]

    def per_token(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, 4, D) -> (B, 4, 1)`` per-token logits."""
        return self.layers[1](self.layers[0](tokens))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Prediction tokens ``(B, 4, D)`` -> score logits ``(B,)`` (the tracker applies the
        sigmoid)."""
        return self.per_token(tokens).mean(dim=1).reshape(-1)
