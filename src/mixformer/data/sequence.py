"""One annotated video sequence of a benchmark: frame paths, ground truth and visibility."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass(frozen=True, eq=False)
class Sequence:
    """An annotated sequence as every benchmark reader yields it.

    Attributes:
        name: sequence name, unique within its dataset (also the result file stem).
        frames: ``T`` image paths in temporal order.
        ground_truth: ``(T, 4)`` float64 ``(x, y, w, h)`` boxes in pixels (top-left corner and
            size). Rows may be NaN where the box is unknown (UAV123 absent frames; the GOT-10k
            test split has only row 0, so its array is ``(T, 4)`` with rows ``1..T-1`` NaN).
        visible: ``(T,)`` bool target visibility when the benchmark provides it, else None.
        dataset: dataset key, e.g. ``"lasot"``, ``"got10k_test"``, ``"generic"``.
        object_class: object category when known, else ``""``.
    """

    name: str
    frames: list[Path]
    ground_truth: np.ndarray
    visible: np.ndarray | None = None
    dataset: str = "generic"
    object_class: str = field(default="")

    def __post_init__(self) -> None:
        gt = np.asarray(self.ground_truth, dtype=np.float64)
        if gt.ndim != 2 or gt.shape[1] != 4:
            raise ValueError(f"{self.name}: ground_truth must be (T, 4), got {gt.shape}")
        if gt.shape[0] != len(self.frames):
            raise ValueError(
                f"{self.name}: {gt.shape[0]} ground-truth rows for {len(self.frames)} frames"
            )
        object.__setattr__(self, "ground_truth", gt)
        object.__setattr__(self, "frames", [Path(f) for f in self.frames])
        if self.visible is not None:
            vis = np.asarray(self.visible, dtype=bool)
            if vis.shape != (len(self.frames),):
                raise ValueError(
                    f"{self.name}: visible must be ({len(self.frames)},), got {vis.shape}"
                )
            object.__setattr__(self, "visible", vis)

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def init_box(self) -> tuple[float, float, float, float]:
        """Ground-truth row 0 as ``(x, y, w, h)`` floats: the box the tracker starts from."""
        x, y, w, h = (float(v) for v in self.ground_truth[0])
        return x, y, w, h
