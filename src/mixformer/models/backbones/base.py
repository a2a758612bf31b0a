"""What every backbone family provides: a frozen config dataclass and a module with the joint
and the cached (template-once) forward paths.

Contract (inputs are ImageNet-normalised float RGB crops, outputs channel-first maps):

* ``forward(template (B,3,Ht,Ht), online_template (B,3,Ht,Ht), search (B,3,Hs,Hs))`` ->
  ``(z_map (B,C,Gt,Gt), x_map (B,C,Gs,Gs))``: the joint forward of training;
* ``encode_templates(template (B,3,Ht,Ht), online (B,N,3,Ht,Ht))`` -> ``(kv, z_map)``: ``kv`` is
  one ``(k, v)`` per mixed-attention block in block order (all stages), each
  ``(B, heads, (1+N)*m, d)``; ``z_map`` the first-frame template's final map;
* ``forward_search(search (B,3,Hs,Hs), kv)`` -> ``x_map``.

``C = config.out_dim``, ``G = crop // config.stride``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from mixformer.models.attention import KVCache


@dataclass(frozen=True)
class BackboneConfig:
    """Base of the per-family backbone configs (frozen dataclasses of plain values)."""

    family: ClassVar[str] = ""

    @property
    def out_dim(self) -> int:
        """Channels ``C`` of the final maps (input width of the heads)."""
        raise NotImplementedError

    @property
    def stride(self) -> int:
        """Pixels per token of the final maps (16 for every family)."""
        raise NotImplementedError

    @property
    def num_blocks(self) -> int:
        """Mixed-attention blocks (entries of the template cache)."""
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """Plain-python dict with the ``family`` name (lists instead of tuples)."""
        d = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}
        return {"family": self.family, **d}


class Backbone(nn.Module):
    """Base class of the backbone modules (see the module docstring for the contract).

    Subclasses set ``Config`` (their config dataclass) and register with
    :data:`mixformer.models.registry.BACKBONES`.
    """

    Config: ClassVar[type[BackboneConfig]]

    def __init__(self, config: BackboneConfig) -> None:
        super().__init__()
        self.config = config

    def forward(
        self, template: torch.Tensor, online_template: torch.Tensor, search: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def encode_templates(
        self, template: torch.Tensor, online_templates: torch.Tensor
    ) -> tuple[list[KVCache], torch.Tensor]:
        raise NotImplementedError

    def forward_search(self, search: torch.Tensor, kv: list[KVCache]) -> torch.Tensor:
        raise NotImplementedError

    # -- pretrained backbone files (ImageNet CvT, MAE, ConvMAE) -------------------------------
    @classmethod
    def is_pretrained_file(cls, state_dict: dict[str, torch.Tensor]) -> bool:
        """Whether a raw state_dict is this family's pretrained-backbone layout."""
        return False

    def load_pretrained(self, state_dict: dict[str, torch.Tensor]) -> list[str]:
        """Load a pretrained-backbone state_dict (training init); returns the ignored keys.

        Raises:
            mixformer.models.weights.CheckpointError: shapes or keys that do not fit.
        """
        raise NotImplementedError(f"{type(self).__name__} has no pretrained-file loader")
