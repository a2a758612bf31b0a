"""What the trackers return per frame: the box and score, and on request what happened.

:class:`TrackResult` is the per-frame output of :class:`~mixformer.Tracker` and
:class:`~mixformer.MultiTracker`. ``update(image, observe=True)`` adds an :class:`Observation`
(the search crop, the raw network outputs, the corner heat maps, timings); a tracker built with
``keep_attention=True`` adds a :class:`TrackAttention` (the mixed-attention probabilities of every
block, see :mod:`mixformer.tracking.attention` for pictures of them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
import torch

from mixformer.geometry import Box

if TYPE_CHECKING:
    from mixformer.models import AttentionMap

__all__ = ["Observation", "TrackAttention", "TrackResult", "Window"]

Window = tuple[float, float, float, float]
"""A square crop window ``(x, y, side, side)`` in image pixels (top-left corner and size); it may
extend past the image, where the crop is zero-padded."""


@dataclass(frozen=True)
class Observation:
    """What happened in one tracking step of one target.

    Attributes:
        anchor: the ``(x, y, w, h)`` pixel box the search crop was centred on (the previous
            box, moved by the velocity estimate when ``velocity`` is on).
        crop_window: the search crop in image pixels, ``(x, y, side, side)``; crop pixel
            ``(u, v)`` of the ``search_size`` patch shows image point
            ``(x + u / resize_factor, y + v / resize_factor)``.
        resize_factor: ``search_size / side``.
        search_size: side of the search patch the network saw (pixels).
        search_input: that patch, ``(1, 3, S, S)`` float32, ImageNet-normalised (a copy).
        pred_boxes: the network's ``pred_boxes`` row, ``(4,)`` float32 normalised
            ``(cx, cy, w, h)`` in the search patch.
        pred_score: the network's ``pred_scores`` logit (None without a score module).
        score: the tracker's confidence in ``[0, 1]`` (sigmoid of ``pred_score``; 1.0 without
            a score module).
        network_box: ``pred_boxes`` mapped back to image pixels and clipped, ``(x, y, w, h)``,
            before the motion settings (``size_update``, ``max_scale_change``) are applied.
        corner_prior: the motion prior added to the corner maps, ``(2, F, F)`` float32 log
            prior (top-left, bottom-right), or None when ``motion_prior`` is off.
        num_online: online templates the search step ran against.
        templates_updated: the online templates changed after this frame (re-encoded).
        batch_size: targets in the network call this target was part of (MultiTracker).
        crop_seconds: search crop of this target, plus its template crop when one was taken.
        network_seconds: the search step (``engine.track``) of the call this target was in.
        template_seconds: the template re-encoding this frame caused (0.0 without update;
            shared by the targets re-encoded in the same call).
    """

    anchor: Box
    crop_window: Window
    resize_factor: float
    search_size: int
    search_input: torch.Tensor = field(repr=False)
    pred_boxes: np.ndarray
    pred_score: float | None
    score: float
    network_box: Box
    corner_prior: np.ndarray | None = field(repr=False)
    num_online: int
    templates_updated: bool
    batch_size: int
    crop_seconds: float
    network_seconds: float
    template_seconds: float = 0.0
    heatmap_source: Callable[[], np.ndarray] | None = field(default=None, repr=False, compare=False)
    """Computes :attr:`heatmaps` on first access (set by the tracking core)."""

    @cached_property
    def heatmaps(self) -> np.ndarray | None:
        """The two corner heat maps, ``(2, F, F)`` float32 (``F``: the model's
        ``config.corner_map_size``, 20 for CvT at 320 px).

        Row 0 is the top-left corner's map, row 1 the bottom-right's: the head's raw logits
        (before :attr:`corner_prior` and the soft-argmax's softmax); cell ``(i, j)`` stands for
        search-patch pixel ``(j, i) * search_size / F``. Computed on first access by the
        engine's own head (``corner_maps``) from the search features it produced. None for
        engines that do not expose their features (onnxruntime).
        """
        return None if self.heatmap_source is None else self.heatmap_source()


@dataclass(frozen=True)
class TrackAttention:
    """The mixed-attention probabilities behind one result (``keep_attention=True``).

    Attributes:
        maps: :class:`~mixformer.models.AttentionMap` records in block order: first the
            ``"template"``-kind ones (template queries over template keys, from the encoding of
            the templates this step searched against), then, except on the ``init`` frame, the
            ``"search"``-kind ones (search queries over ``[template, online0, ..., search]``
            keys). Each ``probs`` is ``(1, heads, Q, K)`` float32 with rows summing to 1;
            ``query_segments`` / ``key_segments`` give ``(name, h, w)`` in token order (tokens
            row-major), so ``probs[0, head, q, k0:k0 + h * w].reshape(h, w)`` is one key image.
        templates: the template crops the key segments show, ``(T, T, 3)`` uint8 RGB, in
            segment order (``template``, ``online0``, ...).
        crop_window: the search crop ``(x, y, side, side)`` in image pixels (None on ``init``).
        search_size: side of the search patch in pixels.
        box: the tracker's ``(x, y, w, h)`` box for this frame.
    """

    maps: tuple[AttentionMap, ...] = field(repr=False)
    templates: tuple[np.ndarray, ...] = field(repr=False)
    crop_window: Window | None
    search_size: int
    box: Box

    @property
    def search_maps(self) -> tuple[AttentionMap, ...]:
        """The ``"search"``-kind records, block order."""
        return tuple(m for m in self.maps if m.kind == "search")

    @property
    def template_maps(self) -> tuple[AttentionMap, ...]:
        """The ``"template"``-kind records, block order."""
        return tuple(m for m in self.maps if m.kind == "template")


@dataclass(frozen=True)
class TrackResult:
    """Output for one frame.

    Attributes:
        box: ``(x, y, w, h)`` floats in image pixels (top-left corner and size).
        score: confidence in ``[0, 1]`` (the score module's sigmoid; 1.0 on the first frame and
            for models without a score module).
        frame_index: 0 for the ``init`` frame, then 1, 2, ...
        observation: what the step did (``update(image, observe=True)``), else None.
        attention: attention probabilities (trackers built with ``keep_attention=True``),
            else None.
    """

    box: Box
    score: float
    frame_index: int
    observation: Observation | None = field(default=None, repr=False, compare=False)
    attention: TrackAttention | None = field(default=None, repr=False, compare=False)
