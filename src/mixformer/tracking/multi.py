"""Tracking many objects in one video with batched network calls."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from mixformer.geometry import Box, normalize_patch, sample_target
from mixformer.models.mixformer import MixFormer, TemplateCache
from mixformer.tracking.config import TrackerConfig
from mixformer.tracking.engine import InferenceEngine, build_engine
from mixformer.tracking.motion import MotionState, motion_prior
from mixformer.tracking.tracker import (
    OnlineTemplates,
    TrackResult,
    check_box,
    check_image,
    decode_prediction,
    resolve_config,
)

log = logging.getLogger(__name__)


@dataclass
class _Target:
    """Per-target state: what a single :class:`~mixformer.Tracker` would hold."""

    templates: OnlineTemplates
    cache: TemplateCache
    box: Box
    motion: MotionState = field(default_factory=MotionState)
    frame_id: int = 0
    version: int = 0  # bumped on every re-encode, invalidates stacked caches


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
        [
            (
                torch.cat([c.kv[s][b][0] for c in caches], dim=0),
                torch.cat([c.kv[s][b][1] for c in caches], dim=0),
            )
            for b in range(len(caches[0].kv[s]))
        ]
        for s in range(len(caches[0].kv))
    ]
    feat = torch.cat([c.template_feat for c in caches], dim=0)
    return TemplateCache(kv=kv, template_feat=feat, num_online=caches[0].num_online)


def split_cache(cache: TemplateCache) -> list[TemplateCache]:
    """Inverse of :func:`stack_caches`: one batch-size-1 cache per row (views, no copies)."""
    rows = cache.template_feat.shape[0]
    return [
        TemplateCache(
            kv=[[(k[i : i + 1], v[i : i + 1]) for k, v in stage] for stage in cache.kv],
            template_feat=cache.template_feat[i : i + 1],
            num_online=cache.num_online,
        )
        for i in range(rows)
    ]


class MultiTracker:
    """Tracks K objects in one video with one batched network call per frame.

    Every target behaves exactly like its own :class:`~mixformer.Tracker` (same crops, same
    online-template updates, boxes equal to float tolerance), but the search step of all
    targets runs as one batch. Targets can be added and removed at any frame.

    The network concatenates cached template keys with search keys, so a batch needs equal
    online-template counts ``N``; targets are grouped by ``N`` and each group is one call. Targets
    added on the same frame share ``N`` forever, so the usual case is one call per frame; targets
    added later join the others' group once both reach ``online_size`` templates.

    Frame protocol: call :meth:`update` once per new frame, then :meth:`add` for objects that
    first appear in that same frame (or :meth:`add` alone on the very first frame). A target
    added on frame ``t`` is first tracked by the :meth:`update` of frame ``t + 1``.

    Args:
        model: the network (put in eval mode; moved to ``device``).
        config: tracker settings shared by all targets (default:
            ``TrackerConfig.for_model(model)``, as for :class:`~mixformer.Tracker`).
        device: torch device for the network.
        color: channel order of the frames passed in (``"rgb"`` or ``"bgr"``).
        max_batch: largest batch per network call (bounds memory); None: no limit.
        dtype: network precision, ``"fp32"`` (default), ``"bf16"`` or ``"fp16"`` (fast path).
        fast: run the fast inference path (:mod:`mixformer.models.fast`); default: only when
            ``dtype`` is not fp32. Same meaning as for :class:`~mixformer.Tracker`, whose boxes
            with the same options are matched.

    Example:
        >>> mt = MultiTracker(build_model("mixformer-tiny"))
        >>> a = mt.add(frame0, (10, 20, 40, 30))
        >>> results = mt.update(frame1)          # {target_id: TrackResult}
        >>> b = mt.add(frame1, (200, 50, 30, 60))
        >>> results = mt.update(frame2)          # both targets
        >>> mt.remove(a)
    """

    def __init__(
        self,
        model: MixFormer,
        config: TrackerConfig | None = None,
        device: str | torch.device = "cpu",
        color: Literal["rgb", "bgr"] = "rgb",
        max_batch: int | None = None,
        dtype: Literal["fp32", "bf16", "fp16"] = "fp32",
        fast: bool | None = None,
    ) -> None:
        self.config = resolve_config(model, config)
        if max_batch is not None and max_batch < 1:
            raise ValueError(f"max_batch must be >= 1 or None, got {max_batch}")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.engine: InferenceEngine = build_engine(self.model, dtype, "torch", fast)
        self.color = color
        self.max_batch = max_batch
        self._targets: dict[int, _Target] = {}
        self._next_id = 0
        self._size: tuple[int, int] | None = None
        self._frame_index = -1
        self._stacked: dict[tuple[int, ...], tuple[tuple[int, ...], TemplateCache]] = {}
        self.num_network_calls = 0
        """Search-step network calls made so far (one per frame when all targets share ``N``)."""

    # -- state -------------------------------------------------------------------------------
    @property
    def target_ids(self) -> tuple[int, ...]:
        """Ids of the targets being tracked, in the order they were added."""
        return tuple(self._targets)

    @property
    def frame_index(self) -> int:
        """Index of the latest frame seen (0 for the first frame; -1 before any)."""
        return self._frame_index

    def __len__(self) -> int:
        return len(self._targets)

    def __contains__(self, target_id: object) -> bool:
        return target_id in self._targets

    def state(self, target_id: int) -> Box:
        """Current box ``(x, y, w, h)`` in pixels of ``target_id``."""
        return self._get(target_id).box

    def num_online_templates(self, target_id: int) -> int:
        """Online templates currently held by ``target_id`` (1 to ``online_size``)."""
        return len(self._get(target_id).templates.online)

    def _get(self, target_id: int) -> _Target:
        try:
            return self._targets[target_id]
        except KeyError:
            raise KeyError(
                f"no target with id {target_id!r}; tracking {list(self._targets)}"
            ) from None

    def _crop(
        self, image: np.ndarray, box: Box, factor: float, size: int
    ) -> tuple[torch.Tensor, float]:
        patch, rf = sample_target(image, box, factor, size)
        return normalize_patch(patch, self.device), rf

    def _check_frame(self, image: np.ndarray) -> np.ndarray:
        image = check_image(image, self.color)
        if self._size is not None and image.shape[:2] != self._size:
            raise ValueError(
                f"frame size changed mid-sequence: {image.shape[1]}x{image.shape[0]}, "
                f"expected {self._size[1]}x{self._size[0]}"
            )
        return image

    def _encode(self, targets: Sequence[_Target]) -> None:
        """Re-encode the templates of ``targets``, batched per online-template count."""
        by_n: dict[int, list[_Target]] = {}
        for t in targets:
            by_n.setdefault(len(t.templates.online), []).append(t)
        for group in by_n.values():
            for chunk in self._chunks(group):
                template = torch.cat([t.templates.template for t in chunk], dim=0)
                online = torch.stack([t.templates.stacked() for t in chunk], dim=0)
                with torch.inference_mode():
                    cache = self.engine.encode_templates(template, online)
                for t, c in zip(chunk, split_cache(cache), strict=True):
                    t.cache = c
                    t.version += 1

    def _chunks(self, items: list) -> list[list]:
        step = self.max_batch or max(1, len(items))
        return [items[i : i + step] for i in range(0, len(items), step)]

    def _group_cache(self, ids: tuple[int, ...]) -> TemplateCache:
        versions = tuple(self._targets[i].version for i in ids)
        hit = self._stacked.get(ids)
        if hit is not None and hit[0] == versions:
            return hit[1]
        cache = stack_caches([self._targets[i].cache for i in ids])
        self._stacked[ids] = (versions, cache)
        return cache

    # -- API ---------------------------------------------------------------------------------
    def add(self, image: np.ndarray, box: Sequence[float], target_id: int | None = None) -> int:
        """Start tracking a new object in ``box`` of the current frame.

        Args:
            image: the current frame, ``(H, W, 3)`` uint8 (the one last passed to
                :meth:`update`, or the first frame).
            box: ``(x, y, w, h)`` in pixels.
            target_id: id to use (a non-negative int not in use); default: the next free one.
        Returns:
            The target's id (its box on this frame is ``box``, like :meth:`Tracker.init`).
        """
        image = self._check_frame(image)
        h, w = image.shape[:2]
        cfg = self.config
        box = check_box(box, h, w, max(cfg.search_factor, cfg.template_factor))
        if target_id is None:
            target_id = self._next_id
        elif not isinstance(target_id, int) or target_id < 0:
            raise ValueError(f"target_id must be a non-negative int, got {target_id!r}")
        if target_id in self._targets:
            raise ValueError(f"target id {target_id} is already tracked")
        self._next_id = max(self._next_id, target_id + 1)
        template, _ = self._crop(image, box, cfg.template_factor, cfg.template_size)
        with torch.inference_mode():
            cache = self.engine.encode_templates(template, template)
        self._targets[target_id] = _Target(OnlineTemplates(template), cache, box)
        self._size = (h, w)
        self._frame_index = max(self._frame_index, 0)
        log.debug("added target %d at frame %d: %s", target_id, self._frame_index, box)
        return target_id

    def remove(self, target_id: int) -> None:
        """Stop tracking ``target_id`` (raises ``KeyError`` if it is not tracked)."""
        self._get(target_id)
        del self._targets[target_id]
        self._stacked = {k: v for k, v in self._stacked.items() if target_id not in k}
        if not self._targets:
            self._size = None

    def update(self, image: np.ndarray) -> dict[int, TrackResult]:
        """Track every target into the next frame.

        Args:
            image: ``(H, W, 3)`` uint8 frame, same size as the frames targets were added on.
        Returns:
            ``{target_id: TrackResult}`` for every tracked target (empty when there are none);
            ``frame_index`` in each result counts from that target's own first frame.
        """
        image = self._check_frame(image)
        self._frame_index += 1
        if not self._targets:
            return {}
        cfg = self.config
        size = image.shape[:2]
        crops: dict[int, tuple[torch.Tensor, float]] = {}
        groups: dict[int, list[int]] = {}
        anchors: dict[int, Box] = {}
        for tid, t in self._targets.items():
            anchors[tid] = t.motion.anchor(t.box, cfg, size)
            crops[tid] = self._crop(image, anchors[tid], cfg.search_factor, cfg.search_size)
            groups.setdefault(t.cache.num_online, []).append(tid)

        results: dict[int, TrackResult] = {}
        changed: list[_Target] = []
        used: set[tuple[int, ...]] = set()
        for ids in groups.values():
            for chunk in self._chunks(ids):
                key = tuple(chunk)
                used.add(key)
                search = torch.cat([crops[i][0] for i in key], dim=0)
                prior = motion_prior(self.model, [(anchors[i], crops[i][1]) for i in key], cfg)
                with torch.inference_mode():
                    out = self.engine.track(search, self._group_cache(key), corner_prior=prior)
                self.num_network_calls += 1
                for row, tid in enumerate(key):
                    t = self._targets[tid]
                    t.frame_id += 1
                    box, score = decode_prediction(out, row, anchors[tid], crops[tid][1], cfg, size)
                    t.box = t.motion.observe(t.box, box, cfg, size)
                    results[tid] = TrackResult(t.box, 1.0 if score is None else score, t.frame_id)
                    if score is not None and t.templates.update(
                        score, t.frame_id, cfg, self._template_crop(image, t)
                    ):
                        changed.append(t)
        # forget stacked caches of groups that no longer exist
        self._stacked = {k: v for k, v in self._stacked.items() if k in used}
        if changed:
            self._encode(changed)
        return {tid: results[tid] for tid in self._targets}

    def _template_crop(self, image: np.ndarray, target: _Target) -> Callable[[], torch.Tensor]:
        cfg = self.config

        def crop() -> torch.Tensor:
            return self._crop(image, target.box, cfg.template_factor, cfg.template_size)[0]

        return crop
