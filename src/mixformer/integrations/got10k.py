"""Adapter for the ``got10k`` toolkit (PyPI ``got10k``): ``ExperimentGOT10k``, ``ExperimentOTB``...

The toolkit drives a ``got10k.trackers.Tracker`` subclass through ``init(image, box)`` /
``update(image) -> box`` with PIL images and ``(x, y, w, h)`` numpy boxes. :func:`got10k_tracker`
builds one around our :class:`~mixformer.Tracker`::

    from got10k.experiments import ExperimentGOT10k
    from mixformer.integrations.got10k import got10k_tracker

    tracker = got10k_tracker(build_model("mixformer-22k", weights=...), benchmark="got10k_test")
    experiment = ExperimentGOT10k("data/GOT-10k", subset="val")
    experiment.run(tracker)
    experiment.report([tracker.name])

``got10k`` is imported only when :func:`got10k_tracker` is called.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch

from mixformer.models.mixformer import MixFormer
from mixformer.tracking.config import TrackerConfig
from mixformer.tracking.tracker import Tracker

log = logging.getLogger(__name__)


def _import_base() -> type:
    try:
        from got10k.trackers import Tracker as Base
    except ImportError as exc:
        raise ImportError(
            "the got10k adapter needs the got10k toolkit: pip install got10k"
        ) from exc
    return Base


@functools.cache
def _adapter_class() -> type:
    """Build the subclass of ``got10k.trackers.Tracker`` once got10k is importable."""
    base = _import_base()

    class MixFormerGOT10k(base):  # type: ignore[misc, valid-type]
        """``got10k.trackers.Tracker`` running :class:`mixformer.Tracker`.

        ``init``/``update`` take PIL images (or ``(H, W, 3)`` uint8 RGB arrays) and
        ``(x, y, w, h)`` boxes in pixels; ``update`` returns an ``(4,)`` float64 xywh array.
        ``track`` decodes the frames with OpenCV (``decoder="opencv"``, as the reference
        implementation) instead of PIL unless ``decoder="pil"``.
        """

        def __init__(self, tracker: Tracker, name: str, decoder: str) -> None:
            super().__init__(name=name, is_deterministic=True)
            self.tracker = tracker
            self.decoder = decoder

        @staticmethod
        def _array(image: Any) -> np.ndarray:
            arr = np.asarray(image)
            if arr.ndim == 3 and arr.shape[2] == 4:
                arr = arr[:, :, :3]
            return np.ascontiguousarray(arr, dtype=np.uint8)

        def init(self, image: Any, box: Sequence[float]) -> None:
            self.tracker.init(self._array(image), [float(v) for v in box])

        def update(self, image: Any) -> np.ndarray:
            return np.asarray(self.tracker.update(self._array(image)).box, dtype=np.float64)

        def track(
            self, img_files: Sequence[str], box: Sequence[float], visualize: bool = False
        ) -> tuple[np.ndarray, np.ndarray]:
            if self.decoder == "pil" or visualize:
                return super().track(img_files, box, visualize=visualize)
            from mixformer.data.frames import read_image

            boxes = np.zeros((len(img_files), 4))
            boxes[0] = box
            times = np.zeros(len(img_files))
            for f, path in enumerate(img_files):
                image = read_image(path)
                start = time.perf_counter()
                if f == 0:
                    self.tracker.init(image, [float(v) for v in box])
                else:
                    boxes[f] = self.tracker.update(image).box
                times[f] = time.perf_counter() - start
            return boxes, times

    return MixFormerGOT10k


def got10k_tracker(
    model: MixFormer,
    config: TrackerConfig | None = None,
    *,
    benchmark: str | None = None,
    got10k_trained: bool = False,
    name: str = "MixFormer",
    device: str | torch.device = "cpu",
    decoder: Literal["opencv", "pil"] = "opencv",
    **tracker_kwargs: Any,
) -> Any:
    """A ``got10k.trackers.Tracker`` that runs our tracker, for the got10k experiments.

    Args:
        model: the network.
        config: tracker settings; default: ``TrackerConfig.preset(benchmark, model.name)`` when
            ``benchmark`` is given (e.g. ``"got10k_test"``, ``"otb"``), else the defaults.
        benchmark: preset name used when ``config`` is None.
        got10k_trained: with ``benchmark``: the network was trained on GOT-10k only (the
            reference's ``mixformer_cvt_online_22k_got.pth.tar``), so its ``baseline_got`` schedules
            are used (see :meth:`TrackerConfig.preset`).
        name: tracker name (the toolkit's result and report folder).
        device: torch device.
        decoder: how ``track`` reads frames: ``"opencv"`` (reference decoding) or ``"pil"``
            (the toolkit's own).
        **tracker_kwargs: further :class:`~mixformer.Tracker` options (the fast inference path
            is the default; ``fast=False`` runs the plain reference arithmetic).
    Returns:
        An instance of a ``got10k.trackers.Tracker`` subclass with ``is_deterministic=True``.
    Raises:
        ImportError: got10k is not installed.
        ValueError: unknown ``decoder``.
    """
    if decoder not in ("opencv", "pil"):
        raise ValueError(f"decoder must be 'opencv' or 'pil', got {decoder!r}")
    cls = _adapter_class()
    if config is None and benchmark is not None:
        config = TrackerConfig.for_model(model, benchmark, got10k_trained)
    tracker = Tracker(model, config, device=device, **tracker_kwargs)
    return cls(tracker, name, decoder)
