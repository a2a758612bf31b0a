"""Frame sources for the command line and demos: a video file or a folder of images."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")

# OpenCV's FFmpeg backend prints libav's errors ("moov atom not found") to stderr before we can
# report an unreadable video in one line; -8 is AV_LOG_QUIET. Read by OpenCV on each open; a
# value the user set is kept.
_FFMPEG_LOGLEVEL = ("OPENCV_FFMPEG_LOGLEVEL", "-8")


def _open_video(path: Path) -> cv2.VideoCapture:
    os.environ.setdefault(*_FFMPEG_LOGLEVEL)
    return cv2.VideoCapture(str(path))


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


def jpeg_truncated(path: str | Path) -> bool:
    """True when ``path`` is a JPEG file whose image data ends without the EOI marker.

    libjpeg decodes such a file with only a warning, the missing rows grey. The check reads the
    file's tail first (a complete file ends with ``FF D9``); otherwise it walks the header
    segments to the first scan and looks for EOI after it (an EXIF thumbnail's EOI in the
    header does not count; bytes after EOI do not matter). Files that do not start with the
    JPEG SOI marker are not JPEG files and return False.
    """
    with open(path, "rb") as f:
        if f.read(2) != b"\xff\xd8":
            return False
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - 64))
        if f.read().rstrip(b"\x00\r\n\t ").endswith(b"\xff\xd9"):
            return False
        f.seek(0)
        data = f.read()
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return False  # not a marker where one must be: leave the verdict to the decoder
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
        elif marker == 0xD9:
            return False
        elif 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a length
            i += 2
        elif marker == 0xDA:  # start of scan: entropy-coded data never holds FF D9
            return data.find(b"\xff\xd9", i + 2) < 0
        else:
            i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    return True  # the file ends inside its headers


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as ``(H, W, 3)`` uint8 RGB (OpenCV decoding, as the reference).

    Raises:
        ValueError: missing, unreadable or corrupt file, or a truncated JPEG
            (:func:`jpeg_truncated`).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"frame not found: {path}")
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"cannot decode image (corrupt or not an image): {path}")
    if jpeg_truncated(path):
        raise ValueError(f"cannot decode image (truncated JPEG: no end-of-image marker): {path}")
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
            cap = _open_video(self.path)
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
        cap = _open_video(self.path)
        try:
            while True:
                ok, frame = cap.read()
                if not ok:
                    break
                yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        finally:
            cap.release()
