"""The reference trackers' per-frame work on the plain network: what speed is compared against.

The reference trackers do not all cache their templates. With one online template the CvT and
MixViT trackers run the **joint forward** (templates and search through every block) on every
frame (SPEC 2.6 and its quirk 5.9, SPEC-MIXVIT 7.1); MixFormerV2's tracker always does
(SPEC-MIXFORMERV2 7.2: its cached ``forward_test`` is broken). With more online templates the
CvT / MixViT trackers encode them once per update (``set_online``) and run the cached search
step (``forward_test``) per frame, as this package's trackers always do.

:func:`reference_engine` gives an :class:`~mixformer.tracking.Engine` over the plain fp32 network
that follows that protocol, so a :class:`~mixformer.Tracker` built on it does per frame what the
reference tracker does, in the plain arithmetic (same boxes as the plain path up to float
rounding: the joint forward and the cached step are the same function, SPEC 1.12). ``mixformer
benchmark --compare`` times it as "the reference". Timing the cached plain path instead
(``Tracker(model, fast=False)``) would flatter the reference where it runs the joint forward:
MixFormerV2-S with the LaSOT settings, 2 threads: 33.8 ms per frame cached, 54.8 ms joint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from mixformer.models.mixformer import MixFormer
from mixformer.models.mixformerv2 import MixFormerV2
from mixformer.tracking.config import TrackerConfig
from mixformer.tracking.engines import Engine

__all__ = ["JointTemplates", "ReferenceProtocol", "reference_engine", "runs_joint_forward"]


@dataclass(frozen=True)
class JointTemplates:
    """The "cache" of the joint-forward protocol: the template crops themselves.

    Attributes:
        template: ``(B, 3, Ht, Ht)`` normalised float32.
        online: ``(B, 3, Ht, Ht)``: the one online template of each sample.
    """

    template: torch.Tensor
    online: torch.Tensor
    num_online: int = 1


def runs_joint_forward(model: MixFormer, config: TrackerConfig) -> bool:
    """Whether the reference tracker of ``model``'s family runs the joint forward every frame
    with ``config``: MixFormerV2 always, the others with one online template."""
    return isinstance(model, MixFormerV2) or config.online_size == 1


class ReferenceProtocol:
    """A network for :class:`~mixformer.tracking.Engine` doing the reference tracker's work.

    ``encode_templates`` keeps the crops (joint protocol, one online template) or encodes the
    cache (otherwise); ``track`` runs the joint forward on the kept crops or the cached step.
    MixFormerV2 with several online templates (the reference crashes there, SPEC-MIXFORMERV2
    9.1) runs the cached step.

    Args:
        model: the plain network (eval mode, float32).
        joint: the protocol: :func:`runs_joint_forward` of the tracker settings.
    """

    def __init__(self, model: MixFormer, joint: bool) -> None:
        self.model = model
        self.joint = joint
        self.dtype = torch.float32

    @property
    def config(self) -> Any:
        """The network's config."""
        return self.model.config

    def encode_templates(self, template: torch.Tensor, online: torch.Tensor) -> Any:
        """``template (B, 3, Ht, Ht)``, ``online (B, N, 3, Ht, Ht)`` (or ``(N, ...)`` for
        ``B == 1``) -> :class:`JointTemplates` (joint protocol, ``N == 1``) or the model's
        :class:`~mixformer.models.mixformer.TemplateCache`."""
        if online.ndim == 4:
            online = online[None]
        if self.joint and online.shape[1] == 1:
            return JointTemplates(template, online[:, 0])
        return self.model.encode_templates(template, online)

    def track(
        self,
        search: torch.Tensor,
        cache: Any,
        run_score_head: bool = True,
        corner_prior: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """The search step: the joint forward on :class:`JointTemplates`, else the cached step
        (outputs as :meth:`~mixformer.models.mixformer.MixFormer.track`)."""
        if isinstance(cache, JointTemplates):
            return self.model(
                cache.template, cache.online, search, run_score_head, corner_prior=corner_prior
            )
        return self.model.track(search, cache, run_score_head, corner_prior)


def reference_engine(model: MixFormer, config: TrackerConfig) -> Engine:
    """An engine over the plain fp32 ``model`` doing the reference tracker's per-frame work
    with ``config`` (pass the engine and the same ``config`` to :class:`~mixformer.Tracker`)."""
    model.eval()
    network = ReferenceProtocol(model, runs_joint_forward(model, config))
    return Engine(network, model, backend="torch", fast=False)
