"""Frame sources for the command line and demos: a video file or a folder of images."""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

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


#: Largest image (width x height) the readers decode; ``MIXFORMER_MAX_IMAGE_PIXELS`` overrides.
#: 50 megapixels (an 8K frame is 33): the decoded RGB array is 150 MB. OpenCV's own limit
#: (2^30 pixels) lets a file of a few bytes that declares 20000x20000 cost gigabytes.
MAX_IMAGE_PIXELS = 50_000_000
_MAX_PIXELS_ENV = "MIXFORMER_MAX_IMAGE_PIXELS"

_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def image_size(path: str | Path) -> tuple[int, int] | None:
    """``(width, height)`` an image file's header declares, read without decoding it.

    PNG, JPEG, BMP, WebP and TIFF; None for another format or a header too short to tell
    (the decoder then judges the file).
    """
    try:
        return _header_size(path)
    except struct.error:  # a header cut short
        return None


def _header_size(path: str | Path) -> tuple[int, int] | None:
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR" and len(head) >= 24:
            w, h = struct.unpack(">II", head[16:24])
            return w, h
        if head[:2] == b"\xff\xd8":
            return _jpeg_size(f)
        if head[:2] == b"BM" and len(head) >= 26:
            if int.from_bytes(head[14:18], "little") == 12:  # OS/2 BITMAPCOREHEADER
                w, h = struct.unpack("<HH", head[18:22])
            else:
                w, h = struct.unpack("<ii", head[18:26])
            return abs(w), abs(h)
        if head[:4] == b"RIFF" and head[8:12] == b"WEBP" and len(head) >= 30:
            return _webp_size(head)
        if head[:4] in (b"II*\x00", b"MM\x00*"):
            return _tiff_size(f, "<" if head[:2] == b"II" else ">")
    return None


def _jpeg_size(f: BinaryIO) -> tuple[int, int] | None:
    """The frame size in the first SOF segment of a JPEG file (walks the header segments)."""
    f.seek(2)
    while True:
        b = f.read(1)
        if b != b"\xff":
            return None  # not a marker where one must be
        while b == b"\xff":  # fill bytes
            b = f.read(1)
        if not b:
            return None
        marker = b[0]
        if 0xD0 <= marker <= 0xD8 or marker == 0x01:  # markers without a length
            continue
        seg = f.read(2)
        if marker == 0xD9 or marker == 0xDA or len(seg) < 2:  # no frame header before the scan
            return None
        length = int.from_bytes(seg, "big")
        if marker in _JPEG_SOF:
            data = f.read(5)
            if len(data) < 5:
                return None
            h, w = struct.unpack(">HH", data[1:5])
            return w, h
        if length < 2:
            return None
        f.seek(length - 2, os.SEEK_CUR)


def _webp_size(head: bytes) -> tuple[int, int] | None:
    chunk = head[12:16]
    if chunk == b"VP8 ":
        w = int.from_bytes(head[26:28], "little") & 0x3FFF
        h = int.from_bytes(head[28:30], "little") & 0x3FFF
        return w, h
    if chunk == b"VP8L":
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        return int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1
    return None


def _tiff_size(f: BinaryIO, endian: str) -> tuple[int, int] | None:
    """Width and height of a TIFF file's first image (tags 256 and 257 of IFD 0)."""
    f.seek(4)
    (offset,) = struct.unpack(endian + "I", f.read(4))
    f.seek(offset)
    raw = f.read(2)
    if len(raw) < 2:
        return None
    (count,) = struct.unpack(endian + "H", raw)
    entries = f.read(12 * min(count, 4096))
    size: dict[int, int] = {}
    for i in range(0, len(entries) - 11, 12):
        tag, kind = struct.unpack(endian + "HH", entries[i : i + 4])
        if tag in (256, 257):
            fmt = endian + ("H" if kind == 3 else "I")
            size[tag] = struct.unpack(fmt, entries[i + 8 : i + 8 + struct.calcsize(fmt)])[0]
    if 256 in size and 257 in size:
        return size[256], size[257]
    return None


def max_image_pixels() -> int:
    """The pixel limit of the image readers (``MIXFORMER_MAX_IMAGE_PIXELS`` or
    :data:`MAX_IMAGE_PIXELS`)."""
    text = os.environ.get(_MAX_PIXELS_ENV, "").strip()
    if not text:
        return MAX_IMAGE_PIXELS
    try:
        return max(1, int(text))
    except ValueError:
        raise ValueError(f"{_MAX_PIXELS_ENV} must be a number of pixels, got {text!r}") from None


def check_image_pixels(path: str | Path) -> None:
    """Refuse an image whose header declares more than :func:`max_image_pixels` pixels,
    before anything is decoded or allocated.

    Raises:
        ValueError: the image is too large; the message names it, its size and the limit.
    """
    size = image_size(path)
    if size is None:
        return
    w, h = size
    limit = max_image_pixels()
    if w * h > limit:
        raise ValueError(
            f"image too large: {path} declares {w}x{h} pixels, over the limit of {limit:,} "
            f"(set {_MAX_PIXELS_ENV} to raise it)"
        )


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as ``(H, W, 3)`` uint8 RGB (OpenCV decoding, as the reference).

    Raises:
        ValueError: missing, unreadable or corrupt file, a truncated JPEG
            (:func:`jpeg_truncated`), or an image over the pixel limit
            (:func:`check_image_pixels`; refused from its header, nothing decoded).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"frame not found: {path}")
    check_image_pixels(path)
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
