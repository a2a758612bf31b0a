"""The web app's video store: uploads (with the size limit), the demo clip, the open video.

Files live in sub-folders of the session's ``workdir`` (``video-N``); a video that replaces
another removes the old one's folder and its run's.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import cv2

from mixformer.app.state import AppError, AppState, Video, display_name, encode_jpeg
from mixformer.data.frames import FrameSource

log = logging.getLogger(__name__)


def video_view(video: Video) -> dict[str, Any]:
    """The page's view of ``video`` (JSON-ready)."""
    return {
        "id": video.id,
        "name": video.name,
        "width": video.width,
        "height": video.height,
        "frames": video.frames,
        "fps": video.fps,
    }


class VideoStore:
    """Opens videos into an :class:`AppState`: uploads, checked with OpenCV, and the demo clip.

    Args:
        state: the shared state (the store sets its ``video``, ``upload``, ``loading``, status).
        workdir: an existing folder for the uploads and the demo clip's frames.
        max_upload_bytes: largest upload accepted.
    """

    def __init__(self, state: AppState, workdir: Path, max_upload_bytes: int) -> None:
        if max_upload_bytes <= 0:
            raise ValueError(f"max_upload_bytes must be positive, got {max_upload_bytes}")
        self._state = state
        self.workdir = workdir
        self.max_upload_bytes = int(max_upload_bytes)

    def begin_upload(self, name: str, total: int | None) -> Path:
        """Start receiving an upload of ``total`` bytes (None: unknown); returns where to write it.

        Raises:
            AppError: 409 while busy, 413 when ``total`` is over the limit.
        """
        st = self._state
        with st.lock:
            st.refuse_if_busy("open another video")
            if total is not None and total > self.max_upload_bytes:
                raise AppError(self._too_large(total), 413)
            folder = self.workdir / f"video-{st.next_id()}"
            folder.mkdir(parents=True)
            st.previous = st.status
            st.status = "uploading"
            st.message = ""
            st.upload = {"name": display_name(name), "received": 0, "total": total}
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
        st = self._state
        with st.lock:
            if st.upload is not None:
                st.upload["received"] = received

    def abort_upload(self, path: Path, message: str = "") -> None:
        """Drop a failed upload: remove its folder, go back to the previous state."""
        shutil.rmtree(path.parent, ignore_errors=True)
        st = self._state
        with st.lock:
            if st.status in ("uploading", "loading"):
                st.status = st.previous
            st.upload = None
            st.loading = None
            st.message, st.message_kind = message, "error"

    def finish_upload(self, path: Path) -> None:
        """Check that the received file is a readable video and make it the current one.

        Raises:
            AppError: 415 when OpenCV cannot read it as a video, 400 when it is empty or has
                one frame only; the upload is then dropped and the previous video kept.
        """
        st = self._state
        with st.lock:
            name = st.upload["name"] if st.upload else display_name(path.name)
            st.status = "loading"
            st.loading = {"what": f"checking {name}"}
        try:
            video = self._check(path, name)
        except AppError as exc:
            self.abort_upload(path, exc.message)
            raise
        except Exception as exc:
            log.debug("checking the upload failed", exc_info=True)
            self.abort_upload(path, f"cannot open {name}: {exc}")
            raise AppError(f"cannot open {name}: {exc}", 400) from exc
        self.set_video(video)

    def _check(self, path: Path, name: str) -> Video:
        """``path`` as a :class:`Video` (reading its first two frames)."""
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
        return Video(
            id=self._state.next_id(),
            name=name,
            path=path,
            folder=path.parent,
            width=int(first.shape[1]),
            height=int(first.shape[0]),
            frames=source.num_frames,
            fps=source.fps,
            first_jpeg=encode_jpeg(first),
        )

    def load_demo(self, seed: int = 7, num_frames: int = 80) -> None:
        """Make the built-in demo clip (``mixformer demo``'s photo composite) the current video.

        The frames are composited from the photos shipped with the package
        (:func:`mixformer.datagen.composite.demo_photos`) and written as PNG files, so the tracker
        reads them losslessly.

        Raises:
            AppError: 409 while busy.
        """
        from mixformer.datagen.composite import Corpus, demo_photos, make_composite_scene

        st = self._state
        with st.lock:
            st.refuse_if_busy("open the demo clip")
            st.previous = st.status
            st.status = "loading"
            st.message = ""
            st.loading = {"what": "making the demo clip", "done": 0, "total": num_frames}
            folder = self.workdir / f"video-{st.next_id()}"
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
                with st.lock:
                    st.loading = {"what": "making the demo clip", "done": i + 1}
                    st.loading["total"] = len(scene)
        except Exception as exc:
            log.debug("making the demo clip failed", exc_info=True)
            self.abort_upload(frames_dir, f"cannot make the demo clip: {exc}")
            raise AppError(f"cannot make the demo clip: {exc}", 500) from exc
        video = Video(
            id=st.next_id(),
            name="demo clip",
            path=frames_dir,
            folder=folder,
            width=int(first.shape[1]),
            height=int(first.shape[0]),
            frames=num_frames,
            fps=15.0,
            first_jpeg=encode_jpeg(first),
        )
        self.set_video(video)

    def set_video(self, video: Video) -> None:
        """Replace the current video (and drop the old one and its run's files)."""
        st = self._state
        with st.lock:
            old, run = st.video, st.run
            st.video, st.run = video, None
            st.status = "ready"
            st.upload = st.loading = None
            st.message = ""
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
        st = self._state
        with st.lock:
            if st.video is None:
                raise AppError("no video is open", 404)
            return st.video.first_jpeg
