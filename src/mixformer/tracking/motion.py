"""Motion smoothing on top of the reference tracker (ours, not the reference's).

Three settings of :class:`~mixformer.tracking.config.TrackerConfig`, all off by default so that
the released models track exactly as the reference does:

- ``motion_prior``: a Gaussian log-prior on the corner heat maps around where the anchor box's
  corners lie in the search crop (:func:`motion_prior`);
- ``velocity``: the search crop is centred on the previous box moved by a smoothed velocity
  (an exponential moving average of the frame-to-frame centre displacement), so a target that
  keeps moving stays near the crop centre, also while it is briefly hidden;
- ``size_update``: the new box keeps the network's centre but takes only this fraction of its
  width/height change, which damps frame-to-frame size jitter;
- ``max_scale_change``: each side changes by at most this ratio per frame.

:class:`MotionState` holds the per-target state; :class:`~mixformer.Tracker` and
:class:`~mixformer.MultiTracker` both use it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from mixformer.geometry import Box, clip_box
from mixformer.models.heads import corner_prior
from mixformer.tracking.config import TrackerConfig

__all__ = ["MotionState", "motion_prior"]


@dataclass
class MotionState:
    """Smoothed velocity of one target (``velocity`` and ``size_update`` settings).

    Attributes:
        vx / vy: velocity estimate in pixels per frame (image coordinates).
    """

    vx: float = 0.0
    vy: float = 0.0

    def anchor(self, box: Box, config: TrackerConfig, size: tuple[int, int]) -> Box:
        """The box the search crop is centred on for the next frame.

        Args:
            box: the previous ``(x, y, w, h)`` pixel box.
            config: tracker settings (``velocity``; 0 returns ``box`` unchanged).
            size: image ``(height, width)``.
        Returns:
            ``box`` moved by the velocity estimate, clipped like a tracker output.
        """
        if config.velocity <= 0:
            return box
        x, y, w, h = box
        return clip_box((x + self.vx, y + self.vy, w, h), size[0], size[1])

    def observe(
        self, prev: Box, measured: Box, config: TrackerConfig, size: tuple[int, int]
    ) -> Box:
        """Fold the network's box for this frame into the state and return the tracker's box.

        Args:
            prev: the previous ``(x, y, w, h)`` pixel box.
            measured: the decoded, clipped network box for this frame.
            config: tracker settings (``size_update``, ``max_scale_change``, ``velocity``).
            size: image ``(height, width)``.
        Returns:
            ``measured`` with its size change scaled by ``size_update`` and bounded by
            ``max_scale_change`` (``measured`` itself when both are off).
        """
        box = measured
        if config.size_update < 1 or config.max_scale_change > 0:
            x, y, w, h = measured
            cx, cy = x + w / 2, y + h / 2
            w = prev[2] + config.size_update * (w - prev[2])
            h = prev[3] + config.size_update * (h - prev[3])
            if config.max_scale_change > 0:
                r = config.max_scale_change
                w = min(max(w, prev[2] / r), prev[2] * r)
                h = min(max(h, prev[3] / r), prev[3] * r)
            box = clip_box((cx - w / 2, cy - h / 2, w, h), size[0], size[1])
        if config.velocity > 0:
            dx = box[0] + box[2] / 2 - (prev[0] + prev[2] / 2)
            dy = box[1] + box[3] / 2 - (prev[1] + prev[3] / 2)
            g = config.velocity
            self.vx = (1 - g) * self.vx + g * dx
            self.vy = (1 - g) * self.vy + g * dy
        return box


def motion_prior(
    grid: tuple[torch.Tensor, torch.Tensor] | None,
    anchors: Sequence[tuple[Box, float]],
    config: TrackerConfig,
) -> torch.Tensor | None:
    """Corner-map log-prior of :attr:`TrackerConfig.motion_prior` for a batch of search crops.

    Each crop is centred on its anchor box, so the box's corners are expected where that box's
    corners fall in the crop: ``search_size / 2 -+ (w, h) * rf / 2``.

    Args:
        grid: ``(coord_x, coord_y)``, the corner heat maps' cell coordinates in the search crop
            (:attr:`Engine.corner_grid <mixformer.tracking.engines.Engine.corner_grid>`).
        anchors: per batch row, the anchor ``(x, y, w, h)`` pixel box the crop is centred on
            and the crop's resize factor ``rf``.
        config: tracker settings (``motion_prior`` as a fraction of ``search_size``).
    Returns:
        ``(B, 2, H*W)`` float32 on the grid's device, or None when the prior is off.
    Raises:
        ValueError: the prior is on but the head has no corner maps (``grid`` is None).
    """
    if config.motion_prior <= 0:
        return None
    if grid is None:
        raise ValueError(
            "the network has no corner-map grid (its head has no corner heat maps): "
            "set motion_prior=0"
        )
    half = config.search_size / 2.0
    corners = [
        (half - w * rf / 2, half - h * rf / 2, half + w * rf / 2, half + h * rf / 2)
        for (_, _, w, h), rf in anchors
    ]
    coord_x, coord_y = grid
    c = torch.tensor(corners, dtype=torch.float32, device=coord_x.device)
    return corner_prior(c, coord_x, coord_y, config.motion_prior * config.search_size)
