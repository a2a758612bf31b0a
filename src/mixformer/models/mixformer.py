"""The MixFormer network of every family: backbone + corner head (+ Score Prediction Module)
(SPEC 1.11, 1.12; SPEC-MIXVIT 6). The backbone and the head are found through their registries
from the config, so a new family is new files and presets, not edits here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from mixformer.geometry import box_cxcywh_to_xyxy, box_xyxy_to_cxcywh
from mixformer.models.attention import KVCache
from mixformer.models.config import ModelConfig
from mixformer.models.heads.score import ScorePredictionModule
from mixformer.models.registry import BACKBONES, HEADS, NETWORKS


@dataclass
class TemplateCache:
    """Everything the search step needs from the templates, computed once per template update.

    Attributes:
        kv: per mixed-attention block (all stages, in order) ``(k, v)``, each
            ``(B, heads, (1+N)*m, D/heads)`` (``m`` key tokens per template).
        template_feat: ``(B, C, Gt, Gt)`` final features of the first-frame template (for the SPM).
        num_online: ``N``, the number of online templates encoded.
    """

    kv: list[KVCache]
    template_feat: torch.Tensor
    num_online: int


class MixFormer(nn.Module):
    """A MixFormer network (any family). Stateless: the tracker owns the :class:`TemplateCache`.

    Inputs are ImageNet-normalised float RGB crops: templates ``(B, 3, Ht, Ht)`` and the search
    region ``(B, 3, Hs, Hs)`` (``config.template_size`` / ``search_size``: 128/320 for CvT,
    128/288 or 192/384 for MixViT). Outputs are a dict with ``pred_boxes (B, 1, 4)`` float32
    (normalised cx, cy, w, h in the search crop) and ``pred_scores (B,)`` float32 logits, the
    latter only when the config has a score head.

    Attributes:
        config / name: the config and the preset name (None for an unnamed config).
        dtype: compute dtype of backbone and box head (float32; bf16/fp16 after
            :func:`mixformer.models.fuse.fuse_model`); inputs are cast to it, the score module
            and the soft-argmax stay float32.
    """

    score_attr: ClassVar[str] = "score_branch"
    """Attribute (= state-dict prefix) of the score module."""

    def __new__(cls, config: ModelConfig | None = None, name: str | None = None) -> MixFormer:
        # ``MixFormer(config)`` builds the network class registered for the config's head
        # (copies and unpickling call ``__new__`` without arguments: the class stays).
        if cls is MixFormer and config is not None:
            if config.head.type in NETWORKS:
                cls = NETWORKS.get(config.head.type)
        return super().__new__(cls)

    def __init__(self, config: ModelConfig, name: str | None = None) -> None:
        super().__init__()
        self.config = config
        self.name = name
        self.dtype = torch.float32
        self.backbone = BACKBONES.get(config.family)(
            config.backbone, config.template_size, config.search_size
        )
        self.box_head = HEADS.get(config.head.type)(
            config.hidden_dim, config.head, config.search_size, config.feat_stride
        )
        score = self.build_score_module(config.hidden_dim) if config.score_head else None
        setattr(self, self.score_attr, score)

    @classmethod
    def build_score_module(cls, dim: int) -> nn.Module:
        """The family's score module on ``dim``-wide features (registered as ``score_attr``):
        the SPM (PrRoIPool + cross-attention + MLP) here."""
        return ScorePredictionModule(dim)

    def _heads(
        self,
        search_feat: torch.Tensor,
        template_feat: torch.Tensor,
        run_score_head: bool,
        gt_bboxes: torch.Tensor | None,
        corner_prior: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        xyxy = self.box_head(search_feat, corner_prior)
        out = {"pred_boxes": box_xyxy_to_cxcywh(xyxy)[:, None]}
        if run_score_head and self.score_branch is not None:
            boxes = gt_bboxes if gt_bboxes is not None else xyxy
            out["pred_scores"] = self.score_branch(
                search_feat.float(), template_feat.float(), boxes.float()
            )
        return out

    def forward(
        self,
        template: torch.Tensor,
        online_template: torch.Tensor,
        search: torch.Tensor,
        run_score_head: bool = True,
        gt_bboxes: torch.Tensor | None = None,
        corner_prior: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Joint forward (SPEC 1.6): training, and the reference tracker's step with one online
        template.

        Args:
            template, online_template: ``(B, 3, Ht, Ht)``.
            search: ``(B, 3, Hs, Hs)``.
            run_score_head: also compute ``pred_scores``.
            gt_bboxes: ``(B, 4)`` normalised xyxy boxes for the SPM (training); default: the
                predicted box.
            corner_prior: optional ``(B, 2, F*F)`` log-prior added to the corner heat maps, as
                in :meth:`track`.
        """
        dt = self.dtype
        z, x = self.backbone(template.to(dt), online_template.to(dt), search.to(dt))
        return self._heads(x, z, run_score_head, gt_bboxes, corner_prior)

    def encode_templates(
        self, template: torch.Tensor, online_templates: torch.Tensor
    ) -> TemplateCache:
        """Encode the templates once (``set_online``).

        Args:
            template: ``(B, 3, Ht, Ht)``.
            online_templates: ``(B, N, 3, Ht, Ht)``, or ``(N, 3, Ht, Ht)`` when ``B == 1``.
        """
        if online_templates.ndim == 4:
            online_templates = online_templates[None]
        dt = self.dtype
        kv, z = self.backbone.encode_templates(template.to(dt), online_templates.to(dt))
        return TemplateCache(kv=kv, template_feat=z, num_online=online_templates.shape[1])

    def track(
        self,
        search: torch.Tensor,
        cache: TemplateCache,
        run_score_head: bool = True,
        corner_prior: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Search step against cached templates (``forward_test``), same outputs as ``forward``.

        Args:
            search: ``(B, 3, Hs, Hs)``.
            cache: from :meth:`encode_templates` (of this model or of its fused copy).
            corner_prior: optional ``(B, 2, F*F)`` log-prior added to the corner heat maps
                (:func:`~mixformer.models.heads.corner_prior`); None: the reference head.
        """
        x = self.search_features(search, cache)
        return self._heads(x, cache.template_feat, run_score_head, None, corner_prior)

    def search_features(self, search: torch.Tensor, cache: TemplateCache) -> torch.Tensor:
        """Backbone search map ``(B, C, Gs, Gs)`` (compute dtype) against the cache."""
        kv = [(k.to(self.dtype), v.to(self.dtype)) for k, v in cache.kv]
        return self.backbone.forward_search(search.to(self.dtype), kv)

    def corner_maps(self, search_feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The box head's raw ``(tl, br)`` heat maps, each ``(B, 1, F, F)``."""
        return self.box_head.score_maps(search_feat)

    def score(
        self, search_feat: torch.Tensor, template_feat: torch.Tensor, boxes_cxcywh: torch.Tensor
    ) -> torch.Tensor:
        """SPM logits ``(B,)`` for normalised cxcywh boxes ``(B, 4)`` (helper for analysis)."""
        if self.score_branch is None:
            raise RuntimeError("this model has no score head")
        return self.score_branch(search_feat, template_feat, box_cxcywh_to_xyxy(boxes_cxcywh))
