"""The video loop: frames in, per-frame results out (``mixformer.track_video``).

One loop for every caller that tracks boxes given on the first frame through a video: the
``mixformer track`` command, the evaluation runner (``track_sequence``) and the app's run thread.
One box runs a :class:`~mixformer.Tracker`, several a :class:`~mixformer.MultiTracker`; the
loop is an iterator, so a caller stops it by no longer iterating (``break``) and does its own
per-frame work (drawing, writing, streaming) between frames.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mixformer.tracking.config import TrackerConfig
from mixformer.tracking.multi import MultiTracker
from mixformer.tracking.results import TrackResult
from mixformer.tracking.tracker import Tracker

__all__ = ["VideoFrame", "track_video"]


@dataclass(frozen=True)
class VideoFrame:
    """One frame of :func:`track_video`.

    Attributes:
        index: the frame's index (0: the frame the boxes are given on).
        image: the frame as it was passed in.
        results: ``{target_id: TrackResult}`` in target order (ids ``0..K-1`` in the order of
            the boxes, or the keys of a mapping); frame 0 holds the given boxes, score 1.0.
        seconds: time spent in the tracker on this frame (``init`` / ``add`` or ``update``).
    """

    index: int
    image: np.ndarray
    results: dict[int, TrackResult]
    seconds: float

    @property
    def result(self) -> TrackResult:
        """The first target's result (the only one with one box)."""
        return next(iter(self.results.values()))


def _targets(boxes_or_targets: Any) -> dict[int, Sequence[float]]:
    if isinstance(boxes_or_targets, Mapping):
        return dict(boxes_or_targets)
    items = list(boxes_or_targets)
    if len(items) == 4 and all(np.isscalar(v) for v in items):
        return {0: items}  # one (x, y, w, h) box
    return dict(enumerate(items))


def track_video(
    frames: Iterable[np.ndarray],
    boxes_or_targets: Sequence[float] | Sequence[Sequence[float]] | Mapping[int, Sequence[float]],
    model_or_engine: Any = None,
    *,
    config: TrackerConfig | None = None,
    tracker: Tracker | MultiTracker | None = None,
    observe: bool = False,
    **options: Any,
) -> Iterator[VideoFrame]:
    """Track objects given on the first frame through ``frames``, one result per frame.

    Args:
        frames: the video's frames (``(H, W, 3)`` uint8; any iterable, read lazily).
        boxes_or_targets: one ``(x, y, w, h)`` box, a sequence of boxes (target ids ``0..K-1``)
            or ``{target_id: box}``, all on the first frame.
        model_or_engine: the network or an :class:`~mixformer.tracking.engines.Engine`; a
            :class:`~mixformer.Tracker` for one box, a :class:`~mixformer.MultiTracker` for
            several is built over it with ``config`` and ``options`` (``device``, ``dtype``,
            ``keep_attention``, ... as for :class:`~mixformer.Tracker`).
        config: tracker settings (default: the model's own).
        tracker: run this (fresh) tracker instead of building one: a :class:`MultiTracker`, or
            for one box a :class:`Tracker` (or anything with its ``init`` / ``update``).
        observe: attach an :class:`~mixformer.tracking.results.Observation` to every result
            after the first frame.
    Yields:
        A :class:`VideoFrame` per frame, as soon as it is tracked (stop iterating to stop).
    Raises:
        ValueError: neither a model nor a tracker, several boxes for a :class:`Tracker`, or
            what the trackers raise (bad boxes, frames of another size).
    """
    targets = _targets(boxes_or_targets)
    if not targets:
        raise ValueError("track_video needs at least one box")
    if tracker is None:
        if model_or_engine is None:
            raise ValueError("track_video needs a model, an engine or a tracker")
        cls = Tracker if len(targets) == 1 else MultiTracker
        tracker = cls(model_or_engine, config, **options)
    elif model_or_engine is not None or config is not None or options:
        raise ValueError("give either a tracker or a model with its settings, not both")
    if not isinstance(tracker, MultiTracker) and len(targets) != 1:
        raise ValueError(f"a Tracker tracks one box, got {len(targets)}")
    return _loop(frames, targets, tracker, observe)


def _loop(
    frames: Iterable[np.ndarray],
    targets: dict[int, Sequence[float]],
    tracker: Tracker | MultiTracker,
    observe: bool,
) -> Iterator[VideoFrame]:
    single = not isinstance(tracker, MultiTracker)  # a Tracker, or anything with init/update
    (tid,) = targets if single else (0,)
    for i, frame in enumerate(frames):
        t0 = time.perf_counter()
        if single:
            res = tracker.init(frame, targets[tid]) if i == 0 else tracker.update(frame, observe)
            results = {tid: res}
        elif i == 0:
            for t, box in targets.items():
                tracker.add(frame, box, t)
            results = {t: TrackResult(tracker.state(t), 1.0, 0) for t in targets}
        else:
            results = tracker.update(frame, observe)
        seconds = time.perf_counter() - t0
        yield VideoFrame(i, frame, results, seconds)
