"""The one-target frame step and what every tracker shares: per-target state, settings, results.

:class:`TrackingCore` holds the targets of one video and runs the frame step of one target,
top to bottom in :meth:`TrackingCore.step_target`: anchor, crop, engine, decode, motion,
templates. :class:`~mixformer.Tracker` runs it directly; :class:`~mixformer.MultiTracker` runs
:class:`~mixformer.tracking.batch.BatchedCore`, the same step for many targets with one batched
engine call per online-template count (a layer a single target never goes through).

The network runs in an :class:`~mixformer.tracking.engines.Engine` (:func:`mixformer.engine`):
trackers over one model share one engine (no copy of the weights per tracker), and every call
returns what it produced (attention maps, head features) instead of leaving it on the engine.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from mixformer.geometry import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Box,
    normalize_patch,
    sample_target,
)
from mixformer.tracking.checks import check_box, check_image
from mixformer.tracking.config import TrackerConfig
from mixformer.tracking.decode import (
    crop_window,
    decode_prediction,
    reference_config,
    resolve_config,
)
from mixformer.tracking.engines import Engine
from mixformer.tracking.motion import MotionState, motion_prior
from mixformer.tracking.preprocess import SearchCropper
from mixformer.tracking.results import Observation, TrackAttention, TrackResult
from mixformer.tracking.templates import OnlineTemplates

log = logging.getLogger(__name__)

__all__ = [
    "TargetState",
    "TrackingCore",
    "template_images",
    "crop_window",
    "decode_prediction",
    "reference_config",
    "resolve_config",
]


def _image_of(t: torch.Tensor) -> np.ndarray:
    """A normalised ``(1, 3, S, S)`` crop back as ``(S, S, 3)`` uint8 RGB."""
    mean = torch.tensor(IMAGENET_MEAN).reshape(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).reshape(3, 1, 1)
    img = (t[0].detach().float().cpu() * std + mean) * 255.0
    return img.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


@dataclass
class TargetState:
    """Everything the core keeps for one target (what a one-target tracker holds).

    Attributes:
        templates: the target's templates and update-rule state.
        box: current ``(x, y, w, h)`` box in image pixels.
        cache: the engine's template cache of ``templates`` (batch size 1).
        motion: velocity state of the motion settings.
        frame_id: frames tracked since the target was added (0 on its first frame).
        version: bumped on every re-encode (invalidates stacked batch caches).
        template_attention: template-kind attention records of the last encode (one row),
            kept only with ``keep_attention``.
    """

    templates: OnlineTemplates
    box: Box
    cache: Any = None
    motion: MotionState = field(default_factory=MotionState)
    frame_id: int = 0
    version: int = 0
    template_attention: tuple[Any, ...] = ()


class TrackingCore:
    """The targets of one video and the frame step of one target.

    Args:
        engine: what runs the network (:func:`mixformer.engine`).
        config: settings shared by all targets (default: ``TrackerConfig.for_model(model)``).
        color: channel order of the frames passed in (``"rgb"`` or ``"bgr"``).
        keep_attention: every result carries the mixed-attention probabilities of every block
            (returned by the engine's calls; torch engines only).
    Raises:
        ValueError: crop sizes that do not match the model, a bad colour, or
            ``keep_attention`` with an engine that cannot record attention.
    """

    def __init__(
        self,
        engine: Engine,
        config: TrackerConfig | None = None,
        color: Literal["rgb", "bgr"] = "rgb",
        keep_attention: bool = False,
    ) -> None:
        if color not in ("rgb", "bgr"):
            raise ValueError(f"color must be 'rgb' or 'bgr', got {color!r}")
        if keep_attention and not engine.can_record_attention:
            raise ValueError(
                "keep_attention needs a torch engine (backend='torch'); "
                f"got {type(engine.network).__name__}"
            )
        self.engine = engine
        self.model = engine.model
        self.config = resolve_config(self.model, config)
        self.device = engine.device
        self.color = color
        self.keep_attention = keep_attention
        # Fast engines read the search crops from a reused buffer (bit-identical values); the
        # plain path (and the reference protocol, mixformer.perf.reference) keeps the reference
        # preprocessing untouched.
        self._cropper = (
            SearchCropper(self.config.search_size, self.device)
            if engine.network is not self.model and engine.fast
            else None
        )
        self.targets: dict[int, TargetState] = {}
        """Per-target state by id, in the order the targets were added (read-only use)."""
        self.size: tuple[int, int] | None = None
        """``(height, width)`` of the frames of the current video (None with no targets)."""
        self.num_network_calls = 0
        """Search-step network calls made so far."""

    # -- frames and crops -----------------------------------------------------------------------
    def check_frame(self, image: np.ndarray) -> np.ndarray:
        """Validate a frame (see :func:`check_image`) against the current video's size.

        Returns:
            ``(H, W, 3)`` uint8 RGB.
        Raises:
            ValueError: a bad image, or a size other than the current video's.
        """
        image = check_image(image, self.color)
        if self.size is not None and image.shape[:2] != self.size:
            raise ValueError(
                f"frame size changed mid-sequence: {image.shape[1]}x{image.shape[0]}, "
                f"expected {self.size[1]}x{self.size[0]}"
            )
        return image

    def template_crop(self, image: np.ndarray, box: Box) -> torch.Tensor:
        """The normalised ``(1, 3, T, T)`` template crop around ``box``."""
        cfg = self.config
        patch, _ = sample_target(image, box, cfg.template_factor, cfg.template_size)
        return normalize_patch(patch, self.device)

    def search_crops(
        self, image: np.ndarray, anchors: Sequence[Box]
    ) -> tuple[torch.Tensor, list[float]]:
        """The normalised ``(B, 3, S, S)`` search crops around ``anchors`` and their resize
        factors."""
        cfg = self.config
        if self._cropper is not None:
            return self._cropper.crop_batch(image, anchors, cfg.search_factor)
        crops = [sample_target(image, a, cfg.search_factor, cfg.search_size) for a in anchors]
        xs = [normalize_patch(patch, self.device) for patch, _ in crops]
        return (xs[0] if len(xs) == 1 else torch.cat(xs, dim=0)), [rf for _, rf in crops]

    # -- templates ------------------------------------------------------------------------------
    def encode(self, targets: Sequence[TargetState]) -> float:
        """(Re-)encode the templates of ``targets``, one engine call each.

        Returns:
            Seconds spent in the engine.
        """
        seconds = 0.0
        for t in targets:
            template, online = t.templates.template, t.templates.stacked()[None]
            t0 = time.perf_counter()
            if self.keep_attention:
                t.cache, maps = self.engine.encode_templates(template, online, attention=True)
                t.template_attention = tuple(maps)
            else:
                t.cache = self.engine.encode_templates(template, online)
            seconds += time.perf_counter() - t0
            t.version += 1
        return seconds

    # -- targets --------------------------------------------------------------------------------
    def add(self, image: np.ndarray, box: Sequence[float], target_id: int) -> TrackResult:
        """Start tracking the object in ``box`` of ``image`` under ``target_id``.

        Args:
            image: the current frame (validated with :meth:`check_frame`).
            box: ``(x, y, w, h)`` in pixels.
            target_id: a non-negative int not in use.
        Returns:
            The target's frame-0 result: ``box``, score 1.0 (with ``keep_attention``, the
            template-kind attention of its first encoding).
        Raises:
            ValueError: bad image, box or id.
        """
        image = self.check_frame(image)
        h, w = image.shape[:2]
        cfg = self.config
        box = check_box(box, h, w, max(cfg.search_factor, cfg.template_factor))
        if not isinstance(target_id, int) or isinstance(target_id, bool) or target_id < 0:
            raise ValueError(f"target_id must be a non-negative int, got {target_id!r}")
        if target_id in self.targets:
            raise ValueError(f"target id {target_id} is already tracked")
        target = TargetState(OnlineTemplates(self.template_crop(image, box)), box)
        self.encode([target])
        self.targets[target_id] = target
        self.size = (h, w)
        attention = None
        if self.keep_attention:
            attention = TrackAttention(
                target.template_attention, template_images(target), None, cfg.search_size, box
            )
        return TrackResult(box, 1.0, 0, attention=attention)

    def remove(self, target_id: int) -> None:
        """Stop tracking ``target_id``.

        Raises:
            KeyError: no such target (the message lists the tracked ids).
        """
        self.get(target_id)
        del self.targets[target_id]
        if not self.targets:
            self.size = None

    def clear(self) -> None:
        """Remove every target (a new video of any size may start)."""
        self.targets.clear()
        self.size = None

    def get(self, target_id: int) -> TargetState:
        """The state of ``target_id`` (raises ``KeyError`` listing the tracked ids)."""
        try:
            return self.targets[target_id]
        except KeyError:
            raise KeyError(
                f"no target with id {target_id!r}; tracking {list(self.targets)}"
            ) from None

    # -- the frame step -------------------------------------------------------------------------
    def step(self, image: np.ndarray, observe: bool = False) -> dict[int, TrackResult]:
        """Track every target into the next frame, one :meth:`step_target` each.

        Args:
            image: ``(H, W, 3)`` uint8 frame (see :func:`check_image`), the video's size.
            observe: attach an :class:`~mixformer.tracking.results.Observation` to every
                result.
        Returns:
            ``{target_id: TrackResult}`` in the order the targets were added.
        """
        image = self.check_frame(image)
        return {tid: self.step_target(image, t, observe) for tid, t in self.targets.items()}

    def step_target(
        self, image: np.ndarray, target: TargetState, observe: bool = False
    ) -> TrackResult:
        """One target's frame step (SPEC 2.6), in the order it happens.

        Args:
            image: the checked ``(H, W, 3)`` uint8 RGB frame.
            target: the target's state (updated in place).
            observe: attach an :class:`~mixformer.tracking.results.Observation`.
        """
        cfg, size = self.config, image.shape[:2]
        # 1. anchor: the box the search crop is centred on (the last box, or moved by velocity)
        anchor = target.motion.anchor(target.box, cfg, size)
        # 2. crop the search region around it
        t0 = time.perf_counter()
        search, (rf,) = self.search_crops(image, [anchor])
        crop_seconds = time.perf_counter() - t0
        # 3. the engine's search step against the cached templates (+ the motion prior)
        prior = motion_prior(self.engine.corner_grid, [(anchor, rf)], cfg)
        t0 = time.perf_counter()
        out = self.engine.track(
            search, target.cache, prior, attention=self.keep_attention, features=observe
        )
        network_seconds = time.perf_counter() - t0
        self.num_network_calls += 1
        target.frame_id += 1
        # 4. decode the network box back to image pixels
        measured, score = decode_prediction(out, 0, anchor, rf, cfg, size)
        observation = None
        if observe:
            observation = self.observation(out, 0, search, prior, anchor, rf, measured, score)
            observation.update(network_seconds=network_seconds, num_online=target.cache.num_online)
        attention = self.search_attention(out, 0, target)  # templates before any update
        # 5. motion settings: the tracker's box from the network's
        target.box = target.motion.observe(target.box, measured, cfg, size)
        # 6. online templates: maybe take this frame's crop, then re-encode
        updated, template_seconds = False, 0.0
        if score is not None:
            t0 = time.perf_counter()
            updated = target.templates.update(
                score, target.frame_id, cfg, lambda: self.template_crop(image, target.box)
            )
            crop_seconds += time.perf_counter() - t0
            if updated:
                template_seconds = self.encode([target])
        return self.result(
            target, anchor, score, observation, attention, updated, crop_seconds, template_seconds
        )

    # -- what a step returns --------------------------------------------------------------------
    def search_attention(
        self, out: dict[str, Any], i: int, target: TargetState
    ) -> tuple[tuple[Any, ...], tuple[np.ndarray, ...]] | None:
        """Row ``i``'s attention maps (the target's template maps, then this call's search
        maps) and its template images, or None when the call returned no attention."""
        maps = out.get("attention")
        if not maps:
            return None
        search_maps = tuple(_search_row(m, i, target.template_attention) for m in maps)
        return (*target.template_attention, *search_maps), template_images(target)

    def observation(
        self,
        out: dict[str, Any],
        i: int,
        search: torch.Tensor,
        prior: torch.Tensor | None,
        anchor: Box,
        rf: float,
        box: Box,
        score: float | None,
    ) -> dict[str, Any]:
        """The fields of row ``i``'s :class:`Observation` known right after the engine call."""
        cfg = self.config
        scores = out.get("pred_scores")
        heat = None
        feats = out.get("features")
        if feats is not None:
            feat = feats[i : i + 1].detach()
            engine = self.engine

            def heat() -> np.ndarray:
                tl, br = engine.corner_maps(feat)
                return torch.cat([tl, br], dim=1)[0].float().cpu().numpy()

        side = int(round(prior.shape[-1] ** 0.5)) if prior is not None else 0
        return dict(
            anchor=anchor,
            crop_window=crop_window(anchor, cfg.search_factor),
            resize_factor=rf,
            search_size=cfg.search_size,
            search_input=search[i : i + 1].clone(),
            pred_boxes=out["pred_boxes"][i].reshape(-1, 4).mean(0).float().cpu().numpy(),
            pred_score=None if scores is None else float(scores[i].float().reshape(-1)[0]),
            score=1.0 if score is None else score,
            network_box=box,
            corner_prior=(
                None if prior is None else prior[i].reshape(2, side, side).float().cpu().numpy()
            ),
            batch_size=search.shape[0],
            heatmap_source=heat,
        )

    def result(
        self,
        target: TargetState,
        anchor: Box,
        score: float | None,
        observation: dict[str, Any] | None,
        attention: tuple[tuple[Any, ...], tuple[np.ndarray, ...]] | None,
        updated: bool,
        crop_seconds: float,
        template_seconds: float,
    ) -> TrackResult:
        """The target's :class:`TrackResult` of this frame (after motion and templates)."""
        obs = att = None
        if observation is not None:
            obs = Observation(
                **observation,
                templates_updated=updated,
                crop_seconds=crop_seconds,
                template_seconds=template_seconds,
            )
        if attention is not None:
            maps, templates = attention
            window = crop_window(anchor, self.config.search_factor)
            att = TrackAttention(maps, templates, window, self.config.search_size, target.box)
        return TrackResult(target.box, 1.0 if score is None else score, target.frame_id, obs, att)


def template_images(target: TargetState) -> tuple[np.ndarray, ...]:
    """The target's template crops as ``(S, S, 3)`` uint8 RGB images (template, online...)."""
    t = target.templates
    return (_image_of(t.template), *(_image_of(o) for o in t.online))


def _is_template_segment(name: str) -> bool:
    return name in ("template", "templates") or name.startswith("online")


def _search_row(amap: Any, i: int, template_maps: Sequence[Any]) -> Any:
    """Row ``i`` of a search-kind record, its template key segments named from the target's own
    template-kind record of the same layer (the layer only knows its latest encoding, which
    may have been another target's with another online-template count)."""
    amap = _row(amap, i)
    own = {m.layer: m for m in template_maps}.get(amap.layer)
    if own is None:
        return amap
    tail = tuple(seg for seg in amap.key_segments if not _is_template_segment(seg[0]))
    segments = (*own.key_segments, *tail)
    if sum(h * w for _, h, w in segments) != amap.probs.shape[-1]:
        return amap
    return dataclasses.replace(amap, key_segments=segments)


def _row(amap: Any, i: int) -> Any:
    """Batch row ``i`` of an attention record (``probs`` kept 4-D: ``(1, heads, Q, K)``)."""
    if amap.probs.shape[0] == 1:
        return amap
    return dataclasses.replace(amap, probs=amap.probs[i : i + 1])
