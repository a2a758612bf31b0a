"""The stateful single-object tracker (SPEC 2.5-2.7): the one-target facade of the core."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch

from mixformer.geometry import Box
from mixformer.tracking.base import TrackerBase
from mixformer.tracking.checks import check_box, check_image
from mixformer.tracking.core import (
    decode_prediction,
    reference_config,
    resolve_config,
)
from mixformer.tracking.results import Observation, TrackAttention, TrackResult
from mixformer.tracking.templates import OnlineTemplates
from mixformer.tracking.threads import intra_op_threads

log = logging.getLogger(__name__)

__all__ = [
    "Observation",
    "OnlineTemplates",
    "TrackAttention",
    "TrackResult",
    "Tracker",
    "check_box",
    "check_image",
    "decode_prediction",
    "reference_config",
    "resolve_config",
]

_ID = 0  # the one target's id in the core


class Tracker(TrackerBase):
    """Tracks one object through a sequence with a :class:`~mixformer.models.MixFormer` network.

    The network is stateless; the tracker owns the templates, the template cache, the frame index,
    the last box and the best online candidate (in a
    :class:`~mixformer.tracking.core.TrackingCore`, whose one-target step
    :meth:`~mixformer.tracking.core.TrackingCore.step_target` every tracker runs). Every frame
    runs the cached search step: templates are encoded once per template update. Trackers over
    the same model share one :class:`~mixformer.tracking.engines.Engine` (no copy of the weights
    per tracker).

    Args:
        model_or_engine: the network (put in eval mode; moved to ``device``), or an
            :class:`~mixformer.tracking.engines.Engine` from :func:`mixformer.engine`.
        config: tracker settings (default: ``TrackerConfig.for_model(model)``, the model's own
            default preset with its crop sizes, as the CLI uses).
        device, color, dtype, backend, fast, keep_attention, threads: keyword-only, see
            :class:`~mixformer.tracking.base.TrackerBase`. ``dtype="auto"`` (default) is bf16
            on CPUs with native bf16 matrix units (Intel AMX) and fp32 elsewhere and for the
            default model (its weights track worse in bf16);
            ``dtype="fp32"`` the exact path; ``fast=False`` the plain reference arithmetic;
            ``backend="onnxruntime"`` runs the exported graphs. The resolved precision is
            :attr:`dtype`.

    Example:
        >>> tracker = Tracker(build_model("mixformer-tiny"))
        >>> tracker.init(frame0, (10, 20, 40, 30))
        >>> tracker.update(frame1).box
        >>> obs = tracker.update(frame2, observe=True).observation
        >>> obs.crop_window   # (x, y, side, side)
        >>> obs.heatmaps      # (2, 20, 20) on torch; None on OpenVINO (backend="torch" for them)
    """

    # -- state -------------------------------------------------------------------------------
    @property
    def state(self) -> Box:
        """Current box ``(x, y, w, h)`` in image pixels."""
        return self._target().box

    @property
    def num_online_templates(self) -> int:
        """Online templates currently held (1 after ``init``, up to ``online_size``)."""
        return len(self._target().templates.online)

    @property
    def templates(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The network inputs of the current templates.

        Returns:
            ``(template (1, 3, T, T), online (N, 3, T, T))`` float32, ImageNet-normalised: what
            the next search step's template cache was encoded from.
        """
        t = self._target().templates
        return t.template, t.stacked()

    def _target(self):  # noqa: ANN202 - TargetState
        if _ID not in self._core.targets:
            raise RuntimeError("call Tracker.init(image, box) before update()")
        return self._core.targets[_ID]

    # -- API ---------------------------------------------------------------------------------
    def init(self, image: np.ndarray, box: Sequence[float]) -> TrackResult:
        """Start tracking the object in ``box`` (x, y, w, h pixels) of the first frame.

        Args:
            image: ``(H, W, 3)`` uint8 RGB (see :func:`check_image` for other layouts).
            box: ``(x, y, w, h)`` in pixels.
        Returns:
            ``box`` with score 1.0 and frame index 0.
        Raises:
            ValueError: a bad image or box.
        """
        # validate before dropping the previous sequence's state (the core converts the colours)
        shape = check_image(image).shape
        cfg = self._core.config
        check_box(box, shape[0], shape[1], max(cfg.search_factor, cfg.template_factor))
        self._core.clear()
        with intra_op_threads(self.threads):
            return self._core.add(image, box, _ID)

    def update(self, image: np.ndarray, observe: bool = False) -> TrackResult:
        """Track into the next frame.

        Args:
            image: the next ``(H, W, 3)`` uint8 frame, the size of the ``init`` frame.
            observe: also return what happened in this step
                (:attr:`TrackResult.observation`, an :class:`Observation`: the search crop
                window and resize factor, the network input and raw outputs, the corner heat
                maps, the score, whether the templates changed, timings).
        Returns:
            The new box and its score.
        Raises:
            RuntimeError: before :meth:`init`.
            ValueError: a bad image or a frame size other than the ``init`` frame's.
        """
        target = self._target()
        with intra_op_threads(self.threads):
            return self._core.step_target(self._core.check_frame(image), target, observe)
