"""The web app's state: one video and at most one tracking run, tracked in a background thread.

:class:`Session` knows nothing of HTTP: the server (:mod:`mixformer.app.server`) calls it and
turns :class:`AppError` into a one-line message in the page. Everything a run produces (the
annotated video, ``boxes.txt``, uploads, the demo clip's frames) lives under the session's
``workdir``, a temporary folder the command line removes on exit.

Tracking goes through the public API only: :class:`~mixformer.Tracker` for one box,
:class:`~mixformer.MultiTracker` for several, both with the model's own settings
(``config=None``); frames are read with :class:`~mixformer.data.frames.FrameSource` (OpenCV, RGB)
and the annotated video is written with :mod:`mixformer.tracking.render`, as ``mixformer track``
does.
"""

from __future__ import annotations

import itertools
import logging
import math
import re
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mixformer import MultiTracker, Tracker, TrackerConfig
from mixformer.data.frames import FrameSource
from mixformer.tracking import check_box
from mixformer.tracking.render import PALETTE, VideoWriter, draw_box
from mixformer.utils import atomic_write_text

log = logging.getLogger(__name__)

Box = tuple[float, float, float, float]
#: ``step(frame_index, frame) -> [(box, score, attention or None)]``, one entry per target.
Step = Callable[[int, np.ndarray], list[tuple[Box, float, Any]]]

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
class Run:
    """One tracking run and what it produced so far (guarded by the session's lock)."""

    id: int
    boxes: list[Box]
    folder: Path
    total: int | None
    results: list[dict[str, Any]] = field(default_factory=list)
    jpegs: OrderedDict[int, bytes] = field(default_factory=OrderedDict)
    attention: OrderedDict[int, list[bytes | None]] = field(default_factory=OrderedDict)
    track_seconds: float = 0.0
    started: float = 0.0
    ended: float | None = None
    keep_attention: bool = False
    boxes_path: Path | None = None
    video_path: Path | None = None
    thread: threading.Thread | None = None


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


def format_boxes_file(results: Sequence[dict[str, Any]], several: bool) -> str:
    """``boxes.txt`` in the format of ``mixformer track --boxes``.

    One ``x,y,w,h`` line per frame for a single target; ``frame,target,x,y,w,h`` lines (frame
    and target counted from 0) for several; 2 decimals.
    """
    lines = []
    for res in results:
        for t, box in enumerate(res["boxes"]):
            prefix = f"{res['frame']},{t}," if several else ""
            lines.append(prefix + ",".join(f"{v:.2f}" for v in box))
    return "".join(line + "\n" for line in lines)


AttentionRenderer = Callable[[Any, np.ndarray], np.ndarray]


def describe_weights(name: str | None, weights: str | Path | None) -> dict[str, Any]:
    """What the page says about the network: ``{"name", "weights", "random", "releases",
    "source"}``.

    Args:
        name: the model's preset name (None: built from a config).
        weights: as :func:`~mixformer.build_model` took them: None (random initialisation),
            ``"default"`` (the weights shipped with the package) or a file.
    """
    from mixformer.models import get_config, list_models
    from mixformer.models.factory import default_weights_path

    releases: list[str] = []
    source = ""
    if name in list_models():
        cfg = get_config(name)
        releases = list(cfg.releases)
        source = cfg.release_page
    shipped = default_weights_path(name) if name else None
    if weights is None:
        text, random = "random initialisation (no --weights): the boxes are meaningless", True
    elif str(weights) == "default" or (shipped is not None and Path(weights) == shipped):
        text, random = "shipped with the package", False
    else:
        text, random = f"file {display_name(str(weights))}", False
    return {
        "name": name or "custom config",
        "weights": text,
        "random": random,
        "releases": releases,
        "source": source,
    }


def attention_renderer() -> tuple[AttentionRenderer | None, str]:
    """The attention picture this version can draw: ``(render, reason)``.

    The overlay needs ``Tracker(..., keep_attention=True)`` (and the same for
    :class:`~mixformer.MultiTracker`) and ``mixformer.tracking.attention.render_frame(attention,
    frame) -> RGB picture``. Without them ``render`` is None and ``reason`` says what is
    missing; the page then shows the toggle disabled with the reason as its tooltip.
    """
    import importlib
    import inspect

    for cls in (Tracker, MultiTracker):
        if "keep_attention" not in inspect.signature(cls).parameters:
            return None, (
                f"attention overlay: needs {cls.__name__}(keep_attention=True), not in this version"
            )
    try:
        module = importlib.import_module("mixformer.tracking.attention")
    except ImportError:
        module = None
    render = getattr(module, "render_frame", None)
    if not callable(render):
        return None, (
            "attention overlay: no attention renderer (mixformer.tracking.attention."
            "render_frame) in this version"
        )
    return render, "attention overlay: how strongly each search location attends to the template"


def attention_range(attention: Any) -> list[float] | None:
    """``[min, max]`` attention mass on the template over the search grid: the ends of the
    colour scale :func:`mixformer.tracking.attention.render_frame` draws (None if unknown)."""
    try:
        from mixformer.tracking.attention import segment_mass, select_map

        mass = segment_mass(select_map(attention), "template")
        return [float(mass.min()), float(mass.max())]
    except Exception:  # another version's records: the page shows no numbers
        return None


class Session:
    """The one video and the one tracking run of a web-app server.

    Thread-safe: the server's request handlers and the tracking thread share it through one
    lock. Only one upload, demo generation or run proceeds at a time; another is refused with an
    :class:`AppError` (status 409).

    Args:
        model: the network (a :class:`~mixformer.models.MixFormer`), tracked with its own
            settings (``Tracker(model)`` without a config).
        workdir: an existing folder for uploads and results (the caller removes it).
        device: torch device for the trackers.
        fast: the fast inference path (as ``mixformer track``; False: plain reference network).
        max_upload_bytes: largest upload accepted.
        weights: the weights ``model`` was built with, as :func:`~mixformer.build_model` took
            them (None: random; ``"default"``: the shipped ones; or the file), shown in the page.
    """

    def __init__(
        self,
        model: Any,
        workdir: str | Path,
        device: str = "cpu",
        fast: bool = True,
        max_upload_bytes: int = 500 * 2**20,
        weights: str | Path | None = "default",
    ) -> None:
        if max_upload_bytes <= 0:
            raise ValueError(f"max_upload_bytes must be positive, got {max_upload_bytes}")
        self.model = model
        self.workdir = Path(workdir)
        self.device = device
        self.fast = fast
        self.max_upload_bytes = int(max_upload_bytes)
        self.model_info = describe_weights(getattr(model, "name", None), weights)
        config = TrackerConfig.for_model(model)
        self._box_factor = max(config.search_factor, config.template_factor)
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._status = "empty"
        self._message = ""
        self._message_kind = "info"  # or "error": how the page shows the message
        self._video: Video | None = None
        self._run: Run | None = None
        self._upload: dict[str, Any] | None = None
        self._loading: dict[str, Any] | None = None
        self._previous = "empty"
        self._resume = threading.Event()
        self._stop = threading.Event()
        self._render_attention, self.attention_reason = attention_renderer()
        self._attention_on = False
        self._attention_target = 0

    # -- state -----------------------------------------------------------------------------
    @property
    def attention_available(self) -> bool:
        """Whether the attention overlay can be drawn (see :func:`attention_renderer`)."""
        return self._render_attention is not None

    @property
    def status(self) -> str:
        """``empty``, ``uploading``, ``loading``, ``ready``, ``running``, ``paused``, ``done``,
        ``stopped`` or ``error``."""
        return self._status

    def _refuse_if_busy(self, action: str) -> None:
        """Raise a 409 :class:`AppError` when an upload, demo or run is in progress (lock held)."""
        if self._status in ("running", "paused"):
            raise AppError(
                f"cannot {action}: a tracking run is in progress; stop it or wait until it ends",
                409,
            )
        if self._status in ("uploading", "loading"):
            raise AppError(f"cannot {action}: a video is still being loaded", 409)

    def snapshot(self, since: int = 0, run_id: int | None = None) -> dict[str, Any]:
        """The page's view of the state, as JSON-ready data.

        Args:
            since: results of frames from this index on are included (the page has the rest).
            run_id: the run the page's results belong to; for another run all are included.
        """
        with self._lock:
            video, run = self._video, self._run
            state: dict[str, Any] = {
                "status": self._status,
                "message": self._message,
                "message_kind": self._message_kind,
                "limits": {"max_upload_bytes": self.max_upload_bytes, "max_targets": MAX_TARGETS},
                "attention": {
                    "available": self.attention_available,
                    "reason": self.attention_reason,
                    "on": self._attention_on,
                    "target": self._attention_target,
                },
                "model": dict(self.model_info),
                "upload": dict(self._upload) if self._upload else None,
                "loading": dict(self._loading) if self._loading else None,
                "video": None,
                "run": None,
            }
            if video is not None:
                state["video"] = {
                    "id": video.id,
                    "name": video.name,
                    "width": video.width,
                    "height": video.height,
                    "frames": video.frames,
                    "fps": video.fps,
                }
            if run is not None:
                start = max(0, since) if run_id == run.id else 0
                updates = max(0, len(run.results) - 1)
                wall = (run.ended or time.perf_counter()) - run.started
                state["run"] = {
                    "id": run.id,
                    "boxes": [list(b) for b in run.boxes],
                    "done": len(run.results),
                    "total": run.total,
                    # network + tracker only, and everything (decoding, drawing, encoding)
                    "fps": updates / run.track_seconds if run.track_seconds > 0 else None,
                    "fps_end_to_end": len(run.results) / wall if run.results and wall > 0 else None,
                    "since": start,
                    "attention": run.keep_attention,
                    "results": run.results[start:],
                    "downloads": {
                        "boxes": run.boxes_path is not None,
                        "video": run.video_path is not None,
                    },
                }
            return state

    # -- videos ----------------------------------------------------------------------------
    def begin_upload(self, name: str, total: int | None) -> Path:
        """Start receiving an upload of ``total`` bytes (None: unknown); returns where to write it.

        Raises:
            AppError: 409 while busy, 413 when ``total`` is over the limit.
        """
        with self._lock:
            self._refuse_if_busy("open another video")
            if total is not None and total > self.max_upload_bytes:
                raise AppError(self._too_large(total), 413)
            folder = self.workdir / f"video-{next(self._ids)}"
            folder.mkdir(parents=True)
            self._previous = self._status
            self._status = "uploading"
            self._message = ""
            self._upload = {"name": display_name(name), "received": 0, "total": total}
            # No suffix from the user's name: FFmpeg then finds the format from the content
            # alone (with ".txt" it would render a text file as frames of ANSI art).
            return folder / "upload"

    def _too_large(self, size: int) -> str:
        mb, limit = size / 2**20, self.max_upload_bytes / 2**20
        return (
            f"the file is {mb:.1f} MB, over the upload limit of {limit:g} MB "
            "(start the app with a larger --max-upload-mb)"
        )

    def upload_progress(self, received: int) -> None:
        """Record ``received`` bytes so far.

        Raises:
            AppError: 413 once the upload passes the limit (the caller stops reading).
        """
        if received > self.max_upload_bytes:
            raise AppError(self._too_large(received), 413)
        with self._lock:
            if self._upload is not None:
                self._upload["received"] = received

    def abort_upload(self, path: Path, message: str = "") -> None:
        """Drop a failed upload: remove its folder, go back to the previous state."""
        shutil.rmtree(path.parent, ignore_errors=True)
        with self._lock:
            if self._status in ("uploading", "loading"):
                self._status = self._previous
            self._upload = None
            self._loading = None
            self._message, self._message_kind = message, "error"

    def finish_upload(self, path: Path) -> dict[str, Any]:
        """Check that the received file is a readable video and make it the current one.

        Raises:
            AppError: 415 when OpenCV cannot read it as a video, 400 when it is empty or has
                one frame only; the upload is then dropped and the previous video kept.
        """
        with self._lock:
            name = self._upload["name"] if self._upload else display_name(path.name)
            self._status = "loading"
            self._loading = {"what": f"checking {name}"}
        try:
            if path.stat().st_size == 0:
                raise AppError(f"{name} is empty", 400)
            try:
                source = FrameSource(path)
                frames = iter(source)
                first, second = next(frames, None), next(frames, None)
            except ValueError:
                first = second = None
            if first is None:
                raise AppError(
                    f"{name} is not a video that OpenCV can read (an mp4, avi, mkv, ... file)", 415
                )
            if second is None:
                raise AppError(f"{name} has a single frame; tracking needs a video", 400)
            video = Video(
                id=next(self._ids),
                name=name,
                path=path,
                folder=path.parent,
                width=int(first.shape[1]),
                height=int(first.shape[0]),
                frames=source.num_frames,
                fps=source.fps,
                first_jpeg=encode_jpeg(first),
            )
        except AppError as exc:
            self.abort_upload(path, exc.message)
            raise
        except Exception as exc:
            log.debug("checking the upload failed", exc_info=True)
            self.abort_upload(path, f"cannot open {name}: {exc}")
            raise AppError(f"cannot open {name}: {exc}", 400) from exc
        self._set_video(video)
        return self.snapshot()

    def load_demo(self, seed: int = 7, num_frames: int = 80) -> dict[str, Any]:
        """Make the built-in demo clip (``mixformer demo``'s photo composite) the current video.

        The frames are composited from the photos shipped with the package
        (:func:`mixformer.datagen.composite.demo_photos`) and written as PNG files, so the tracker
        reads them losslessly.

        Raises:
            AppError: 409 while busy.
        """
        from mixformer.datagen.composite import Corpus, demo_photos, make_composite_scene

        with self._lock:
            self._refuse_if_busy("open the demo clip")
            self._previous = self._status
            self._status = "loading"
            self._message = ""
            self._loading = {"what": "making the demo clip", "done": 0, "total": num_frames}
            folder = self.workdir / f"video-{next(self._ids)}"
        frames_dir = folder / "frames"
        try:
            frames_dir.mkdir(parents=True)
            scene = make_composite_scene(
                Corpus(demo_photos(), "all"), seed, "plain", num_frames, 288, 384, name="demo"
            )
            for i in range(len(scene)):
                frame = scene.render(i)
                if not cv2.imwrite(
                    str(frames_dir / f"{i + 1:05d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
                ):
                    raise OSError(f"cannot write {frames_dir}")
                if i == 0:
                    first = frame
                with self._lock:
                    self._loading = {"what": "making the demo clip", "done": i + 1}
                    self._loading["total"] = len(scene)
        except Exception as exc:
            log.debug("making the demo clip failed", exc_info=True)
            self.abort_upload(frames_dir, f"cannot make the demo clip: {exc}")
            raise AppError(f"cannot make the demo clip: {exc}", 500) from exc
        video = Video(
            id=next(self._ids),
            name="demo clip",
            path=frames_dir,
            folder=folder,
            width=int(first.shape[1]),
            height=int(first.shape[0]),
            frames=num_frames,
            fps=15.0,
            first_jpeg=encode_jpeg(first),
        )
        self._set_video(video)
        return self.snapshot()

    def _set_video(self, video: Video) -> None:
        """Replace the current video (and drop the old one and its run's files)."""
        with self._lock:
            old, run = self._video, self._run
            self._video, self._run = video, None
            self._status = "ready"
            self._upload = self._loading = None
            self._message = ""
        for gone in (old.folder if old else None, run.folder if run else None):
            if gone is not None:
                shutil.rmtree(gone, ignore_errors=True)
        log.info(
            "opened %s (%dx%d, %s frames)", video.name, video.width, video.height, video.frames
        )

    def first_frame(self) -> bytes:
        """The current video's first frame as JPEG.

        Raises:
            AppError: 404 when no video is open.
        """
        with self._lock:
            if self._video is None:
                raise AppError("no video is open", 404)
            return self._video.first_jpeg

    # -- runs ------------------------------------------------------------------------------
    def check_boxes(self, boxes: Any) -> list[Box]:
        """Validate the boxes drawn on the first frame.

        Args:
            boxes: a list of 1 to :data:`MAX_TARGETS` ``[x, y, w, h]`` boxes in image pixels.
        Raises:
            AppError: 400 naming the first bad box (zero-size or tiny, outside the frame, far
                too large, not four numbers), or when no video is open.
        """
        video = self._video
        if video is None:
            raise AppError("open a video or the demo clip first")
        if not isinstance(boxes, list) or not boxes:
            raise AppError("draw a box around the object first")
        if len(boxes) > MAX_TARGETS:
            raise AppError(f"at most {MAX_TARGETS} boxes per run, got {len(boxes)}")
        out = []
        W, H = video.width, video.height
        for k, box in enumerate(boxes, 1):
            label = f"box {k}" if len(boxes) > 1 else "the box"
            if (
                not isinstance(box, list)
                or len(box) != 4
                or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in box)
                or not all(math.isfinite(v) for v in box)
            ):
                raise AppError(f"{label} must be 4 numbers [x, y, w, h], got {box!r:.60}")
            x, y, w, h = (float(v) for v in box)
            if w < MIN_BOX_SIDE or h < MIN_BOX_SIDE:
                raise AppError(
                    f"{label} is {w:g}x{h:g} px: drag a box at least {MIN_BOX_SIDE:g} px wide "
                    "and high"
                )
            tol = EDGE_TOLERANCE
            if x < -tol or y < -tol or x + w > W + tol or y + h > H + tol:
                raise AppError(
                    f"{label} ({x:g}, {y:g}, {w:g}, {h:g}) is outside the {W}x{H} frame: "
                    "draw it inside the picture"
                )
            try:
                check_box((x, y, w, h), H, W, self._box_factor)
            except ValueError as exc:
                raise AppError(f"{label}: {exc}") from exc
            out.append((x, y, w, h))
        return out

    def start(self, boxes: Any) -> dict[str, Any]:
        """Start tracking ``boxes`` (see :meth:`check_boxes`) in a background thread.

        Raises:
            AppError: 409 while another run (or an upload) is in progress, 400 for bad boxes.
        """
        with self._lock:
            self._refuse_if_busy("start tracking")
            checked = self.check_boxes(boxes)
            video, old = self._video, self._run
            run_id = next(self._ids)
            run = Run(
                id=run_id,
                boxes=checked,
                folder=self.workdir / f"run-{run_id}",
                total=video.frames,
                keep_attention=self._attention_on,
                started=time.perf_counter(),
            )
            run.folder.mkdir(parents=True)
            self._run = run
            self._status = "running"
            self._message = ""
            self._stop.clear()
            self._resume.set()
            run.thread = threading.Thread(
                target=self._track, args=(run, video), name=f"mixformer-run-{run.id}", daemon=True
            )
            run.thread.start()
        if old is not None:
            shutil.rmtree(old.folder, ignore_errors=True)
        log.info("run %d: tracking %d box(es) in %s", run.id, len(checked), video.name)
        return self.snapshot()

    def set_attention(self, on: bool, target: int | None = None) -> None:
        """Switch the attention overlay on or off, and pick the target whose map is shown.

        A run records the attention only when the overlay was on as it started (recording
        costs speed); switching it off mid-run just stops drawing the pictures. Every target's
        map is drawn (one picture each), so ``target`` only says which one the page shows.

        Raises:
            AppError: 400 when this version cannot draw it (the reason is the message), or for
                a target outside ``0 .. MAX_TARGETS - 1``.
        """
        if on and not self.attention_available:
            raise AppError(self.attention_reason)
        if target is not None and (
            not isinstance(target, int) or isinstance(target, bool) or not 0 <= target < MAX_TARGETS
        ):
            raise AppError(
                f"the attention target must be 0 to {MAX_TARGETS - 1}, got {target!r:.20}"
            )
        with self._lock:
            self._attention_on = bool(on)
            if target is not None:
                self._attention_target = target

    def pause(self) -> None:
        """Pause the running run after its current frame.

        Raises:
            AppError: 409 when nothing is running.
        """
        with self._lock:
            if self._status != "running":
                raise AppError("nothing to pause: no run is in progress", 409)
            self._resume.clear()
            self._status = "paused"

    def resume(self) -> None:
        """Resume a paused run.

        Raises:
            AppError: 409 when no run is paused.
        """
        with self._lock:
            if self._status != "paused":
                raise AppError("nothing to resume: no run is paused", 409)
            self._status = "running"
            self._resume.set()

    def stop(self) -> None:
        """Stop the run (its boxes so far and a partial video stay downloadable).

        Raises:
            AppError: 409 when no run is in progress.
        """
        with self._lock:
            if self._status not in ("running", "paused"):
                raise AppError("nothing to stop: no run is in progress", 409)
            self._stop.set()
            self._resume.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the current run's thread to end; True when no run is left running."""
        run = self._run
        if run is None or run.thread is None:
            return True
        run.thread.join(timeout)
        return not run.thread.is_alive()

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop any run and wait for its thread (the server's shutdown)."""
        self._stop.set()
        self._resume.set()
        if not self.wait(timeout):
            log.warning("the tracking thread did not stop within %.0f s", timeout)

    def frame(self, run_id: int, index: int, attention: bool = False, target: int = 0) -> bytes:
        """A streamed frame of run ``run_id`` as JPEG.

        With ``attention``, the attention picture of target ``target`` (counted from 0) where
        the run has one, else the plain frame.

        Raises:
            AppError: 404 when that run or frame is gone (only the newest frames are kept).
        """
        with self._lock:
            run = self._run
            if run is None or run.id != run_id:
                raise AppError("that run is gone", 404)
            pictures = run.attention.get(index, []) if attention else []
            data = pictures[target] if 0 <= target < len(pictures) else None
            if data is None:  # no picture for this frame (the first frame has no search step)
                data = run.jpegs.get(index)
        if data is None:
            raise AppError(f"frame {index} is not available", 404)
        return data

    def download(self, what: str) -> Path:
        """The path of the last run's ``boxes`` file or annotated ``video``.

        Raises:
            AppError: 404 when there is none yet.
        """
        with self._lock:
            run = self._run
            path = None
            if run is not None:
                path = run.boxes_path if what == "boxes" else run.video_path
        if path is None or not path.is_file():
            raise AppError(f"no {what} to download yet: run the tracker first", 404)
        return path

    # -- the tracking thread ---------------------------------------------------------------
    def _stepper(self, boxes: list[Box], keep_attention: bool = False) -> Step:
        """``step(i, frame) -> [(box, score, attention)]`` per target: a Tracker, or a
        MultiTracker for several boxes; ``attention`` is None unless ``keep_attention``."""
        extra = {"keep_attention": True} if keep_attention else {}
        if len(boxes) == 1:
            tracker = Tracker(self.model, device=self.device, fast=self.fast, **extra)

            def step(i: int, frame: np.ndarray) -> list[tuple[Box, float, Any]]:
                res = tracker.init(frame, boxes[0]) if i == 0 else tracker.update(frame)
                return [(res.box, res.score, getattr(res, "attention", None))]

            return step
        multi = MultiTracker(self.model, device=self.device, fast=self.fast, **extra)
        ids: list[int] = []

        def step_many(i: int, frame: np.ndarray) -> list[tuple[Box, float, Any]]:
            if i == 0:
                ids.extend(multi.add(frame, box) for box in boxes)
                return [(box, 1.0, None) for box in boxes]
            out = multi.update(frame)
            return [(out[t].box, out[t].score, getattr(out[t], "attention", None)) for t in ids]

        return step_many

    def _attention_pictures(
        self, frame: np.ndarray, attentions: Sequence[Any]
    ) -> list[tuple[np.ndarray, list[float] | None] | None]:
        """One picture per target: the frame with that target's attention map alone (so maps
        of nearby targets never paint over each other), and the map's ``[min, max]`` attention
        mass on the template (the page's colour-scale legend; None when unknown). None for a
        target without attention."""
        out: list[tuple[np.ndarray, list[float] | None] | None] = []
        h = frame.shape[0]
        for att in attentions:
            if att is None or self._render_attention is None:
                out.append(None)
                continue
            # The renderer may add a caption below the frame; the page shows the frame's area
            # and draws the colour scale itself.
            picture = np.ascontiguousarray(self._render_attention(att, frame)[:h])
            out.append((picture, attention_range(att)))
        return out

    def _frames(self, video: Video) -> Iterator[np.ndarray]:
        return iter(FrameSource(video.path))

    def _track(self, run: Run, video: Video) -> None:
        """The run's thread: track every frame, stream it, write the video and ``boxes.txt``."""
        several = len(run.boxes) > 1
        writer = VideoWriter(run.folder / "tracked.mp4", fps=video.fps)
        index = 0
        status, message = "done", ""
        try:
            step = self._stepper(run.boxes, run.keep_attention)
            draw_attention = run.keep_attention
            for index, frame in enumerate(self._frames(video)):
                while not self._resume.wait(0.2):
                    pass
                if self._stop.is_set():
                    status = "stopped"
                    message = f"stopped after {index} frames"
                    break
                t0 = time.perf_counter()
                tracked = step(index, frame)
                dt = time.perf_counter() - t0
                shown = frame
                for t, (box, score, _) in enumerate(tracked):
                    label = f"{t + 1}: {score:.2f}" if several else f"{score:.2f}"
                    shown = draw_box(shown, box, PALETTE[t % len(PALETTE)], label)
                writer.write(shown)
                jpeg = encode_jpeg(frame)
                attention_jpegs: list[bytes | None] = []
                ranges: list[list[float] | None] = []
                # Frame 0 is the init frame: no search step, so nothing to draw.
                if draw_attention and index > 0 and self._attention_on:
                    try:
                        pictures = self._attention_pictures(frame, [a for _, _, a in tracked])
                    except Exception as exc:  # a drawing problem must not end the run
                        log.warning("run %d: attention overlay off: %s", run.id, exc)
                        draw_attention, pictures = False, []
                    for item in pictures:
                        attention_jpegs.append(encode_jpeg(item[0]) if item else None)
                        ranges.append(item[1] if item else None)
                result = {
                    "frame": index,
                    "boxes": [[float(v) for v in box] for box, _, _ in tracked],
                    "scores": [float(score) for _, score, _ in tracked],
                }
                if any(j is not None for j in attention_jpegs):
                    # per target: [min, max] template mass of its map (the legend's scale)
                    result["attention"] = ranges
                with self._lock:
                    if index > 0:
                        run.track_seconds += dt
                    run.results.append(result)
                    run.jpegs[index] = jpeg
                    if "attention" in result:
                        run.attention[index] = attention_jpegs
                    for store in (run.jpegs, run.attention):
                        while len(store) > KEEP_FRAMES:
                            store.popitem(last=False)
        except Exception as exc:
            log.error("run %d stopped at frame %d: %s", run.id, index, exc)
            log.debug("traceback", exc_info=True)
            status, message = "error", f"tracking stopped at frame {index}: {exc}"
        try:
            video_path = writer.close(complete=status == "done")
        except Exception as exc:
            log.error("run %d: cannot finish the video: %s", run.id, exc)
            video_path = None
        with self._lock:
            results = list(run.results)
        boxes_path = None
        if results:
            boxes_path = run.folder / "boxes.txt"
            atomic_write_text(boxes_path, format_boxes_file(results, several))
        with self._lock:
            run.ended = time.perf_counter()
            run.video_path, run.boxes_path = video_path, boxes_path
            if self._run is run:
                self._status, self._message = status, message
                self._message_kind = "error" if status == "error" else "info"
        log.info("run %d %s: %d frames", run.id, status, len(results))
