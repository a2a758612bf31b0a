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

    Frames go to a hidden temporary file beside ``path`` (``.<stem>.partial.mp4``). On
    :meth:`close` it is renamed to ``path``; ``close(complete=False)`` (an interrupted run)
    finishes the file and renames it to ``<stem>.partial.mp4`` instead, so a partial video is
    never taken for a complete one.
    """

    def __init__(self, path: str | Path, fps: float = 25.0) -> None:
        self.path = Path(path)
        suffix = self.path.suffix or ".mp4"
        self.tmp = self.path.with_name(f".{self.path.stem}.partial{suffix}")
        self.partial_path = self.path.with_name(f"{self.path.stem}.partial{suffix}")
        self.fps = fps
        self.frames = 0
        self._writer: cv2.VideoWriter | None = None

    def write(self, frame_rgb: np.ndarray) -> None:
        """Append one ``(H, W, 3)`` uint8 RGB frame (the first frame fixes the size)."""
        if self._writer is None:
            h, w = frame_rgb.shape[:2]
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fourcc = cv2.VideoWriter_fourcc(*"mp4v")
            self._writer = cv2.VideoWriter(str(self.tmp), fourcc, self.fps, (w, h))
            if not self._writer.isOpened():
                raise ValueError(f"cannot open video writer for {self.path}")
        self._writer.write(cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2BGR))
        self.frames += 1

    def close(self, complete: bool = True) -> Path | None:
        """Finish the file.

        Args:
            complete: True: rename it to ``path``; False: to :attr:`partial_path`.
        Returns:
            The file written, or None when no frame was written.
        """
        if self._writer is None:
            return None
        self._writer.release()
        self._writer = None
        target = self.path if complete else self.partial_path
        os.replace(self.tmp, target)
        return target
