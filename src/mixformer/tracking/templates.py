"""The templates of one target and the online-template update rule (SPEC 2.6 step 8)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from mixformer.tracking.config import TrackerConfig

__all__ = ["OnlineTemplates"]


@dataclass
class OnlineTemplates:
    """The templates of one target and the online-template update rule (SPEC 2.6 step 8).

    One per target of :class:`~mixformer.tracking.core.TrackingCore` (so of every
    :class:`~mixformer.Tracker` and :class:`~mixformer.MultiTracker` target).

    Attributes:
        template: first-frame template ``(1, 3, S, S)`` float32, ImageNet-normalised.
        online: online templates, each ``(1, 3, S, S)``, in slot order (1 to ``online_size``).
        candidate: best-scoring crop since the last update (the first-frame template if none).
        max_score: best (decayed) score since the last update; -1 right after an update.
        forget_id: slot overwritten by the next update once all slots are full.
    """

    template: torch.Tensor
    online: list[torch.Tensor] = field(default_factory=list)
    candidate: torch.Tensor | None = None
    max_score: float = -1.0
    forget_id: int = 0

    def __post_init__(self) -> None:
        if not self.online:
            self.online = [self.template]
        if self.candidate is None:
            self.candidate = self.template

    def stacked(self) -> torch.Tensor:
        """The online templates as one ``(N, 3, S, S)`` tensor."""
        return torch.cat(self.online, dim=0)

    def update(
        self,
        score: float,
        frame_id: int,
        config: TrackerConfig,
        crop: Callable[[], torch.Tensor],
    ) -> bool:
        """Apply the update rule after a frame has been tracked.

        Args:
            score: the frame's confidence in ``[0, 1]``.
            frame_id: the target's frame index (1 for the first frame after ``init``).
            config: tracker settings (decay, threshold, interval, online size).
            crop: returns the template crop ``(1, 3, S, S)`` around the new box; called only
                when the frame becomes the update candidate.
        Returns:
            True when the online templates changed, so the template cache must be re-encoded.
        """
        self.max_score *= config.max_score_decay
        if score > config.score_threshold and score > self.max_score:
            self.candidate = crop()
            self.max_score = score
        if frame_id % config.update_interval:
            return False
        if config.online_size == 1:
            self.online = [self.candidate]
        elif len(self.online) < config.online_size:
            self.online.append(self.candidate)
        else:
            self.online[self.forget_id] = self.candidate
            self.forget_id = (self.forget_id + 1) % config.online_size
        self.max_score = -1.0
        self.candidate = self.template
        return True
