"""The MixFormer network: backbone + corner head (+ Score Prediction Module) (SPEC 1.11, 1.12)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mixformer.geometry import box_cxcywh_to_xyxy, box_xyxy_to_cxcywh
from mixformer.models.backbone import CvTBackbone, StageCache
from mixformer.models.config import ModelConfig
from mixformer.models.head import CornerHead
from mixformer.models.score import ScorePredictionModule


@dataclass
class TemplateCache:
    """Everything the search step needs from the templates, computed once per template update.

    Attributes:
        kv: per stage, per block ``(k, v)``, each ``(B, heads, (1+N)*m, D/heads)``.
        template_feat: ``(B, C, 8, 8)`` final features of the first-frame template (for the SPM).
        num_online: ``N``, the number of online templates encoded.
    """

    kv: list[StageCache]
    template_feat: torch.Tensor
    num_online: int


class MixFormer(nn.Module):
    """MixFormer-CvT. Stateless: the tracker owns the :class:`TemplateCache`.

    Inputs are ImageNet-normalised float32 RGB crops: templates ``(B, 3, 128, 128)`` and the
    search region ``(B, 3, 320, 320)``. Outputs are a dict with ``pred_boxes (B, 1, 4)``
    (normalised cx, cy, w, h in the search crop) and ``pred_scores (B,)`` (logits), the
    latter only when the config has a score head.
    """

    def __init__(self, config: ModelConfig, name: str | None = None) -> None:
        super().__init__()
        self.config = config
        self.name = name
        self.backbone = CvTBackbone(config)
        feat_size = config.search_size // config.feat_stride
        self.box_head = CornerHead(
            config.hidden_dim, config.head_dim, feat_size, config.feat_stride, config.head_bn
        )
        self.score_branch = ScorePredictionModule(config.hidden_dim) if config.score_head else None

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
            out["pred_scores"] = self.score_branch(search_feat, template_feat, boxes)
        return out

    def forward(
        self,
        template: torch.Tensor,
        online_template: torch.Tensor,
        search: torch.Tensor,
        run_score_head: bool = True,
        gt_bboxes: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Joint forward (SPEC 1.6, used in training).

        Args:
            template, online_template: ``(B, 3, 128, 128)``.
            search: ``(B, 3, 320, 320)``.
            run_score_head: also compute ``pred_scores``.
            gt_bboxes: ``(B, 4)`` normalised xyxy boxes for the SPM (training); default: the
                predicted box.
        """
        z, x = self.backbone(template, online_template, search)
        return self._heads(x, z, run_score_head, gt_bboxes)

    def encode_templates(
        self, template: torch.Tensor, online_templates: torch.Tensor
    ) -> TemplateCache:
        """Encode the templates once (``set_online``).

        Args:
            template: ``(B, 3, 128, 128)``.
            online_templates: ``(B, N, 3, 128, 128)``, or ``(N, 3, 128, 128)`` when ``B == 1``.
        """
        if online_templates.ndim == 4:
            online_templates = online_templates[None]
        kv, z = self.backbone.encode_templates(template, online_templates)
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
            search: ``(B, 3, 320, 320)``.
            corner_prior: optional ``(B, 2, H*W)`` log-prior added to the corner heat maps
                (:func:`~mixformer.models.head.corner_prior`); None: the reference head.
        """
        x = self.backbone.forward_search(search, cache.kv)
        return self._heads(x, cache.template_feat, run_score_head, None, corner_prior)

    def score(
        self, search_feat: torch.Tensor, template_feat: torch.Tensor, boxes_cxcywh: torch.Tensor
    ) -> torch.Tensor:
        """SPM logits ``(B,)`` for normalised cxcywh boxes ``(B, 4)`` (helper for analysis)."""
        if self.score_branch is None:
            raise RuntimeError("this model has no score head")
        return self.score_branch(search_feat, template_feat, box_cxcywh_to_xyxy(boxes_cxcywh))
