"""The one tracking core: per-target state, one batched frame loop, one template-update rule.

:class:`TrackingCore` holds any number of targets in one video. Each frame it crops every
target's search region around its anchor, runs the search step of all targets that hold the same
number of online templates as one batched network call, decodes every row, applies the motion
settings and the online-template rule, and re-encodes the templates that changed (batched too).
:class:`~mixformer.Tracker` is its one-target facade and :class:`~mixformer.MultiTracker` its
many-target one, so both run exactly this code on every engine (plain torch, fast torch,
onnxruntime).

Engines come from :func:`mixformer.tracking.engine.shared_engine`: trackers over one model share
one engine (no copy of the weights per tracker).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from mixformer.geometry import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Box,
    clip_box,
    crop_size,
    map_box_back,
    normalize_patch,
    sample_target,
)
from mixformer.models.mixformer import MixFormer, TemplateCache
from mixformer.tracking.checks import check_box, check_image
from mixformer.tracking.config import TrackerConfig
from mixformer.tracking.engine import InferenceEngine, resolve_dtype_setting, shared_engine
from mixformer.tracking.motion import MotionState, motion_prior
from mixformer.tracking.preprocess import SearchCropper
from mixformer.tracking.results import Observation, TrackAttention, TrackResult, Window
from mixformer.tracking.templates import OnlineTemplates

log = logging.getLogger(__name__)

__all__ = [
    "TargetState",
    "TrackingCore",
    "crop_window",
    "decode_prediction",
    "reference_config",
    "resolve_config",
    "split_cache",
    "stack_caches",
]


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


def crop_window(box: Sequence[float], factor: float) -> Window:
    """The square window :func:`~mixformer.geometry.sample_target` cuts around ``box``.

    Args:
        box: ``(x, y, w, h)`` in image pixels.
        factor: crop side relative to ``sqrt(w * h)``.
    Returns:
        ``(x, y, side, side)`` in image pixels (the same rounding as the crop).
    """
    x, y, w, h = (float(v) for v in box)
    side = crop_size(box, factor)
    return (
        float(int(round(x + 0.5 * w - side * 0.5))),
        float(int(round(y + 0.5 * h - side * 0.5))),
        float(side),
        float(side),
    )


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


def stack_caches(caches: Sequence[TemplateCache]) -> TemplateCache:
    """Concatenate per-target caches (each batch size 1) into one batch.

    Args:
        caches: caches that all hold the same number of online templates ``N``.
    Returns:
        A cache of batch size ``len(caches)``, rows in the given order.
    Raises:
        ValueError: empty input or differing ``N``.
    """
    if not caches:
        raise ValueError("stack_caches needs at least one cache")
    counts = {c.num_online for c in caches}
    if len(counts) != 1:
        raise ValueError(f"caches hold different numbers of online templates: {sorted(counts)}")
    if len(caches) == 1:
        return caches[0]
    kv = [
        (
            torch.cat([c.kv[b][0] for c in caches], dim=0),
            torch.cat([c.kv[b][1] for c in caches], dim=0),
        )
        for b in range(len(caches[0].kv))
    ]
    feat = torch.cat([c.template_feat for c in caches], dim=0)
    return TemplateCache(kv=kv, template_feat=feat, num_online=caches[0].num_online)


def split_cache(cache: TemplateCache) -> list[TemplateCache]:
    """Inverse of :func:`stack_caches`: one batch-size-1 cache per row (views, no copies)."""
    rows = cache.template_feat.shape[0]
    return [
        TemplateCache(
            kv=[(k[i : i + 1], v[i : i + 1]) for k, v in cache.kv],
            template_feat=cache.template_feat[i : i + 1],
            num_online=cache.num_online,
        )
        for i in range(rows)
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


@dataclass
class _Row:
    """One target's share of a frame before its result is assembled."""

    tid: int
    anchor: Box
    rf: float
    network_box: Box
    score: float | None
    updated: bool = False
    crop_seconds: float = 0.0
    template_seconds: float = 0.0
    observation: dict[str, Any] | None = None
    attention: tuple[tuple[Any, ...], tuple[np.ndarray, ...]] | None = None


class TrackingCore:
    """Per-target state and the batched frame loop behind every tracker.

    Args:
        model: the plain network (put in eval mode; moved to ``device``).
        config: settings shared by all targets (default: ``TrackerConfig.for_model(model)``).
        device: torch device for the network.
        color: channel order of the frames passed in (``"rgb"`` or ``"bgr"``).
        dtype: ``"auto"`` (bf16 on CPUs with AMX, else fp32: :func:`~mixformer.tracking.engine.
            resolve_dtype_setting`), ``"fp32"``, ``"bf16"`` or ``"fp16"`` (the latter two on the
            fast path); the resolved one is :attr:`dtype`.
        backend: ``"torch"`` or ``"onnxruntime"``.
        fast: the fast torch path (default); False: the plain reference arithmetic.
        engine: a ready engine (anything with the ``encode_templates`` / ``track`` contract,
            e.g. a quantised one) to run instead of the shared one; ``dtype``, ``backend`` and
            ``fast`` are then not used.
        max_batch: largest batch per network call (None: no limit).
        keep_attention: record the mixed-attention probabilities of every block for every
            result (torch engines only; the attention runs its explicit softmax meanwhile).
    Raises:
        ValueError: crop sizes that do not match the model, a bad ``max_batch``, or
            ``keep_attention`` with an engine that is not a torch module.
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
        max_batch: int | None = None,
        keep_attention: bool = False,
    ) -> None:
        self.config = resolve_config(model, config)
        if max_batch is not None and max_batch < 1:
            raise ValueError(f"max_batch must be >= 1 or None, got {max_batch}")
        if color not in ("rgb", "bgr"):
            raise ValueError(f"color must be 'rgb' or 'bgr', got {color!r}")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.dtype = resolve_dtype_setting(dtype, self.device, backend, fast)
        """The precision the network runs in (``dtype`` resolved; with ``engine``: as given)."""
        self.engine: InferenceEngine = (
            engine if engine is not None else shared_engine(self.model, self.dtype, backend, fast)
        )
        if keep_attention and not isinstance(self.engine, nn.Module):
            raise ValueError(
                "keep_attention needs a torch engine (backend='torch'); "
                f"got {type(self.engine).__name__}"
            )
        self.color = color
        self.max_batch = max_batch
        self.keep_attention = keep_attention
        # Fast engines read the search crops from a reused buffer (bit-identical values); the
        # plain path keeps the reference preprocessing untouched.
        self._cropper = (
            SearchCropper(self.config.search_size, self.device)
            if self.engine is not self.model
            else None
        )
        self.targets: dict[int, TargetState] = {}
        """Per-target state by id, in the order the targets were added (read-only use)."""
        self.size: tuple[int, int] | None = None
        """``(height, width)`` of the frames of the current video (None with no targets)."""
        self.num_network_calls = 0
        """Search-step network calls made so far."""
        self._batched: bool | None = None  # whether the engine's caches stack into batches
        self._stacked: dict[tuple[int, ...], tuple[tuple[int, ...], Any]] = {}

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

    def _template_crop(self, image: np.ndarray, box: Box) -> torch.Tensor:
        cfg = self.config
        patch, _ = sample_target(image, box, cfg.template_factor, cfg.template_size)
        return normalize_patch(patch, self.device)

    def _search_crops(
        self, image: np.ndarray, anchors: Sequence[Box]
    ) -> tuple[torch.Tensor, list[float]]:
        cfg = self.config
        if self._cropper is not None:
            return self._cropper.crop_batch(image, anchors, cfg.search_factor)
        crops = [sample_target(image, a, cfg.search_factor, cfg.search_size) for a in anchors]
        xs = [normalize_patch(patch, self.device) for patch, _ in crops]
        return (xs[0] if len(xs) == 1 else torch.cat(xs, dim=0)), [rf for _, rf in crops]

    # -- engine calls ---------------------------------------------------------------------------
    def _call(self, fn: Callable[[], Any], kind: str | None) -> tuple[Any, list[Any]]:
        """Run an engine call; with ``kind``, also return the attention records of that kind."""
        if kind is None:
            with torch.inference_mode():
                return fn(), []
        from mixformer.models import collect_attention, set_keep_attention

        # The engine may be shared with other trackers: record only during our own calls.
        set_keep_attention(self.engine, True)
        try:
            with torch.inference_mode():
                out = fn()
            maps = [m for m in collect_attention(self.engine) if m.kind == kind]
        finally:
            set_keep_attention(self.engine, False)
        return out, maps

    def _chunks(self, items: list[Any]) -> list[list[Any]]:
        step = 1 if self._batched is False else (self.max_batch or max(1, len(items)))
        return [items[i : i + step] for i in range(0, len(items), step)]

    def _encode(self, targets: Sequence[TargetState]) -> float:
        """(Re-)encode the templates of ``targets``, batched per online-template count.

        Returns:
            Seconds spent in the engine.
        """
        kind = "template" if self.keep_attention else None
        by_n: dict[int, list[TargetState]] = {}
        for t in targets:
            by_n.setdefault(len(t.templates.online), []).append(t)
        seconds = 0.0
        for group in by_n.values():
            for chunk in self._chunks(group):
                template = torch.cat([t.templates.template for t in chunk], dim=0)
                online = torch.stack([t.templates.stacked() for t in chunk], dim=0)
                t0 = time.perf_counter()
                cache, maps = self._call(
                    lambda template=template, online=online: self.engine.encode_templates(
                        template, online
                    ),
                    kind,
                )
                seconds += time.perf_counter() - t0
                if self._batched is None:
                    self._batched = isinstance(cache, TemplateCache)
                rows = split_cache(cache) if len(chunk) > 1 else [cache]
                for i, (t, c) in enumerate(zip(chunk, rows, strict=True)):
                    t.cache = c
                    t.version += 1
                    if maps:
                        t.template_attention = tuple(_row(m, i) for m in maps)
        return seconds

    def _group_cache(self, ids: tuple[int, ...]) -> Any:
        if len(ids) == 1:
            return self.targets[ids[0]].cache
        versions = tuple(self.targets[i].version for i in ids)
        hit = self._stacked.get(ids)
        if hit is not None and hit[0] == versions:
            return hit[1]
        cache = stack_caches([self.targets[i].cache for i in ids])
        self._stacked[ids] = (versions, cache)
        return cache

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
        target = TargetState(OnlineTemplates(self._template_crop(image, box)), box)
        self._encode([target])
        self.targets[target_id] = target
        self.size = (h, w)
        attention = None
        if self.keep_attention:
            attention = TrackAttention(
                target.template_attention, self._template_images(target), None, cfg.search_size, box
            )
        return TrackResult(box, 1.0, 0, attention=attention)

    def remove(self, target_id: int) -> None:
        """Stop tracking ``target_id``.

        Raises:
            KeyError: no such target (the message lists the tracked ids).
        """
        self.get(target_id)
        del self.targets[target_id]
        self._stacked = {k: v for k, v in self._stacked.items() if target_id not in k}
        if not self.targets:
            self.size = None

    def clear(self) -> None:
        """Remove every target (a new video of any size may start)."""
        self.targets.clear()
        self._stacked.clear()
        self.size = None

    def get(self, target_id: int) -> TargetState:
        """The state of ``target_id`` (raises ``KeyError`` listing the tracked ids)."""
        try:
            return self.targets[target_id]
        except KeyError:
            raise KeyError(
                f"no target with id {target_id!r}; tracking {list(self.targets)}"
            ) from None

    @staticmethod
    def _template_images(target: TargetState) -> tuple[np.ndarray, ...]:
        t = target.templates
        return (_image_of(t.template), *(_image_of(o) for o in t.online))

    # -- the frame loop -------------------------------------------------------------------------
    def step(self, image: np.ndarray, observe: bool = False) -> dict[int, TrackResult]:
        """Track every target into the next frame.

        Args:
            image: ``(H, W, 3)`` uint8 frame (see :func:`check_image`), the video's size.
            observe: attach an :class:`~mixformer.tracking.results.Observation` to every
                result.
        Returns:
            ``{target_id: TrackResult}`` in the order the targets were added.
        """
        image = self.check_frame(image)
        if not self.targets:
            return {}
        cfg = self.config
        groups: dict[int, list[int]] = {}
        for tid, t in self.targets.items():
            groups.setdefault(t.cache.num_online, []).append(tid)
        rows: dict[int, _Row] = {}
        used: set[tuple[int, ...]] = set()
        for ids in groups.values():
            for chunk in self._chunks(ids):
                key = tuple(chunk)
                used.add(key)
                self._step_chunk(image, key, observe, rows)
        # forget stacked caches of groups that no longer exist
        self._stacked = {k: v for k, v in self._stacked.items() if k in used}

        changed: list[TargetState] = []
        for tid, row in rows.items():
            t = self.targets[tid]
            if row.score is None:
                continue
            t0 = time.perf_counter()
            row.updated = t.templates.update(
                row.score, t.frame_id, cfg, lambda t=t: self._template_crop(image, t.box)
            )
            row.crop_seconds += time.perf_counter() - t0
            if row.updated:
                changed.append(t)
        encode_seconds = self._encode(changed) if changed else 0.0
        results = {}
        for tid in self.targets:
            row = rows[tid]
            t = self.targets[tid]
            score = 1.0 if row.score is None else row.score
            obs = None
            if row.observation is not None:
                obs = Observation(
                    **row.observation,
                    templates_updated=row.updated,
                    crop_seconds=row.crop_seconds,
                    template_seconds=encode_seconds if row.updated else 0.0,
                )
            att = None
            if row.attention is not None:
                maps, templates = row.attention
                window = crop_window(row.anchor, cfg.search_factor)
                att = TrackAttention(maps, templates, window, cfg.search_size, t.box)
            results[tid] = TrackResult(t.box, score, t.frame_id, obs, att)
        return results

    def _step_chunk(
        self, image: np.ndarray, key: tuple[int, ...], observe: bool, rows: dict[int, _Row]
    ) -> None:
        """Search step of the targets ``key`` (same online-template count) as one call."""
        cfg = self.config
        size = image.shape[:2]
        targets = [self.targets[i] for i in key]
        anchors = [t.motion.anchor(t.box, cfg, size) for t in targets]
        t0 = time.perf_counter()
        search, rfs = self._search_crops(image, anchors)
        crop_seconds = (time.perf_counter() - t0) / len(key)
        prior = motion_prior(self.model, list(zip(anchors, rfs)), cfg)
        cache = self._group_cache(key)
        features: list[torch.Tensor] = []
        hook = self._feature_hook(features) if observe else None
        kind = "search" if self.keep_attention else None
        t0 = time.perf_counter()
        try:
            out, maps = self._call(
                lambda: self.engine.track(search, cache, corner_prior=prior), kind
            )
        finally:
            if hook is not None:
                hook.remove()
        network_seconds = time.perf_counter() - t0
        self.num_network_calls += 1
        for i, (tid, t) in enumerate(zip(key, targets)):
            t.frame_id += 1
            box, score = decode_prediction(out, i, anchors[i], rfs[i], cfg, size)
            row = _Row(tid, anchors[i], rfs[i], box, score, crop_seconds=crop_seconds)
            if observe:
                row.observation = self._observation(
                    out, i, search, prior, features, anchors[i], rfs[i], box, score, t, len(key)
                )
                row.observation["network_seconds"] = network_seconds
            if maps:
                # the templates this search ran against, before any update of this frame
                search_maps = tuple(_search_row(m, i, t.template_attention) for m in maps)
                row.attention = (
                    (*t.template_attention, *search_maps),
                    self._template_images(t),
                )
            t.box = t.motion.observe(t.box, box, cfg, size)
            rows[tid] = row

    def _feature_hook(self, sink: list[torch.Tensor]) -> Any:
        """Capture the search features the engine's corner head receives (None: no head)."""
        head = getattr(self.engine, "box_head", None)
        if not isinstance(head, nn.Module):
            return None

        def grab(module: nn.Module, args: tuple[Any, ...]) -> None:
            sink.append(args[0])

        return head.register_forward_pre_hook(grab)

    def _observation(
        self,
        out: dict[str, torch.Tensor],
        i: int,
        search: torch.Tensor,
        prior: torch.Tensor | None,
        features: list[torch.Tensor],
        anchor: Box,
        rf: float,
        box: Box,
        score: float | None,
        target: TargetState,
        batch: int,
    ) -> dict[str, Any]:
        cfg = self.config
        scores = out.get("pred_scores")
        heat = None
        if features:
            feat = features[-1][i : i + 1].detach()
            # the engine's own head when it exposes its maps (plain and fused MixFormer),
            # else the plain head on the engine's features
            maps_of = getattr(self.engine, "corner_maps", None) or self.model.box_head.score_maps

            def heat() -> np.ndarray:
                with torch.inference_mode():
                    tl, br = maps_of(feat)
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
            num_online=target.cache.num_online,
            batch_size=batch,
            heatmap_source=heat,
        )


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


class CoreView:
    """Read-only properties shared by the facades over a :class:`TrackingCore` (``_core``):
    :class:`~mixformer.Tracker` and :class:`~mixformer.MultiTracker`."""

    _core: TrackingCore

    @property
    def config(self) -> TrackerConfig:
        """The tracker settings (shared by all targets)."""
        return self._core.config

    @property
    def model(self) -> MixFormer:
        """The plain network."""
        return self._core.model

    @property
    def engine(self) -> InferenceEngine:
        """What runs the network: the model itself (plain path), its shared fast engine, an
        ONNX Runtime model, or the ``engine`` given."""
        return self._core.engine

    @property
    def device(self) -> torch.device:
        """The network's torch device."""
        return self._core.device

    @property
    def color(self) -> str:
        """Channel order of the frames passed in."""
        return self._core.color

    @property
    def keep_attention(self) -> bool:
        """Whether results carry attention probabilities."""
        return self._core.keep_attention
