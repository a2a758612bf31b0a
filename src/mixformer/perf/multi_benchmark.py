"""Timing of :class:`MultiTracker` (one batched call per frame) against K separate Trackers."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mixformer.models.mixformer import MixFormer
from mixformer.tracking.config import TrackerConfig
from mixformer.tracking.core import reference_config, resolve_config
from mixformer.tracking.multi import MultiTracker
from mixformer.tracking.tracker import Tracker

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MultiTiming:
    """One row of :func:`benchmark_multi`.

    Attributes:
        num_targets: K.
        separate_ms: mean milliseconds per frame for K separate :class:`Tracker` updates.
        multi_ms: mean milliseconds per frame for one :meth:`MultiTracker.update`.
        max_box_diff: largest coordinate difference (pixels) between the two, over all frames
            and targets (float tolerance expected).
        frames: frames timed (after warm-up).
    """

    num_targets: int
    separate_ms: float
    multi_ms: float
    max_box_diff: float
    frames: int

    @property
    def speedup(self) -> float:
        """``separate_ms / multi_ms``."""
        return self.separate_ms / self.multi_ms


def _scene(seed: int, num_frames: int, height: int, width: int, k: int):
    """Frames of a synthetic video and K initial boxes spread over the first frame."""
    from mixformer.datagen.synthetic import generate_sequence

    seq = generate_sequence(seed, num_frames=num_frames, height=height, width=width)
    rng = np.random.default_rng(seed)
    side = min(height, width)
    boxes = []
    for _ in range(k):
        w, h = rng.uniform(0.08, 0.2, size=2) * side
        x, y = rng.uniform(0, width - w), rng.uniform(0, height - h)
        boxes.append((float(x), float(y), float(w), float(h)))
    return seq.frames, boxes


def benchmark_multi(
    model: MixFormer,
    num_targets: Sequence[int] = (1, 4, 16),
    num_frames: int = 10,
    warmup: int = 2,
    height: int = 480,
    width: int = 640,
    config: TrackerConfig | None = None,
    seed: int = 0,
    fast: bool = True,
    max_batch: int | None = None,
) -> list[MultiTiming]:
    """Time K separate trackers and one :class:`MultiTracker` on the same frames, side by side.

    Both are timed on every frame, one right after the other (alternating which goes first), so
    load on the machine affects both alike; compare the ratio (:attr:`MultiTiming.speedup`), not
    absolute numbers across machines. Template updates follow ``config`` (default
    :class:`TrackerConfig`) in both.

    Args:
        model: the network (its crop sizes must match ``config``).
        num_targets: the values of K to measure.
        num_frames: frames timed per K (after ``warmup`` untimed frames).
        warmup: untimed frames first (allocator and kernel warm-up).
        height, width: frame size of the synthetic video.
        config: tracker settings; default ``TrackerConfig()`` with the model's crop sizes.
        seed: seed of the synthetic video and boxes.
        fast: both on the fast inference path (default); False: both on the plain one.
        max_batch: the MultiTracker's largest batch per call (None: all targets at once).
    Returns:
        One :class:`MultiTiming` per K.
    """
    if num_frames < 1 or warmup < 0:
        raise ValueError(f"need num_frames >= 1 and warmup >= 0, got {num_frames}, {warmup}")
    config = resolve_config(model, config) if config else reference_config(model)
    rows = []
    for k in num_targets:
        if k < 1:
            raise ValueError(f"numbers of targets must be >= 1, got {k}")
        frames, boxes = _scene(seed, warmup + num_frames + 1, height, width, k)
        singles = [Tracker(model, config, fast=fast, backend="torch") for _ in range(k)]
        multi = MultiTracker(model, config, fast=fast, backend="torch", max_batch=max_batch)
        for tracker, box in zip(singles, boxes):
            tracker.init(frames[0], box)
            multi.add(frames[0], box)
        t_sep = t_multi = 0.0
        diff = 0.0
        for i, frame in enumerate(frames[1:]):
            # alternate which goes first so drifting machine load biases neither
            for first in (i % 2 == 0, i % 2 == 1):
                start = time.perf_counter()
                if first:
                    sep = [tracker.update(frame).box for tracker in singles]
                else:
                    res = multi.update(frame)
                if i >= warmup:
                    elapsed = time.perf_counter() - start
                    t_sep += elapsed if first else 0.0
                    t_multi += 0.0 if first else elapsed
            diff = max(diff, float(np.abs(np.subtract(sep, [res[t].box for t in range(k)])).max()))
        row = MultiTiming(k, 1e3 * t_sep / num_frames, 1e3 * t_multi / num_frames, diff, num_frames)
        log.info(
            "K=%d: separate %.1f ms/frame, multi %.1f ms/frame (x%.2f), max box diff %.2g px",
            k,
            row.separate_ms,
            row.multi_ms,
            row.speedup,
            diff,
        )
        rows.append(row)
    return rows


def format_table(rows: Sequence[MultiTiming]) -> str:
    """A Markdown table of :func:`benchmark_multi` rows."""
    lines = [
        "| K | K separate Trackers (ms/frame) | MultiTracker (ms/frame) | speed-up "
        "| max box diff (px) |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.num_targets} | {r.separate_ms:.1f} | {r.multi_ms:.1f} | "
            f"x{r.speedup:.2f} | {r.max_box_diff:.1g} |"
        )
    return "\n".join(lines)
