"""Tracking many objects in one video with batched network calls: the core's many-target facade."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from mixformer.geometry import Box
from mixformer.tracking.base import TrackerBase
from mixformer.tracking.batch import BatchedCore, split_cache, stack_caches
from mixformer.tracking.config import TrackerConfig
from mixformer.tracking.results import TrackResult
from mixformer.tracking.threads import intra_op_threads

log = logging.getLogger(__name__)

__all__ = ["MultiTracker", "split_cache", "stack_caches"]


class MultiTracker(TrackerBase):
    """Tracks K objects in one video with one batched network call per frame.

    Every target behaves exactly like its own :class:`~mixformer.Tracker` (both run the same
    :class:`~mixformer.tracking.core.TrackingCore`: same crops, same online-template updates,
    boxes equal to float tolerance), but the search step of all targets runs as one batch.
    Targets can be added and removed at any frame.

    The network concatenates cached template keys with search keys, so a batch needs equal
    online-template counts ``N``; targets are grouped by ``N`` and each group is one call. Targets
    added on the same frame share ``N`` forever, so the usual case is one call per frame; targets
    added later join the others' group once both reach ``online_size`` templates. The
    onnxruntime and openvino backends' graphs take one target per call, so there every target
    is its own call (with the default ``backend="auto"``, OpenVINO where it is installed on an
    x86-64 CPU in fp32: one call per target was still faster than torch's batch there).

    Frame protocol: call :meth:`update` once per new frame, then :meth:`add` for objects that
    first appear in that same frame (or :meth:`add` alone on the very first frame). A target
    added on frame ``t`` is first tracked by the :meth:`update` of frame ``t + 1``.

    Args:
        model_or_engine: the network, or an :class:`~mixformer.tracking.engines.Engine`.
        config: tracker settings shared by all targets (default:
            ``TrackerConfig.for_model(model)``, as for :class:`~mixformer.Tracker`).
        max_batch: largest batch per network call (bounds memory); None: no limit.
        device, color, dtype, backend, fast, keep_attention, threads: keyword-only, as for
            :class:`~mixformer.Tracker` (:class:`~mixformer.tracking.base.TrackerBase`).

    Example:
        >>> mt = MultiTracker(build_model("mixformer-tiny"))
        >>> a = mt.add(frame0, (10, 20, 40, 30))
        >>> results = mt.update(frame1)          # {target_id: TrackResult}
        >>> b = mt.add(frame1, (200, 50, 30, 60))
        >>> results = mt.update(frame2)          # both targets
        >>> mt.remove(a)
    """

    _core: BatchedCore
    _core_class = BatchedCore

    def __init__(
        self,
        model_or_engine: Any,
        config: TrackerConfig | None = None,
        *,
        max_batch: int | None = None,
        **options: Any,
    ) -> None:
        super().__init__(model_or_engine, config, max_batch=max_batch, **options)
        self._next_id = 0
        self._frame_index = -1

    # -- state -------------------------------------------------------------------------------
    @property
    def max_batch(self) -> int | None:
        """Largest batch per network call (None: no limit)."""
        return self._core.max_batch

    @property
    def num_network_calls(self) -> int:
        """Search-step network calls made so far (one per frame when all targets share ``N``)."""
        return self._core.num_network_calls

    @property
    def target_ids(self) -> tuple[int, ...]:
        """Ids of the targets being tracked, in the order they were added."""
        return tuple(self._core.targets)

    @property
    def frame_index(self) -> int:
        """Index of the latest frame seen (0 for the first frame; -1 before any)."""
        return self._frame_index

    def __len__(self) -> int:
        return len(self._core.targets)

    def __contains__(self, target_id: object) -> bool:
        return target_id in self._core.targets

    def state(self, target_id: int) -> Box:
        """Current box ``(x, y, w, h)`` in pixels of ``target_id``."""
        return self._core.get(target_id).box

    def num_online_templates(self, target_id: int) -> int:
        """Online templates currently held by ``target_id`` (1 to ``online_size``)."""
        return len(self._core.get(target_id).templates.online)

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
        Raises:
            ValueError: a bad image, box or id.
        """
        tid = self._next_id if target_id is None else target_id
        with intra_op_threads(self.threads):
            self._core.add(image, box, tid)
        self._next_id = max(self._next_id, tid + 1)
        self._frame_index = max(self._frame_index, 0)
        log.debug("added target %d at frame %d: %s", tid, self._frame_index, box)
        return tid

    def remove(self, target_id: int) -> None:
        """Stop tracking ``target_id`` (raises ``KeyError`` if it is not tracked)."""
        self._core.remove(target_id)

    def update(self, image: np.ndarray, observe: bool = False) -> dict[int, TrackResult]:
        """Track every target into the next frame.

        Args:
            image: ``(H, W, 3)`` uint8 frame, same size as the frames targets were added on.
            observe: attach an :class:`~mixformer.tracking.results.Observation` to every
                result (see :meth:`mixformer.Tracker.update`).
        Returns:
            ``{target_id: TrackResult}`` for every tracked target (empty when there are none);
            ``frame_index`` in each result counts from that target's own first frame.
        """
        with intra_op_threads(self.threads):
            results = self._core.step(image, observe)
        self._frame_index += 1
        return results
