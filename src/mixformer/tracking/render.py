"""Drawing tracking results on frames and writing annotated videos."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

PALETTE = ((0, 200, 0), (230, 60, 60), (60, 120, 255), (240, 200, 0), (200, 0, 200), (0, 200, 200))


def draw_box(
    frame: np.ndarray,
    box: Sequence[float],
    color: tuple[int, int, int] = PALETTE[0],
    label: str | None = None,
) -> np.ndarray:
    """Draw an xywh box (and optional label) on a copy of an RGB ``(H, W, 3)`` uint8 frame."""
    out = frame.copy()
    x, y, w, h = (int(round(v)) for v in box)
    cv2.rectangle(out, (x, y), (x + w, y + h), color, 2)
    if label:
        cv2.putText(out, label, (x, max(12, y - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, color, 1)
    return out


class VideoWriter:
    """mp4 writer of RGB frames that only shows the final file once it is complete.

    Frames go to a temporary file beside ``path`` that is renamed on :meth:`close`.
    """

    def __init__(self, path: str | Path, fps: float = 25.0) -> None:
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix or '.mp4'}")
        self.fps = fps
        self._writer: cv2.VideoWriter | None = None

    def write(self, frame_rgb: np.ndarray) -> None:
        if self._writer is None:
            h, w = frame_rgb.shape[:2]
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fourcc = cv2.VideoWriter_fourcc(*"mp4v")
            self._writer = cv2.VideoWriter(str(self.tmp), fourcc, self.fps, (w, h))
            if not self._writer.isOpened():
                raise ValueError(f"cannot open video writer for {self.path}")
        self._writer.write(cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            os.replace(self.tmp, self.path)
            self._writer = None
