"""Frame sources for the command line and demos: a video file or a folder of images."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def _natural_key(p: Path) -> tuple:
    stem = p.stem
    return (0, int(stem), "") if stem.isdigit() else (1, 0, stem)


def list_frame_files(folder: str | Path) -> list[Path]:
    """Image files of ``folder`` (or its ``img/`` subfolder) sorted by number, then name.

    Raises:
        ValueError: no image files found.
    """
    folder = Path(folder)
    if (folder / "img").is_dir():
        folder = folder / "img"
    files = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
    if not files:
        raise ValueError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return sorted(files, key=_natural_key)


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as ``(H, W, 3)`` uint8 RGB (OpenCV decoding, as the reference).

    Raises:
        ValueError: missing, unreadable or corrupt file.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"frame not found: {path}")
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"cannot decode image (corrupt or not an image): {path}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


class FrameSource:
    """Iterate over the RGB frames of a video file or an image folder.

    Attributes:
        path: the source.
        fps: frames per second of a video (25.0 for folders or when unknown).
        num_frames: frame count (a video's may be an estimate, None if unknown).
    """

    def __init__(self, source: str | Path) -> None:
        self.path = Path(source)
        self.fps = 25.0
        self._files: list[Path] | None = None
        if self.path.is_dir():
            self._files = list_frame_files(self.path)
            self.num_frames: int | None = len(self._files)
        elif self.path.is_file():
            cap = cv2.VideoCapture(str(self.path))
            ok = cap.isOpened()
            if ok:
                fps = cap.get(cv2.CAP_PROP_FPS)
                self.fps = fps if fps and fps > 0 else 25.0
                n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
                self.num_frames = n if n > 0 else None
                ok, _ = cap.read()
            cap.release()
            if not ok:
                raise ValueError(f"cannot read video (unsupported or corrupt): {self.path}")
        else:
            raise ValueError(f"source not found: {self.path}")

    def __iter__(self) -> Iterator[np.ndarray]:
        if self._files is not None:
            for f in self._files:
                yield read_image(f)
            return
        cap = cv2.VideoCapture(str(self.path))
        try:
            while True:
                ok, frame = cap.read()
                if not ok:
                    break
                yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        finally:
            cap.release()
