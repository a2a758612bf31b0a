"""Batching many targets: the layer :class:`~mixformer.MultiTracker` adds over the one-target step.

:class:`BatchedCore` runs the step of :meth:`TrackingCore.step_target
<mixformer.tracking.core.TrackingCore.step_target>` for all targets at once: their search
crops go through one engine call per online-template count (the network concatenates cached
template keys with search keys, so a batch needs equal counts ``N``), their template caches are
stacked (:func:`stack_caches`, kept while no row changes) and their re-encodes are batched too
(:func:`split_cache` hands every target its row). Each row is decoded, moved and updated by
exactly the one-target rules, so every target tracks as its own :class:`~mixformer.Tracker`
would (float tolerance). With one target it is :class:`TrackingCore` itself.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mixformer.geometry import Box
from mixformer.models.mixformer import TemplateCache
from mixformer.tracking.core import TargetState, TrackingCore, _row, decode_prediction
from mixformer.tracking.motion import motion_prior
from mixformer.tracking.results import TrackResult

__all__ = ["BatchedCore", "split_cache", "stack_caches"]


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


@dataclass
class _Row:
    """One target's share of a batched frame before its result is assembled."""

    anchor: Box
    score: float | None
    observation: dict[str, Any] | None
    attention: tuple[tuple[Any, ...], tuple[np.ndarray, ...]] | None
    crop_seconds: float
    updated: bool = False


class BatchedCore(TrackingCore):
    """:class:`~mixformer.tracking.core.TrackingCore` with batched engine calls.

    Args:
        engine, config, color, keep_attention: as :class:`TrackingCore`.
        max_batch: largest batch per network call (None: no limit but the engine's).
    Raises:
        ValueError: as :class:`TrackingCore`, or a bad ``max_batch``.
    """

    def __init__(self, *args: Any, max_batch: int | None = None, **kwargs: Any) -> None:
        if max_batch is not None and max_batch < 1:
            raise ValueError(f"max_batch must be >= 1 or None, got {max_batch}")
        super().__init__(*args, **kwargs)
        self.max_batch = max_batch
        self._stacked: dict[tuple[int, ...], tuple[tuple[int, ...], Any]] = {}

    def _chunks(self, items: list[Any]) -> list[list[Any]]:
        limits = [n for n in (self.max_batch, self.engine.max_batch) if n]
        step = min(limits) if limits else max(1, len(items))
        return [items[i : i + step] for i in range(0, len(items), step)]

    def encode(self, targets: Sequence[TargetState]) -> float:
        """(Re-)encode the templates of ``targets``, batched per online-template count."""
        if len(targets) == 1:
            return super().encode(targets)
        by_n: dict[int, list[TargetState]] = {}
        for t in targets:
            by_n.setdefault(len(t.templates.online), []).append(t)
        seconds = 0.0
        for group in by_n.values():
            for chunk in self._chunks(group):
                template = torch.cat([t.templates.template for t in chunk], dim=0)
                online = torch.stack([t.templates.stacked() for t in chunk], dim=0)
                t0 = time.perf_counter()
                maps: list[Any] = []
                if self.keep_attention:
                    cache, maps = self.engine.encode_templates(template, online, attention=True)
                else:
                    cache = self.engine.encode_templates(template, online)
                seconds += time.perf_counter() - t0
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

    def remove(self, target_id: int) -> None:
        super().remove(target_id)
        self._stacked = {k: v for k, v in self._stacked.items() if target_id not in k}

    def clear(self) -> None:
        super().clear()
        self._stacked.clear()

    def step(self, image: np.ndarray, observe: bool = False) -> dict[int, TrackResult]:
        """Track every target into the next frame (one engine call per group of equal ``N``).

        Args:
            image: ``(H, W, 3)`` uint8 frame (see :func:`check_image`), the video's size.
            observe: attach an :class:`~mixformer.tracking.results.Observation` to every
                result.
        Returns:
            ``{target_id: TrackResult}`` in the order the targets were added.
        """
        if len(self.targets) <= 1:
            self._stacked.clear()
            return super().step(image, observe)
        image = self.check_frame(image)
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
                rows.update(self._step_chunk(image, key, observe))
        # forget stacked caches of groups that no longer exist
        self._stacked = {k: v for k, v in self._stacked.items() if k in used}

        changed: list[TargetState] = []
        for tid, row in rows.items():
            t = self.targets[tid]
            if row.score is None:
                continue
            t0 = time.perf_counter()
            row.updated = t.templates.update(
                row.score, t.frame_id, cfg, lambda t=t: self.template_crop(image, t.box)
            )
            row.crop_seconds += time.perf_counter() - t0
            if row.updated:
                changed.append(t)
        encode_seconds = self.encode(changed) if changed else 0.0
        return {
            tid: self.result(
                self.targets[tid],
                row.anchor,
                row.score,
                row.observation,
                row.attention,
                row.updated,
                row.crop_seconds,
                encode_seconds if row.updated else 0.0,
            )
            for tid, row in ((tid, rows[tid]) for tid in self.targets)
        }

    def _step_chunk(
        self, image: np.ndarray, key: tuple[int, ...], observe: bool
    ) -> dict[int, _Row]:
        """Steps 1-5 of the targets ``key`` (same online-template count) as one engine call."""
        cfg = self.config
        size = image.shape[:2]
        targets = [self.targets[i] for i in key]
        anchors = [t.motion.anchor(t.box, cfg, size) for t in targets]
        t0 = time.perf_counter()
        search, rfs = self.search_crops(image, anchors)
        crop_seconds = (time.perf_counter() - t0) / len(key)
        prior = motion_prior(self.engine.corner_grid, list(zip(anchors, rfs)), cfg)
        t0 = time.perf_counter()
        out = self.engine.track(
            search,
            self._group_cache(key),
            prior,
            attention=self.keep_attention,
            features=observe,
        )
        network_seconds = time.perf_counter() - t0
        self.num_network_calls += 1
        rows = {}
        for i, (tid, t) in enumerate(zip(key, targets)):
            t.frame_id += 1
            box, score = decode_prediction(out, i, anchors[i], rfs[i], cfg, size)
            obs = None
            if observe:
                obs = self.observation(out, i, search, prior, anchors[i], rfs[i], box, score)
                obs.update(network_seconds=network_seconds, num_online=t.cache.num_online)
            att = self.search_attention(out, i, t)
            t.box = t.motion.observe(t.box, box, cfg, size)
            rows[tid] = _Row(anchors[i], score, obs, att, crop_seconds)
        return rows
