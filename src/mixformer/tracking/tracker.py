"""The stateful single-object tracker (SPEC 2.5-2.7): the one-target facade of the core."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch

from mixformer.geometry import Box
from mixformer.models.mixformer import MixFormer
from mixformer.tracking.checks import check_box, check_image
from mixformer.tracking.config import TrackerConfig
from mixformer.tracking.core import (
    CoreView,
    TrackingCore,
    decode_prediction,
    reference_config,
    resolve_config,
)
from mixformer.tracking.engine import InferenceEngine
from mixformer.tracking.results import Observation, TrackAttention, TrackResult
from mixformer.tracking.templates import OnlineTemplates
from mixformer.tracking.threads import intra_op_threads, resolve_threads

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


class Tracker(CoreView):
    """Tracks one object through a sequence with a :class:`~mixformer.models.MixFormer` network.

    The network is stateless; the tracker owns the templates, the template cache, the frame index,
    the last box and the best online candidate (in a
    :class:`~mixformer.tracking.core.TrackingCore`, the same code :class:`~mixformer.MultiTracker`
    runs). Every frame runs the cached search step: templates are encoded once per template
    update. Trackers over the same model share one engine (no copy of the weights per tracker).

    Args:
        model: the network (put in eval mode; moved to ``device``).
        config: tracker settings (default: ``TrackerConfig.for_model(model)``, the model's own
            default preset with its crop sizes, as the CLI uses).
        device: torch device for the network.
        color: channel order of the frames passed in (``"rgb"`` or ``"bgr"`` for OpenCV frames).
        dtype: network precision. ``"auto"`` (default): bf16 on CPUs with native bf16 matrix
            units (Intel AMX), where it runs up to ~2x faster and tracks like fp32, else fp32
            (other CPUs, CUDA, the plain path, ONNX Runtime; see
            :func:`~mixformer.tracking.engine.resolve_dtype_setting`). ``"fp32"``: the exact
            path (the reference tracker's boxes); ``"bf16"`` / ``"fp16"``: the fast path in that
            precision (boxes differ from fp32 by float rounding). The resolved precision is
            :attr:`dtype`.
        backend: ``"torch"`` (default) or ``"onnxruntime"`` (the network is exported to ONNX
            once per model and run by ONNX Runtime; needs ``pip install onnx onnxruntime``).
        fast: the fast inference path (default: folded BatchNorm, fused attention; boxes within
            about 1e-4 px of the plain path, several times fewer passes over memory). False runs
            the plain reference arithmetic, the executable specification (fp32 only).
        engine: run this ready engine instead (anything with the ``encode_templates`` /
            ``track`` contract of :class:`~mixformer.models.MixFormer`, e.g. a quantised fast
            module); ``dtype``, ``backend`` and ``fast`` are then not used.
        keep_attention: every result carries the mixed-attention probabilities of every block
            (:attr:`TrackResult.attention`, a :class:`~mixformer.tracking.results.TrackAttention`;
            torch backend only). The attention then runs its explicit softmax (about the plain
            path's speed), and each result holds the probability matrices (stage 0 of a 320 px
            search crop: 6400 queries x their keys, tens of MB).
        threads: torch intra-op threads for this tracker's own calls (``init``, ``update``).
            None (default): if the program chose a count (``torch.set_num_threads``,
            ``OMP_NUM_THREADS``, the CLI's ``--threads``) that one; otherwise the CLI's
            default, picked once here (:func:`~mixformer.tracking.threads.auto_threads`: 2, or
            1 on a busy or one-core machine; torch's one-thread-per-core default makes every op
            wait for descheduled threads on a busy machine). An int sets the count; 0 leaves
            torch's setting alone. torch's previous count is restored after every call, so the
            rest of the program keeps its own.

    Example:
        >>> tracker = Tracker(build_model("mixformer-tiny"))
        >>> tracker.init(frame0, (10, 20, 40, 30))
        >>> tracker.update(frame1).box
        >>> obs = tracker.update(frame2, observe=True).observation
        >>> obs.crop_window, obs.heatmaps.shape   # (x, y, side, side), (2, 20, 20)
    """

    def __init__(
        self,
        model: MixFormer,
        config: TrackerConfig | None = None,
        device: str | torch.device = "cpu",
        color: Literal["rgb", "bgr"] = "rgb",
        dtype: Literal["auto", "fp32", "bf16", "fp16"] = "auto",
        backend: Literal["torch", "onnxruntime"] = "torch",
        fast: bool = True,
        engine: InferenceEngine | None = None,
        keep_attention: bool = False,
        threads: int | None = None,
    ) -> None:
        self.threads = resolve_threads(threads)
        """Intra-op threads of this tracker's calls (0: torch's setting)."""
        with intra_op_threads(self.threads):
            self._core = TrackingCore(
                model,
                config,
                device,
                color,
                dtype,
                backend,
                fast,
                engine=engine,
                keep_attention=keep_attention,
            )

    # -- state -------------------------------------------------------------------------------
    @property
    def dtype(self) -> str:
        """The precision the network runs in: ``"fp32"``, ``"bf16"`` or ``"fp16"``."""
        return self._core.dtype

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
        self._target()
        with intra_op_threads(self.threads):
            return self._core.step(image, observe)[_ID]
