"""The web app's state: one video and at most one tracking run, tracked in a background thread.

:class:`Session` knows nothing of HTTP: the server (:mod:`mixformer.app.server`) calls it and
turns :class:`AppError` into a one-line message in the page. Everything a run produces (the
annotated video, ``boxes.txt``, uploads, the demo clip's frames) lives under the session's
``workdir``, a temporary folder the command line removes on exit.

:class:`Session` is a thin facade over three pieces sharing one lock:

* :class:`~mixformer.app.state.AppState`: the status, the message, the open video and run;
* :class:`~mixformer.app.videos.VideoStore`: uploads (and their size limit), the demo clip;
* :class:`~mixformer.app.runs.RunController`: the tracking thread, pause/resume/stop, the
  streamed frames and the downloads.

Tracking goes through the public API only: :class:`~mixformer.Tracker` for one box,
:class:`~mixformer.MultiTracker` for several, both with the model's own settings
(``config=None``); frames are read with :class:`~mixformer.data.frames.FrameSource` (OpenCV, RGB)
and the annotated video is written with :mod:`mixformer.tracking.render`, as ``mixformer track``
does.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mixformer import TrackerConfig
from mixformer.app.runs import (
    AttentionRenderer,
    Run,
    RunController,
    attention_range,
    attention_renderer,
    check_boxes,
    format_boxes_file,
    run_view,
)
from mixformer.app.state import (
    BUSY,
    EDGE_TOLERANCE,
    KEEP_FRAMES,
    MAX_TARGETS,
    MIN_BOX_SIDE,
    STREAM_MAX_SIDE,
    AppError,
    AppState,
    Box,
    Video,
    display_name,
    encode_jpeg,
)
from mixformer.app.videos import VideoStore, video_view
from mixformer.data.frames import FrameSource

__all__ = [
    "BUSY",
    "EDGE_TOLERANCE",
    "KEEP_FRAMES",
    "MAX_TARGETS",
    "MIN_BOX_SIDE",
    "STREAM_MAX_SIDE",
    "AppError",
    "AttentionRenderer",
    "Box",
    "Run",
    "Session",
    "Video",
    "attention_range",
    "attention_renderer",
    "describe_weights",
    "display_name",
    "encode_jpeg",
    "format_boxes_file",
]

log = logging.getLogger(__name__)


def describe_weights(name: str | None, weights: str | Path | None) -> dict[str, Any]:
    """What the page says about the network: ``{"name", "weights", "random", "releases",
    "source"}``.

    Args:
        name: the model's preset name (None: built from a config).
        weights: as :func:`~mixformer.build_model` took them: None (random initialisation),
            ``"default"`` (the weights shipped with the package) or a file.
    """
    from mixformer.models import get_preset, list_models
    from mixformer.models.factory import default_weights_path

    releases: list[str] = []
    source = ""
    if name in list_models():
        preset = get_preset(name)
        releases = list(preset.files)
        source = preset.release_page
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
        backend, dtype: as for :class:`~mixformer.Tracker` (default ``"auto"``: what
            ``mixformer track`` runs); runs with the attention overlay use torch.
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
        backend: str = "auto",
        dtype: str = "auto",
    ) -> None:
        self.model = model
        self.workdir = Path(workdir)
        self.device = device
        self.fast = fast
        self._state = AppState()
        self.videos = VideoStore(self._state, self.workdir, max_upload_bytes)
        self.model_info = describe_weights(getattr(model, "name", None), weights)
        config = TrackerConfig.for_model(model)
        self.runs = RunController(
            self._state,
            model,
            self.workdir,
            device,
            fast,
            max(config.search_factor, config.template_factor),
            lambda video: self._frames(video),
            backend=backend,
            dtype=dtype,
        )

    # -- state -----------------------------------------------------------------------------
    @property
    def max_upload_bytes(self) -> int:
        """Largest upload accepted."""
        return self.videos.max_upload_bytes

    @property
    def attention_available(self) -> bool:
        """Whether the attention overlay can be drawn (see :func:`attention_renderer`)."""
        return self.runs.attention_available

    @property
    def attention_reason(self) -> str:
        """What the attention toggle's tooltip says (why it is off, or what it shows)."""
        return self.runs.attention_reason

    @property
    def _render_attention(self) -> AttentionRenderer | None:
        return self.runs.render_attention

    @_render_attention.setter
    def _render_attention(self, render: AttentionRenderer | None) -> None:
        self.runs.render_attention = render

    @property
    def status(self) -> str:
        """``empty``, ``uploading``, ``loading``, ``ready``, ``running``, ``paused``, ``done``,
        ``stopped`` or ``error``."""
        return self._state.status

    def snapshot(self, since: int = 0, run_id: int | None = None) -> dict[str, Any]:
        """The page's view of the state, as JSON-ready data.

        Args:
            since: results of frames from this index on are included (the page has the rest).
            run_id: the run the page's results belong to; for another run all are included.
        """
        st, runs = self._state, self.runs
        with st.lock:
            video, run = st.video, st.run
            return {
                "status": st.status,
                "message": st.message,
                "message_kind": st.message_kind,
                "limits": {"max_upload_bytes": self.max_upload_bytes, "max_targets": MAX_TARGETS},
                "attention": {
                    "available": runs.attention_available,
                    "reason": runs.attention_reason,
                    "on": runs.attention_on,
                    "target": runs.attention_target,
                },
                "model": dict(self.model_info),
                "upload": dict(st.upload) if st.upload else None,
                "loading": dict(st.loading) if st.loading else None,
                "video": video_view(video) if video is not None else None,
                "run": run_view(run, since, run_id) if run is not None else None,
            }

    # -- videos (see VideoStore) -----------------------------------------------------------
    def begin_upload(self, name: str, total: int | None) -> Path:
        """:meth:`VideoStore.begin_upload`: where to write an upload of ``total`` bytes."""
        return self.videos.begin_upload(name, total)

    def upload_progress(self, received: int) -> None:
        """:meth:`VideoStore.upload_progress`."""
        self.videos.upload_progress(received)

    def abort_upload(self, path: Path, message: str = "") -> None:
        """:meth:`VideoStore.abort_upload`."""
        self.videos.abort_upload(path, message)

    def finish_upload(self, path: Path) -> dict[str, Any]:
        """:meth:`VideoStore.finish_upload`, then the :meth:`snapshot`."""
        self.videos.finish_upload(path)
        return self.snapshot()

    def load_demo(self, seed: int = 7, num_frames: int = 80) -> dict[str, Any]:
        """:meth:`VideoStore.load_demo`, then the :meth:`snapshot`."""
        self.videos.load_demo(seed, num_frames)
        return self.snapshot()

    def first_frame(self) -> bytes:
        """:meth:`VideoStore.first_frame`."""
        return self.videos.first_frame()

    # -- runs (see RunController) ----------------------------------------------------------
    def check_boxes(self, boxes: Any) -> list[Box]:
        """:func:`~mixformer.app.runs.check_boxes` on the open video."""
        return check_boxes(boxes, self._state.video, self.runs.box_factor)

    def start(self, boxes: Any) -> dict[str, Any]:
        """:meth:`RunController.start`, then the :meth:`snapshot`."""
        self.runs.start(boxes)
        return self.snapshot()

    def set_attention(self, on: bool, target: int | None = None) -> None:
        """:meth:`RunController.set_attention`."""
        self.runs.set_attention(on, target)

    def pause(self) -> None:
        """:meth:`RunController.pause`."""
        self.runs.pause()

    def resume(self) -> None:
        """:meth:`RunController.resume`."""
        self.runs.resume()

    def stop(self) -> None:
        """:meth:`RunController.stop`."""
        self.runs.stop()

    def wait(self, timeout: float | None = None) -> bool:
        """:meth:`RunController.wait`: True when no run is left running."""
        return self.runs.wait(timeout)

    def shutdown(self, timeout: float = 10.0) -> None:
        """:meth:`RunController.shutdown` (the server's shutdown)."""
        self.runs.shutdown(timeout)

    def frame(self, run_id: int, index: int, attention: bool = False, target: int = 0) -> bytes:
        """:meth:`RunController.frame`: a streamed frame as JPEG."""
        return self.runs.frame(run_id, index, attention, target)

    def download(self, what: str) -> Path:
        """:meth:`RunController.download`: the last run's ``boxes`` file or ``video``."""
        return self.runs.download(what)

    def _frames(self, video: Video) -> Iterator[np.ndarray]:
        """The frames a run tracks (tests replace this to slow a run down or break it)."""
        return iter(FrameSource(video.path))
