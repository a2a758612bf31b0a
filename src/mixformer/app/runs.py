"""The web app's run controller: one tracking run at a time, in a background thread.

The thread tracks every frame through the public API (:class:`~mixformer.Tracker` for one
box, :class:`~mixformer.MultiTracker` for several, with the model's own settings), streams
JPEG frames (and attention pictures) to the page, and writes the annotated video with
:mod:`mixformer.tracking.render` and ``boxes.txt`` in the format of ``mixformer track``.
"""

from __future__ import annotations

import logging
import math
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mixformer.app.state import (
    EDGE_TOLERANCE,
    KEEP_FRAMES,
    MAX_TARGETS,
    MIN_BOX_SIDE,
    AppError,
    AppState,
    Box,
    Video,
    encode_jpeg,
)
from mixformer.tracking import check_box, track_video
from mixformer.tracking.render import PALETTE, VideoWriter, draw_box
from mixformer.utils import atomic_write_text

log = logging.getLogger(__name__)

#: ``step(frame_index, frame) -> [(box, score, attention or None)]``, one entry per target.
AttentionRenderer = Callable[[Any, np.ndarray], np.ndarray]


@dataclass
class Run:
    """One tracking run and what it produced so far (guarded by the state's lock)."""

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


def run_view(run: Run, since: int, run_id: int | None) -> dict[str, Any]:
    """The page's view of ``run`` (JSON-ready; lock held): results from frame ``since`` on when
    the page's results belong to ``run_id`` (this run), else all."""
    start = max(0, since) if run_id == run.id else 0
    updates = max(0, len(run.results) - 1)
    wall = (run.ended or time.perf_counter()) - run.started
    return {
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


def attention_renderer() -> tuple[AttentionRenderer | None, str]:
    """The attention picture this version can draw: ``(render, reason)``.

    The overlay needs ``mixformer.tracking.attention.render_frame(attention, frame) -> RGB
    picture`` (the trackers' ``keep_attention=True`` gives the maps). Without it ``render`` is
    None and ``reason`` says what is missing; the page then shows the toggle disabled with the
    reason as its tooltip.
    """
    import importlib

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


def check_boxes(boxes: Any, video: Video | None, box_factor: float) -> list[Box]:
    """Validate the boxes drawn on the first frame of ``video``.

    Args:
        boxes: a list of 1 to :data:`MAX_TARGETS` ``[x, y, w, h]`` boxes in image pixels.
        video: the open video (None: none is).
        box_factor: the tracker's largest crop factor (a box whose crop would not fit is
            refused, see :func:`~mixformer.tracking.check_box`).
    Raises:
        AppError: 400 naming the first bad box (zero-size or tiny, outside the frame, far
            too large, not four numbers), or when no video is open.
    """
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
                f"{label} is {w:g}x{h:g} px: drag a box at least {MIN_BOX_SIDE:g} px wide and high"
            )
        tol = EDGE_TOLERANCE
        if x < -tol or y < -tol or x + w > W + tol or y + h > H + tol:
            raise AppError(
                f"{label} ({x:g}, {y:g}, {w:g}, {h:g}) is outside the {W}x{H} frame: "
                "draw it inside the picture"
            )
        try:
            check_box((x, y, w, h), H, W, box_factor)
        except ValueError as exc:
            raise AppError(f"{label}: {exc}") from exc
        out.append((x, y, w, h))
    return out


class RunController:
    """Starts, pauses, resumes and stops the tracking run of an :class:`AppState`, and serves
    what it produced (streamed frames, ``boxes.txt``, the annotated video).

    Args:
        state: the shared state (the controller sets its ``run`` and the run's status).
        model: the network, tracked with its own settings.
        workdir: an existing folder; each run writes into ``run-N`` there.
        device / fast: as for :class:`~mixformer.Tracker`.
        box_factor: see :func:`check_boxes`.
        frames: ``frames(video) -> iterator of RGB frames`` (called in the run's thread).
        backend / dtype: as for :class:`~mixformer.Tracker`; a run with the attention overlay
            uses torch (the only backend that records attention).
    """

    def __init__(
        self,
        state: AppState,
        model: Any,
        workdir: Path,
        device: str,
        fast: bool,
        box_factor: float,
        frames: Callable[[Video], Iterator[np.ndarray]],
        backend: str = "auto",
        dtype: str = "auto",
    ) -> None:
        self._state = state
        self.backend = backend
        self.dtype = dtype
        self.model = model
        self.workdir = workdir
        self.device = device
        self.fast = fast
        self.box_factor = box_factor
        self._frames = frames
        self._resume = threading.Event()
        self._stop = threading.Event()
        self.render_attention, self.attention_reason = attention_renderer()
        self.attention_on = False
        self.attention_target = 0

    @property
    def attention_available(self) -> bool:
        """Whether the attention overlay can be drawn (see :func:`attention_renderer`)."""
        return self.render_attention is not None

    def start(self, boxes: Any) -> None:
        """Start tracking ``boxes`` (see :func:`check_boxes`) in a background thread.

        Raises:
            AppError: 409 while another run (or an upload) is in progress, 400 for bad boxes.
        """
        st = self._state
        with st.lock:
            st.refuse_if_busy("start tracking")
            checked = check_boxes(boxes, st.video, self.box_factor)
            video, old = st.video, st.run
            run_id = st.next_id()
            run = Run(
                id=run_id,
                boxes=checked,
                folder=self.workdir / f"run-{run_id}",
                total=video.frames,
                keep_attention=self.attention_on,
                started=time.perf_counter(),
            )
            run.folder.mkdir(parents=True)
            st.run = run
            st.status = "running"
            st.message = ""
            self._stop.clear()
            self._resume.set()
            run.thread = threading.Thread(
                target=self._track, args=(run, video), name=f"mixformer-run-{run.id}", daemon=True
            )
            run.thread.start()
        if old is not None:
            shutil.rmtree(old.folder, ignore_errors=True)
        log.info("run %d: tracking %d box(es) in %s", run.id, len(checked), video.name)

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
        with self._state.lock:
            self.attention_on = bool(on)
            if target is not None:
                self.attention_target = target

    def pause(self) -> None:
        """Pause the running run after its current frame.

        Raises:
            AppError: 409 when nothing is running.
        """
        st = self._state
        with st.lock:
            if st.status != "running":
                raise AppError("nothing to pause: no run is in progress", 409)
            self._resume.clear()
            st.status = "paused"

    def resume(self) -> None:
        """Resume a paused run.

        Raises:
            AppError: 409 when no run is paused.
        """
        st = self._state
        with st.lock:
            if st.status != "paused":
                raise AppError("nothing to resume: no run is paused", 409)
            st.status = "running"
            self._resume.set()

    def stop(self) -> None:
        """Stop the run (its boxes so far and a partial video stay downloadable).

        Raises:
            AppError: 409 when no run is in progress.
        """
        with self._state.lock:
            if self._state.status not in ("running", "paused"):
                raise AppError("nothing to stop: no run is in progress", 409)
            self._stop.set()
            self._resume.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the current run's thread to end; True when no run is left running."""
        run = self._state.run
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
        with self._state.lock:
            run = self._state.run
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
        with self._state.lock:
            run = self._state.run
            path = None
            if run is not None:
                path = run.boxes_path if what == "boxes" else run.video_path
        if path is None or not path.is_file():
            raise AppError(f"no {what} to download yet: run the tracker first", 404)
        return path

    # -- the tracking thread ---------------------------------------------------------------
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
            if att is None or self.render_attention is None:
                out.append(None)
                continue
            # The renderer may add a caption below the frame; the page shows the frame's area
            # and draws the colour scale itself.
            picture = np.ascontiguousarray(self.render_attention(att, frame)[:h])
            out.append((picture, attention_range(att)))
        return out

    def _halted(self) -> bool:
        """Wait while the run is paused; then whether it was asked to stop."""
        while not self._resume.wait(0.2):
            pass
        return self._stop.is_set()

    def _track(self, run: Run, video: Video) -> None:
        """The run's thread: track every frame (:func:`mixformer.track_video`), stream it, write
        the video and ``boxes.txt``; pause and stop take effect between frames."""
        several = len(run.boxes) > 1
        writer = VideoWriter(run.folder / "tracked.mp4", fps=video.fps)
        done = 0
        status, message = "done", ""
        backend = "torch" if run.keep_attention else self.backend
        options = {"keep_attention": True} if run.keep_attention else {}
        try:
            draw_attention = run.keep_attention
            frames = track_video(
                self._frames(video),
                run.boxes,
                self.model,
                device=self.device,
                fast=self.fast,
                backend=backend,
                dtype=self.dtype,
                **options,
            )
            halted = self._halted()
            for item in () if halted else frames:
                tracked = [
                    (r.box, r.score, getattr(r, "attention", None)) for r in item.results.values()
                ]
                shown = item.image
                for t, (box, score, _) in enumerate(tracked):
                    label = f"{t + 1}: {score:.2f}" if several else f"{score:.2f}"
                    shown = draw_box(shown, box, PALETTE[t % len(PALETTE)], label)
                writer.write(shown)
                draw_attention = self._publish(
                    run, item.index, item.image, tracked, item.seconds, draw_attention
                )
                done = item.index + 1
                halted = self._halted()
                if halted:
                    break
            if halted:
                status, message = "stopped", f"stopped after {done} frames"
        except Exception as exc:
            log.error("run %d stopped at frame %d: %s", run.id, done, exc)
            log.debug("traceback", exc_info=True)
            status, message = "error", f"tracking stopped at frame {done}: {exc}"
        self._finish(run, writer, several, status, message)

    def _publish(
        self, run: Run, index: int, frame: np.ndarray, tracked, dt: float, draw_attention: bool
    ) -> bool:
        """Record frame ``index``'s result and stream its JPEG (and, with ``draw_attention``,
        the attention pictures); returns whether to keep drawing them."""
        jpeg = encode_jpeg(frame)
        attention_jpegs: list[bytes | None] = []
        ranges: list[list[float] | None] = []
        # Frame 0 is the init frame: no search step, so nothing to draw.
        if draw_attention and index > 0 and self.attention_on:
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
        with self._state.lock:
            if index > 0:
                run.track_seconds += dt
            run.results.append(result)
            run.jpegs[index] = jpeg
            if "attention" in result:
                run.attention[index] = attention_jpegs
            for store in (run.jpegs, run.attention):
                while len(store) > KEEP_FRAMES:
                    store.popitem(last=False)
        return draw_attention

    def _finish(self, run: Run, writer: VideoWriter, several: bool, status: str, message: str):
        """Close the annotated video, write ``boxes.txt``, set the run's final status."""
        try:
            video_path = writer.close(complete=status == "done")
        except Exception as exc:
            log.error("run %d: cannot finish the video: %s", run.id, exc)
            video_path = None
        st = self._state
        with st.lock:
            results = list(run.results)
        boxes_path = None
        if results:
            boxes_path = run.folder / "boxes.txt"
            atomic_write_text(boxes_path, format_boxes_file(results, several))
        with st.lock:
            run.ended = time.perf_counter()
            run.video_path, run.boxes_path = video_path, boxes_path
            if st.run is run:
                st.status, st.message = status, message
                st.message_kind = "error" if status == "error" else "info"
        log.info("run %d %s: %d frames", run.id, status, len(results))
