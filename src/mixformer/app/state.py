"""What the web app's pieces share: the error shown in the page, the open video, the limits,
and :class:`AppState` (one lock over the status, the message, the video and the run).

:class:`~mixformer.app.videos.VideoStore` (uploads, the demo clip) and
:class:`~mixformer.app.runs.RunController` (the tracking thread) both change an
:class:`AppState`; :class:`~mixformer.app.session.Session` puts them together.
"""

from __future__ import annotations

import itertools
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

if TYPE_CHECKING:
    from mixformer.app.runs import Run

Box = tuple[float, float, float, float]

#: Most boxes one run may track (one MultiTracker batch each frame).
MAX_TARGETS = 16
#: Smallest box side the page accepts, in image pixels.
MIN_BOX_SIDE = 2.0
#: A box may stick out of the frame by this much (pixels) before it counts as outside.
EDGE_TOLERANCE = 0.5
#: Streamed frames kept in memory per run (the page asks for the newest; older ones are dropped).
KEEP_FRAMES = 64
#: Longer side of the streamed JPEG frames; the page scales them back to the video's size.
STREAM_MAX_SIDE = 1280

BUSY = ("uploading", "loading", "running", "paused")


class AppError(Exception):
    """Bad input or a refused action: shown in the page as one line, never as a traceback.

    Attributes:
        message: the line shown to the user.
        status: the HTTP status the server answers with (400, 409, 413, 415, ...).
    """

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class Video:
    """The video the page works on.

    Attributes:
        id: a number that changes with every video opened (the page reloads the first frame).
        name: the name shown in the page (the uploaded file's name, or ``demo clip``).
        path: a video file or a folder of frames (what :class:`FrameSource` reads).
        folder: the session sub-folder holding it (removed when another video replaces it).
        width / height: frame size in pixels.
        frames: frame count (a video file's may be an estimate; None when unknown).
        fps: frames per second (the annotated video's rate).
        first_jpeg: the first frame as JPEG, for drawing the boxes on.
    """

    id: int
    name: str
    path: Path
    folder: Path
    width: int
    height: int
    frames: int | None
    fps: float
    first_jpeg: bytes


@dataclass
class AppState:
    """The state the video store and the run controller share; change it with ``lock`` held.

    Attributes:
        status: ``empty``, ``uploading``, ``loading``, ``ready``, ``running``, ``paused``,
            ``done``, ``stopped`` or ``error``.
        message / message_kind: the line the page shows, as ``info`` or ``error``.
        previous: the status before an upload or demo began (restored if it fails).
        video / run: the open video and the current (or last) run.
        upload / loading: the page's progress of an upload, of checking or making a video.
    """

    lock: threading.Lock = field(default_factory=threading.Lock)
    ids: Any = field(default_factory=lambda: itertools.count(1))
    status: str = "empty"
    message: str = ""
    message_kind: str = "info"
    previous: str = "empty"
    video: Video | None = None
    run: Run | None = None
    upload: dict[str, Any] | None = None
    loading: dict[str, Any] | None = None

    def next_id(self) -> int:
        """A fresh number for a video, a run or a session sub-folder."""
        return next(self.ids)

    def refuse_if_busy(self, action: str) -> None:
        """Raise a 409 :class:`AppError` when an upload, demo or run is in progress (lock held)."""
        if self.status in ("running", "paused"):
            raise AppError(
                f"cannot {action}: a tracking run is in progress; stop it or wait until it ends",
                409,
            )
        if self.status in ("uploading", "loading"):
            raise AppError(f"cannot {action}: a video is still being loaded", 409)


def encode_jpeg(frame_rgb: np.ndarray, quality: int = 85, max_side: int = STREAM_MAX_SIDE) -> bytes:
    """JPEG bytes of an ``(H, W, 3)`` uint8 RGB frame, shrunk to ``max_side`` if larger.

    Raises:
        ValueError: OpenCV could not encode the frame.
    """
    h, w = frame_rgb.shape[:2]
    scale = max_side / max(h, w)
    if scale < 1:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        frame_rgb = cv2.resize(frame_rgb, size, interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    if not ok:
        raise ValueError("cannot encode the frame as JPEG")
    return buf.tobytes()


def display_name(name: str) -> str:
    """A file name safe to show and log: its last path part, printable, at most 80 characters."""
    base = re.split(r"[\\/]", name or "")[-1]
    base = "".join(c for c in base if c.isprintable()).strip()
    return (base[:77] + "...") if len(base) > 80 else (base or "upload")
