"""Drawing tracking results on frames and writing annotated videos."""

from __future__ import annotations

import errno
import glob
import logging
import os
import queue
import tempfile
import threading
import time
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger("mixformer.render")

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


# Hidden temporary files of killed runs (SIGKILL, power loss) older than this are removed when
# a new writer opens beside them (a live writer's file keeps growing).
STALE_SECONDS = 15 * 60


def video_backend() -> str:
    """``"pyav"`` when PyAV is installed with an H.264 encoder (browser-playable video), else
    ``"opencv"`` (MPEG-4 Part 2, which browsers do not play)."""
    try:
        import av
    except ImportError:
        return "opencv"
    return "pyav" if "libx264" in av.codecs_available else "opencv"


class VideoWriter:
    """Video writer of RGB frames that only shows the final file once it is complete.

    With PyAV (a dependency of the package) frames are encoded as H.264 (``yuv420p``, odd
    sizes padded to even; VP9 for ``.webm``), which browsers play; without it OpenCV writes
    MPEG-4 Part 2 (``mp4v``) and a one-line warning says so.

    Frames go to a hidden temporary file beside ``path``, unique per writer
    (``.<stem>.XXXXXXXX.partial<suffix>``), so two runs writing the same ``path`` do not mix.
    On :meth:`close` it is renamed to ``path``; ``close(complete=False)`` (an interrupted run)
    finishes the file and renames it to ``<stem>.partial<suffix>`` instead, so a partial video
    is never taken for a complete one. A file the encoder could not finish (a full disk) is
    removed, never renamed. :meth:`open` (called by the first :meth:`write`) can be called early
    to check that the file can be written before any work is done.

    With ``background=True`` (the default) frames are encoded by a thread of the writer while
    the caller goes on (a queue of :attr:`QUEUE` frames; :meth:`write` copies the frame): on a
    2-core machine the tracker keeps one core and the encoder takes the other (``mixformer
    demo``: 22 -> 30 FPS with H.264). An encoding error is raised by the next :meth:`write` or by
    :meth:`close`, as it would have been by the failing write.
    """

    QUEUE = 8

    def __init__(self, path: str | Path, fps: float = 25.0, background: bool = True) -> None:
        self.path = Path(path)
        self.suffix = self.path.suffix or ".mp4"
        self.partial_path = self.path.with_name(f"{self.path.stem}.partial{self.suffix}")
        self.fps = fps
        self.frames = 0
        self.tmp: Path | None = None
        self.backend: str | None = None
        self.background = background
        self._enc: _PyAVEncoder | _OpenCVEncoder | None = None
        self._queue: queue.Queue[np.ndarray | None] | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._drop = False

    def open(self, width: int, height: int) -> None:
        """Create the temporary file and the encoder for ``width`` x ``height`` frames.

        Raises:
            OSError: the folder cannot be created or written (names the path).
            ValueError: no encoder for the file's extension (names the path).
        """
        if self._enc is not None:
            return
        from mixformer.utils import default_file_mode

        parent = self.path.parent
        parent.mkdir(parents=True, exist_ok=True)
        self._remove_stale()
        fd, name = tempfile.mkstemp(
            dir=parent, prefix=f".{self.path.stem}.", suffix=f".partial{self.suffix}"
        )
        self.tmp = Path(name)
        try:
            os.fchmod(fd, default_file_mode())
            os.close(fd)
            self.backend = video_backend()
            if self.backend == "pyav":
                self._enc = _PyAVEncoder(self.tmp, self.path, self.fps, width, height)
            else:
                log.warning(
                    "PyAV is not installed (or has no H.264 encoder): %s is MPEG-4 Part 2, "
                    "which browsers do not play (pip install av for H.264)",
                    self.path,
                )
                self._enc = _OpenCVEncoder(self.tmp, self.path, self.fps, width, height)
        except BaseException:
            self.tmp.unlink(missing_ok=True)
            self.tmp = None
            raise
        if self.background:
            self._queue = queue.Queue(self.QUEUE)
            self._error, self._drop = None, False
            self._thread = threading.Thread(target=self._encode_queued, daemon=True)
            self._thread.start()

    def write(self, frame_rgb: np.ndarray) -> None:
        """Append one ``(H, W, 3)`` uint8 RGB frame (the first frame fixes the size).

        Raises:
            OSError: the file cannot be written (e.g. a full disk), naming ``path``.
        """
        if self._enc is None:
            h, w = frame_rgb.shape[:2]
            self.open(w, h)
        assert self._enc is not None
        self._raise_encoder_error()
        if self._queue is not None:
            self._queue.put(np.array(frame_rgb, copy=True))
        else:
            try:
                self._enc.write(frame_rgb)
            except OSError as exc:
                raise _named(exc, self.path) from exc
        self.frames += 1

    def _encode_queued(self) -> None:
        """The encoding thread: writes queued frames until ``None``; after an error (kept in
        ``_error``) or :meth:`discard` it only empties the queue, so writers never block."""
        assert self._queue is not None and self._enc is not None
        while (frame := self._queue.get()) is not None:
            if self._error is None and not self._drop:
                try:
                    self._enc.write(frame)
                except BaseException as exc:  # noqa: BLE001 - raised in the caller's thread
                    self._error = exc

    def _finish_queue(self, drop: bool = False) -> None:
        """Wait for the encoding thread to write (or, with ``drop``, skip) what is queued."""
        if self._queue is None or self._thread is None:
            return
        self._drop = drop
        self._queue.put(None)
        self._thread.join()
        self._queue = self._thread = None

    def _raise_encoder_error(self) -> None:
        exc = self._error
        if exc is None:
            return
        if isinstance(exc, OSError):
            raise _named(exc, self.path) from exc
        raise exc

    def close(self, complete: bool = True) -> Path | None:
        """Finish the file.

        Args:
            complete: True: rename it to ``path``; False: to :attr:`partial_path`.
        Returns:
            The file written, or None when no frame was written or (with ``complete=False``)
            the encoder could not finish the file.
        Raises:
            OSError / ValueError: with ``complete=True``, the encoder could not finish the file
                (a full disk); the broken file is removed.
        """
        self._finish_queue()
        enc, self._enc = self._enc, None
        if enc is None or self.tmp is None:
            return None
        tmp, self.tmp = self.tmp, None
        try:
            if self._error is not None:
                enc.abort()
                self._raise_encoder_error()
            enc.close(self.frames)
            if not self.frames:
                tmp.unlink(missing_ok=True)
                return None
            target = self.path if complete else self.partial_path
            os.replace(tmp, target)
            return target
        except (OSError, ValueError) as exc:
            tmp.unlink(missing_ok=True)
            if not complete:
                log.warning("the partial video was not kept: %s", exc)
                return None
            if isinstance(exc, OSError):
                raise _named(exc, self.path) from exc
            raise

    def discard(self) -> None:
        """Stop writing and remove the temporary file (nothing is kept)."""
        self._finish_queue(drop=True)
        enc, self._enc = self._enc, None
        if enc is not None:
            enc.abort()
        if self.tmp is not None:
            self.tmp.unlink(missing_ok=True)
            self.tmp = None

    def _remove_stale(self) -> None:
        """Remove this name's hidden temporary files that no writer touched for a while."""
        now = time.time()
        pattern = f".{glob.escape(self.path.stem)}.*partial{glob.escape(self.suffix)}"
        for old in self.path.parent.glob(pattern):
            try:
                if now - old.stat().st_mtime > STALE_SECONDS:
                    old.unlink()
                    log.info("removed %s, left by an earlier run that was killed", old)
            except OSError:
                pass  # another run removed it, or it is not ours to remove


def _named(exc: OSError, path: Path) -> OSError:
    """``exc`` as an ``OSError`` naming ``path`` (for the one-line ``PATH: reason`` message)."""
    if exc.errno is None:
        return OSError(f"{path}: cannot write video ({exc})")
    return OSError(exc.errno, exc.strerror or os.strerror(exc.errno), str(path))


class _PyAVEncoder:
    """H.264 (VP9 for ``.webm``) through PyAV; frames padded to even sizes for ``yuv420p``."""

    def __init__(self, tmp: Path, path: Path, fps: float, width: int, height: int) -> None:
        import av

        ext = tmp.suffix.lower()
        options = {"movflags": "+faststart"} if ext in (".mp4", ".mov", ".m4v") else {}
        try:
            self.container = av.open(str(tmp), "w", options=options)
        except ValueError:  # "Could not determine output format"
            raise ValueError(
                f"cannot write video {path}: no video format for the extension {ext!r} (use .mp4)"
            ) from None
        try:
            rate = Fraction(fps).limit_denominator(1001) if fps > 0 else Fraction(25)
            webm = ext == ".webm"
            self.stream = self.container.add_stream("libvpx-vp9" if webm else "libx264", rate)
            self.width, self.height = width + width % 2, height + height % 2
            self.stream.width, self.stream.height = self.width, self.height
            self.stream.pix_fmt = "yuv420p"
            if not webm:
                self.stream.options = {"crf": "23", "preset": "veryfast"}
        except ValueError as exc:  # the format cannot hold this codec (e.g. .gif, .wav)
            self.container.close()
            raise ValueError(f"cannot write video {path}: {exc} (use .mp4)") from None
        self._av = av

    def write(self, frame_rgb: np.ndarray) -> None:
        h, w = frame_rgb.shape[:2]
        if (w, h) != (self.width, self.height):
            frame_rgb = np.pad(
                frame_rgb[: self.height, : self.width],
                ((0, max(0, self.height - h)), (0, max(0, self.width - w)), (0, 0)),
                mode="edge",
            )
        frame = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(frame_rgb), format="rgb24")
        for packet in self.stream.encode(frame):
            self.container.mux(packet)

    def close(self, frames: int) -> None:
        try:
            if frames:
                for packet in self.stream.encode(None):
                    self.container.mux(packet)
        finally:
            self.container.close()

    def abort(self) -> None:
        try:
            self.container.close()
        except Exception:  # noqa: BLE001 - the file is removed anyway
            pass


class _OpenCVEncoder:
    """OpenCV's MPEG-4 Part 2 (``mp4v``) writer; checked by reading the file back at the end."""

    def __init__(self, tmp: Path, path: Path, fps: float, width: int, height: int) -> None:
        self.tmp, self.path = tmp, path
        # libav's "moov atom not found" when a broken file is read back in close(); OpenCV reads
        # the level when its FFmpeg backend starts (as in mixformer.data.frames).
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
        fourcc = cv2.VideoWriter_fourcc(*"mp4v")
        self.writer = cv2.VideoWriter(str(tmp), fourcc, fps, (width, height))
        if not self.writer.isOpened():
            raise ValueError(
                f"cannot write video {path}: OpenCV has no encoder for {path.suffix or 'such'} "
                "files (use .mp4)"
            )

    def write(self, frame_rgb: np.ndarray) -> None:
        self.writer.write(cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2BGR))

    def close(self, frames: int) -> None:
        self.writer.release()
        if not frames:
            return
        # OpenCV does not report failed writes (a full disk): read the frame count back.
        cap = cv2.VideoCapture(str(self.tmp))
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
        cap.release()
        if n != frames:
            why = f"the encoder's file holds {n} of {frames} frames (is the disk full?)"
            raise OSError(errno.EIO, why, str(self.path))

    def abort(self) -> None:
        self.writer.release()
