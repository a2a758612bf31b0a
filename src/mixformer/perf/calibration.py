"""Calibration data for post-training int8 quantisation: real search steps of real-looking video.

:func:`calibration_feeds` cuts, on composited sequences (objects cut from the photos shipped
with the package, moving over photo backgrounds: :func:`mixformer.perf.precision.study_sequences`
with ``scene="photos"``), the template around the first frame's box and search crops around the
later ground-truth boxes, shifted and scaled as a tracker's previous box would be, and turns each
into the search graph's feeds. The ranges NNCF measures on them are those of tracking, not of
noise.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from mixformer.geometry import normalize_patch, sample_target
from mixformer.perf.precision import study_sequences

log = logging.getLogger(__name__)

__all__ = ["calibration_feeds"]


def calibration_feeds(
    graphs: Any,
    steps: int = 64,
    sequences: int = 4,
    seed: int = 1000,
    height: int = 360,
    width: int = 480,
    template_factor: float = 2.0,
    search_factor: float = 4.5,
) -> list[dict[str, np.ndarray]]:
    """``steps`` search-step feeds of ``graphs`` (an
    :class:`~mixformer.export.onnx.ExportedGraphs`: its ``config`` gives the crop sizes;
    ``template_factor`` / ``search_factor``: crop sides relative to the box, as the tracker's
    settings) over ``sequences`` composited sequences.

    Each sequence's first frame gives the template (and the online template); its later visible
    frames give the search crops, centred on the ground-truth box moved by up to a quarter of its
    size and scaled by up to 10 % (seeded), since a tracker crops around its last box.
    """
    cfg = graphs.config
    rng = np.random.default_rng(seed)
    per_seq = max(1, -(-steps // sequences))
    frames_needed = per_seq + 1
    feeds: list[dict[str, np.ndarray]] = []
    for frames, boxes, visible in study_sequences(
        sequences, frames_needed, seed, "photos", height, width
    ):
        t_patch, _ = sample_target(frames[0], boxes[0], template_factor, cfg.template_size)
        template = normalize_patch(t_patch)
        cache = graphs.encode_templates(template, template)
        for i in range(1, len(frames)):
            if not visible[i] or len(feeds) >= steps:
                continue
            x, y, w, h = boxes[i]
            dx, dy = rng.uniform(-0.25, 0.25, 2) * (w, h)
            s = float(rng.uniform(0.9, 1.1))
            prev = (x + dx + w * (1 - s) / 2, y + dy + h * (1 - s) / 2, w * s, h * s)
            patch, _ = sample_target(frames[i], prev, search_factor, cfg.search_size)
            feeds.append(graphs.search_feeds(normalize_patch(patch), cache, None))
    log.info("int8 calibration: %d search steps from %d sequences", len(feeds), sequences)
    return feeds
