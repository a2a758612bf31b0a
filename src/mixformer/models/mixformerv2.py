"""The MixFormerV2 network (SPEC-MIXFORMERV2 1, 5): backbone with four prediction tokens, the
MLP bin head for the box and the MLP score head, both on the prediction tokens.

Same contract as :class:`~mixformer.models.mixformer.MixFormer` (``forward``,
``encode_templates``, ``track``), so the tracker, the fused form, the ONNX export and the trainer
run it unchanged; ``MixFormer(config)`` of a config with the ``"mlp"`` head builds this class.
The score module is registered as ``score_head`` (the reference's state-dict names) and needs
neither the template features nor a box.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from mixformer.geometry import box_xyxy_to_cxcywh
from mixformer.models.heads.mlp import MlpBoxHead
from mixformer.models.heads.mlp_score import MlpScoreHead
from mixformer.models.mixformer import MixFormer
from mixformer.models.registry import NETWORKS


@NETWORKS.register("mlp")
class MixFormerV2(MixFormer):
    """MixFormerV2-B / -S (any ``"mlp"``-head config).

    Outputs of ``forward`` / ``track``: ``pred_boxes (B, 1, 4)`` float32 normalised cxcywh in
    the search crop, ``pred_scores (B,)`` float32 logits (when ``run_score_head`` and the config
    has a score head), ``prob_l``, ``prob_t``, ``prob_r``, ``prob_b`` ``(B, F)`` float32 bin
    probabilities and ``reg_tokens (B, 4, D)`` (the prediction tokens after the last block).

    ``forward(template, online_template, search)`` is the reference's joint forward
    (``softmax=True``; one online template per sample). ``track`` against
    ``encode_templates(template, online (B, N, 3, Ht, Ht))`` takes any ``N >= 1`` and equals the
    joint forward for ``N = 1``. ``gt_bboxes`` (trainer) is accepted and unused: the score
    is read from the prediction tokens.
    """

    score_attr: ClassVar[str] = "score_head"

    box_head: MlpBoxHead

    @classmethod
    def build_score_module(cls, dim: int) -> nn.Module:
        """:class:`MlpScoreHead` on the prediction tokens (no PrRoIPool)."""
        return MlpScoreHead(dim)

    @property
    def score_branch(self) -> MlpScoreHead | None:  # type: ignore[override]
        """The score module under the name the other families use (None without one)."""
        return self.score_head

    def _heads(
        self,
        search_feat: torch.Tensor,
        template_feat: torch.Tensor,
        run_score_head: bool,
        gt_bboxes: torch.Tensor | None,
        corner_prior: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Box and score from the prediction tokens ``search_feat (B, 4, D)``."""
        if corner_prior is not None:
            raise ValueError("MixFormerV2 has no corner heat maps: set motion_prior=0")
        probs = torch.softmax(self.box_head.bin_logits(search_feat), dim=-1)  # (B, 4, F)
        xyxy = self.box_head.boxes(probs)
        out = {
            "pred_boxes": box_xyxy_to_cxcywh(xyxy)[:, None],
            "prob_l": probs[:, 0],
            "prob_t": probs[:, 2],
            "prob_r": probs[:, 1],
            "prob_b": probs[:, 3],
            "reg_tokens": search_feat,
        }
        if run_score_head and self.score_head is not None:
            out["pred_scores"] = self.score_head(search_feat.float())
        return out

    def corner_maps(self, search_feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Not defined for MixFormerV2 (no heat maps; see ``prob_*`` of the outputs).

        Raises:
            NotImplementedError: always.
        """
        raise NotImplementedError(
            "MixFormerV2 has no corner heat maps; its box comes from the 1-D bin distributions "
            "prob_l / prob_t / prob_r / prob_b of the forward output"
        )

    def score(
        self, search_feat: torch.Tensor, template_feat: torch.Tensor, boxes_cxcywh: torch.Tensor
    ) -> torch.Tensor:
        """Score logits ``(B,)`` of the prediction tokens ``search_feat (B, 4, D)`` (template
        features and boxes are unused: the score does not depend on a box)."""
        if self.score_head is None:
            raise RuntimeError("this model has no score head")
        return self.score_head(search_feat.float())
