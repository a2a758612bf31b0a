"""The annotated videos the package writes play in a browser's ``<video>`` (Debian's chromium).

Issue 22: OpenCV's MPEG-4 Part 2 (``mp4v``) files, which ``mixformer track --out`` and the web
app's "Download video" used to give, fail in browsers with MediaError code 4
(MEDIA_ERR_SRC_NOT_SUPPORTED). :class:`mixformer.tracking.render.VideoWriter` now encodes H.264
(VP9 for ``.webm``) through PyAV. These tests load such files in chromium (headless, through
Playwright) and check that each reaches ``readyState >= 2`` (HAVE_CURRENT_DATA) with a positive
duration and no error, and that an ``mp4v`` file (the writer's fallback without PyAV) does not,
so the check can fail. Without PyAV (or its libx264 encoder) the playing tests skip with the
reason; without playwright or chromium all skip, except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import functools
import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import missing_browser_stack
from mixformer.tracking import render
from mixformer.tracking.render import VideoWriter

W, H, N, FPS = 161, 121, 20, 10.0  # odd sizes: the writer pads them to even for yuv420p

# Load URL in a fresh <video> and report once it has data, fails, or 20 s pass.
PLAY_JS = """url => new Promise(resolve => {
    const v = document.createElement('video');
    v.muted = true;
    v.preload = 'auto';
    let done = false;
    const report = why => {
        if (done) return;
        done = true;
        resolve({why, readyState: v.readyState, duration: v.duration,
                 width: v.videoWidth, height: v.videoHeight,
                 error: v.error ? v.error.code : null,
                 message: v.error ? v.error.message : null});
    };
    v.addEventListener('loadeddata', () => report('loadeddata'));
    v.addEventListener('error', () => report('error'));
    setTimeout(() => report('timeout'), 20000);
    v.src = url;
    document.body.appendChild(v);
})"""


def _need_pyav() -> None:
    try:
        import av
    except ImportError:
        pytest.fail("PyAV, a dependency of the package, is not installed (pip install -e .)")
    if "libx264" not in av.codecs_available:
        pytest.skip("PyAV has no libx264 encoder: the writer falls back to MPEG-4 Part 2")


@pytest.fixture(scope="module")
def browser(chromium):
    return chromium


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base's name
        pass


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[tuple[Path, str]]:
    """``(folder, url)``: a folder served over HTTP from a thread (``.mp4`` as ``video/mp4``)."""
    folder = tmp_path_factory.mktemp("served")
    handler = functools.partial(_QuietHandler, directory=str(folder))
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    thread.join(10)
    srv.server_close()


@pytest.fixture
def page(browser, served):
    context = browser.new_context()
    pg = context.new_page()
    pg.goto(served[1] + "/")
    yield pg
    context.close()


def _frames(n: int = N) -> list[np.ndarray]:
    """A moving green square on a blue-grey background (RGB, odd size)."""
    out = []
    for i in range(n):
        frame = np.full((H, W, 3), (40, 80, 120), np.uint8)
        cv2.rectangle(frame, (10 + 4 * i, 20), (40 + 4 * i, 60), (0, 200, 0), -1)
        out.append(frame)
    return out


def _write(path: Path) -> VideoWriter:
    writer = VideoWriter(path, fps=FPS)
    for frame in _frames():
        writer.write(frame)
    assert writer.close() == path
    return writer


def _play(pg, url: str) -> dict:
    return pg.evaluate(PLAY_JS, url)


def _assert_plays(state: dict, duration: float | None = N / FPS) -> None:
    assert state["error"] is None, f"chromium cannot play it: {state}"
    assert state["readyState"] >= 2, state  # HAVE_CURRENT_DATA
    assert state["duration"] > 0, state
    if duration is not None:
        assert state["duration"] == pytest.approx(duration, abs=0.15), state
    assert state["width"] > 0 and state["height"] > 0, state


@pytest.mark.parametrize("name", ["clip.mp4", "clip.webm"])
def test_the_writers_video_plays(page, served, name):
    """H.264 ``.mp4`` (what ``track --out`` and the app write) and VP9 ``.webm`` play."""
    _need_pyav()
    folder, url = served
    assert _write(folder / name).backend == "pyav"
    _assert_plays(_play(page, f"{url}/{name}"))


def test_mpeg4_part2_does_not_play(page, served, monkeypatch):
    """The writer's fallback without PyAV (OpenCV ``mp4v``) fails with MediaError code 4: the
    check above can tell a playable file from the old ones."""
    folder, url = served
    monkeypatch.setattr(render, "video_backend", lambda: "opencv")
    assert _write(folder / "old.mp4").backend == "opencv"
    assert cv2.VideoCapture(str(folder / "old.mp4")).isOpened()  # a valid file, just not for it
    state = _play(page, f"{url}/old.mp4")
    assert state["error"] == 4, state  # MEDIA_ERR_SRC_NOT_SUPPORTED
    assert state["readyState"] == 0, state


@pytest.fixture
def keep_threads() -> Iterator[None]:
    """Undo the thread count ``main(["track", ...])`` sets (torch's count and the choice
    recorded in :mod:`mixformer.tracking.threads`), so later tests do not inherit it."""
    import torch

    from mixformer.tracking import threads

    old, chosen = torch.get_num_threads(), list(threads._CHOSEN)
    yield
    torch.set_num_threads(old)
    threads._CHOSEN[:] = chosen


@pytest.mark.usefixtures("keep_threads")
def test_track_out_video_plays(page, served, tmp_path):
    """``mixformer track FRAMES --box ... --out x.mp4`` writes a video chromium plays."""
    _need_pyav()
    from mixformer.cli import main

    frames = tmp_path / "frames"
    frames.mkdir()
    for i, frame in enumerate(_frames()):
        cv2.imwrite(str(frames / f"{i + 1:05d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    folder, url = served
    out = folder / "tracked.mp4"
    args = ["track", str(frames), "--box", "10,20,30,40", "--model", "mixformer-tiny"]
    assert main([*args, "--out", str(out), "--boxes", str(tmp_path / "boxes.txt")]) == 0
    _assert_plays(_play(page, f"{url}/tracked.mp4"), duration=None)  # a folder's own frame rate


def test_app_download_plays(browser, tmp_path):
    """The app's ``GET /api/download/tracked.mp4`` (after tracking the demo clip) plays in the
    app's own page."""
    _need_pyav()
    try:
        import uvicorn
    except ImportError as exc:
        missing_browser_stack(f"the app extra is missing ({exc}; pip install -e '.[test,app]')")
    from mixformer import build_model
    from mixformer.app.server import create_app
    from mixformer.app.session import Session
    from mixformer.cli.app import allowed_hosts, bind, url_of

    session = Session(build_model("mixformer-tiny", weights="default"), tmp_path / "work")
    session.load_demo(num_frames=8)
    session.start([[150, 100, 60, 60]])
    assert session.wait(120), "tracking the demo clip did not finish"
    assert session.status == "done", session.snapshot()
    sock = bind("127.0.0.1", 0)
    app = create_app(session, allowed_hosts=allowed_hosts("127.0.0.1"))
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    context = browser.new_context()
    try:
        deadline = time.time() + 30
        while not srv.started and time.time() < deadline:
            time.sleep(0.05)
        assert srv.started, "the server did not start"
        pg = context.new_page()
        pg.goto(url_of(sock))
        state = _play(pg, url_of(sock).rstrip("/") + "/api/download/tracked.mp4")
        _assert_plays(state, duration=8 / 15.0)
    finally:
        context.close()
        srv.should_exit = True
        thread.join(30)
        sock.close()
        session.shutdown()
