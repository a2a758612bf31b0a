"""The stateful single-object tracker (SPEC 2.5-2.7)."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np
import torch

from mixformer.geometry import (
    Box,
    clip_box,
    map_box_back,
    max_crop_side,
    normalize_patch,
    sample_target,
)
from mixformer.models.mixformer import MixFormer, TemplateCache
from mixformer.tracking.config import TrackerConfig
from mixformer.tracking.engine import InferenceEngine, build_engine
from mixformer.tracking.motion import MotionState, motion_prior
from mixformer.tracking.preprocess import SearchCropper

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrackResult:
    """Output for one frame.

    Attributes:
        box: ``(x, y, w, h)`` floats in image pixels (top-left corner and size).
        score: confidence in ``[0, 1]`` (the score module's sigmoid; 1.0 on the first frame and
            for models without a score module).
        frame_index: 0 for the ``init`` frame, then 1, 2, ...
    """

    box: Box
    score: float
    frame_index: int


def check_image(image: np.ndarray, color: Literal["rgb", "bgr"] = "rgb") -> np.ndarray:
    """Validate a frame and return it as ``(H, W, 3)`` uint8 RGB.

    Args:
        image: ``(H, W, 3)`` uint8 RGB (or BGR with ``color="bgr"``), or ``(H, W)`` /
            ``(H, W, 1)`` uint8 gray.
    Raises:
        ValueError: not a uint8 array, a channel layout other than those, or empty.
    """
    if not isinstance(image, np.ndarray):
        raise ValueError(f"image must be a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 (0-255), got dtype {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    elif image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"image must be HxWx3 (RGB) or HxW / HxWx1 (gray), got shape {image.shape}"
            + _layout_hint(image.shape)
        )
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"image is empty: shape {image.shape}")
    if color == "bgr":
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    elif color != "rgb":
        raise ValueError(f"color must be 'rgb' or 'bgr', got {color!r}")
    return image


def _layout_hint(shape: tuple[int, ...]) -> str:
    """What to do about an image array of an unsupported ``shape`` (empty when unsure)."""
    if len(shape) == 3 and shape[0] in (1, 3, 4) and shape[2] > 4:
        return " (channels first: transpose it to HxWxC, e.g. image.transpose(1, 2, 0))"
    if len(shape) == 3 and shape[2] == 4:
        return " (4 channels: drop the alpha channel first, e.g. image[:, :, :3])"
    if len(shape) == 4 and shape[0] == 1:
        return " (a batch of one: pass image[0])"
    return ""


def check_box(box: Sequence[float], height: int, width: int, factor: float | None = None) -> Box:
    """Validate an initial ``(x, y, w, h)`` box against an ``height x width`` image.

    Args:
        box: ``(x, y, w, h)`` in pixels.
        height / width: the image size.
        factor: the largest crop factor the box will be cropped with (the search factor); when
            given, a box whose crop exceeds :func:`~mixformer.geometry.max_crop_side` is refused.
    Raises:
        ValueError: wrong length, NaN/inf, zero or negative size, no overlap with the image, or
            (with ``factor``) far larger than the image.
    """
    try:
        vals = tuple(float(v) for v in box)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"box must be 4 numbers (x, y, w, h), got {box!r}") from exc
    if len(vals) != 4:
        raise ValueError(f"box must be 4 numbers (x, y, w, h), got {len(vals)}: {box!r}")
    if not all(math.isfinite(v) for v in vals):
        raise ValueError(f"box has NaN or infinite values: {vals}")
    x, y, w, h = vals
    if w <= 0 or h <= 0:
        raise ValueError(f"box must have positive width and height, got w={w}, h={h}")
    if x >= width or y >= height or x + w <= 0 or y + h <= 0:
        raise ValueError(f"box {vals} lies entirely outside the {width}x{height} image")
    if factor is not None:
        side, limit = math.sqrt(w * h) * factor, max_crop_side(height, width)
        if side > limit:
            raise ValueError(
                f"box {vals} is far larger than the {width}x{height} image: its search crop "
                f"would be {side:.0f} px wide (limit {limit})"
            )
    return (x, y, w, h)


def reference_config(model: MixFormer) -> TrackerConfig:
    """The reference tracker's defaults (no motion settings) with the model's crop sizes.

    What the measurement helpers (benchmark, precision study) run by default, so that their
    figures stay comparable across models; :func:`resolve_config` gives trackers the model's
    own preset instead.
    """
    mc = model.config
    return TrackerConfig(template_size=mc.template_size, search_size=mc.search_size)


def resolve_config(model: MixFormer, config: TrackerConfig | None) -> TrackerConfig:
    """``config``, or when None the model's own default settings.

    The default is ``TrackerConfig.for_model(model)``: the ``"default"`` preset of the model's
    preset name (its tuned settings, e.g. ``mixformer-tiny``'s motion prior, the same the CLI
    uses) with the network's crop sizes.

    Raises:
        ValueError: the crop sizes are not the ones the model was built for.
    """
    mc = model.config
    if config is None:
        return TrackerConfig.for_model(model)
    if (mc.template_size, mc.search_size) != (config.template_size, config.search_size):
        raise ValueError(
            f"tracker crop sizes {config.template_size}/{config.search_size} do not "
            f"match the model's {mc.template_size}/{mc.search_size}"
        )
    return config


def decode_prediction(
    out: dict[str, torch.Tensor],
    index: int,
    prev: Box,
    rf: float,
    config: TrackerConfig,
    size: tuple[int, int],
) -> tuple[Box, float | None]:
    """Turn one batch row of the network output into the new image box (SPEC 2.6 steps 4-7).

    Args:
        out: output of :meth:`MixFormer.track`: ``pred_boxes (B, 1, 4)`` normalised cxcywh in
            the search crop, optional ``pred_scores (B,)`` logits.
        index: the batch row to decode.
        prev: the target's previous box ``(x, y, w, h)`` in pixels (the crop's anchor).
        rf: resize factor of that row's search crop.
        config: tracker settings (search size).
        size: image ``(height, width)``.
    Returns:
        ``(box, score)``: the clipped ``(x, y, w, h)`` box in pixels and the sigmoid score in
        ``[0, 1]`` (None when the model has no score head).
    """
    with torch.inference_mode():
        box = out["pred_boxes"][index].reshape(-1, 4).mean(0).float()
        pred = (box * config.search_size / rf).tolist()
        scores = out.get("pred_scores")
        score = (
            float(torch.sigmoid(scores[index].float()).reshape(-1)[0])
            if scores is not None
            else None
        )
    mapped = map_box_back(pred, prev, config.search_size, rf)
    return clip_box(mapped, size[0], size[1], margin=10), score


@dataclass
class OnlineTemplates:
    """The templates of one target and the online-template update rule (SPEC 2.6 step 8).

    Shared by :class:`Tracker` and :class:`mixformer.tracking.multi.MultiTracker`.

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


class Tracker:
    """Tracks one object through a sequence with a :class:`~mixformer.models.MixFormer` network.

    The network is stateless; the tracker owns the templates, the template cache, the frame index,
    the last box and the best online candidate. Every frame runs the cached search step: templates
    are encoded once per template update.

    Args:
        model: the network (put in eval mode; moved to ``device``).
        config: tracker settings (default: ``TrackerConfig.for_model(model)``, the model's own
            default preset with its crop sizes, as the CLI uses).
        device: torch device for the network.
        color: channel order of the frames passed in (``"rgb"`` or ``"bgr"`` for OpenCV frames).
        dtype: network precision, ``"fp32"`` (default), ``"bf16"`` or ``"fp16"``; the latter two
            run the fast path in that precision (boxes differ from fp32 by float rounding).
        backend: ``"torch"`` (default) or ``"onnxruntime"`` (the network is exported to ONNX
            and run by ONNX Runtime; needs ``pip install onnx onnxruntime``).
        fast: run the fast inference path (:mod:`mixformer.models.fast`: same boxes up to
            ~1e-5, several times faster). Default: only when ``dtype`` is not fp32, so the
            default tracker runs the plain reference arithmetic.

    Example:
        >>> tracker = Tracker(build_model("mixformer-tiny"))
        >>> tracker.init(frame0, (10, 20, 40, 30))
        >>> tracker.update(frame1).box
    """

    def __init__(
        self,
        model: MixFormer,
        config: TrackerConfig | None = None,
        device: str | torch.device = "cpu",
        color: Literal["rgb", "bgr"] = "rgb",
        dtype: Literal["fp32", "bf16", "fp16"] = "fp32",
        backend: Literal["torch", "onnxruntime"] = "torch",
        fast: bool | None = None,
    ) -> None:
        self.config = resolve_config(model, config)
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.engine: InferenceEngine = build_engine(self.model, dtype, backend, fast)
        # Fast engines read the search crop from a reused buffer (bit-identical values); the
        # plain path keeps the reference preprocessing untouched.
        self._search_cropper = (
            SearchCropper(self.config.search_size, self.device)
            if self.engine is not self.model
            else None
        )
        self.color = color
        self._initialized = False

    # -- state -------------------------------------------------------------------------------
    @property
    def state(self) -> Box:
        """Current box ``(x, y, w, h)`` in image pixels."""
        self._require_init()
        return self._state

    @property
    def num_online_templates(self) -> int:
        """Online templates currently held (1 after ``init``, up to ``online_size``)."""
        self._require_init()
        return len(self._templates.online)

    def _require_init(self) -> None:
        if not self._initialized:
            raise RuntimeError("call Tracker.init(image, box) before update()")

    def _crop(
        self, image: np.ndarray, box: Box, factor: float, size: int
    ) -> tuple[torch.Tensor, float]:
        patch, rf = sample_target(image, box, factor, size)
        return normalize_patch(patch, self.device), rf

    def _encode(self) -> None:
        with torch.inference_mode():
            self._cache: TemplateCache = self.engine.encode_templates(
                self._templates.template, self._templates.stacked()
            )

    # -- API ---------------------------------------------------------------------------------
    def init(self, image: np.ndarray, box: Sequence[float]) -> TrackResult:
        """Start tracking the object in ``box`` (x, y, w, h pixels) of the first frame."""
        image = check_image(image, self.color)
        h, w = image.shape[:2]
        cfg = self.config
        box = check_box(box, h, w, max(cfg.search_factor, cfg.template_factor))
        template, _ = self._crop(image, box, cfg.template_factor, cfg.template_size)
        self._templates = OnlineTemplates(template)
        self._encode()
        self._state = box
        self._motion = MotionState()
        self._frame_id = 0
        self._size = (h, w)
        self._initialized = True
        return TrackResult(box, 1.0, 0)

    def update(self, image: np.ndarray) -> TrackResult:
        """Track into the next frame; returns the new box and its score."""
        self._require_init()
        image = check_image(image, self.color)
        if image.shape[:2] != self._size:
            raise ValueError(
                f"frame size changed mid-sequence: {image.shape[1]}x{image.shape[0]}, "
                f"expected {self._size[1]}x{self._size[0]}"
            )
        cfg = self.config
        self._frame_id += 1
        anchor = self._motion.anchor(self._state, cfg, self._size)
        if self._search_cropper is not None:
            x, rf = self._search_cropper(image, anchor, cfg.search_factor)
        else:
            x, rf = self._crop(image, anchor, cfg.search_factor, cfg.search_size)
        prior = motion_prior(self.model, [(anchor, rf)], cfg)
        with torch.inference_mode():
            out = self.engine.track(x, self._cache, corner_prior=prior)
        box, score = decode_prediction(out, 0, anchor, rf, cfg, self._size)
        self._state = self._motion.observe(self._state, box, cfg, self._size)
        if score is not None:
            self._update_templates(image, score)
        return TrackResult(self._state, 1.0 if score is None else score, self._frame_id)

    def _update_templates(self, image: np.ndarray, score: float) -> None:
        """Online-template rule of SPEC 2.6 step 8 (see :class:`OnlineTemplates`)."""
        cfg = self.config

        def crop() -> torch.Tensor:
            return self._crop(image, self._state, cfg.template_factor, cfg.template_size)[0]

        if self._templates.update(score, self._frame_id, cfg, crop):
            self._encode()
