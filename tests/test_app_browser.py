"""``mixformer app`` in a real browser: Playwright driving Debian's chromium (headless).

The server runs in a thread on a free port with the shipped ``mixformer-tiny``. The test uploads
a short generated video, draws a box with the mouse, tracks, and checks that the boxes the page
shows and the ``boxes.txt`` it downloads are what :class:`mixformer.Tracker` gives on the same
frames. Without playwright or chromium the tests skip, except under ``CI=true``, where they
fail (CI must not skip them silently). ``playwright install`` is never needed: the system's
chromium is used. With ``MIXFORMER_UPDATE_SCREENSHOT=1`` the screenshot replaces
``docs/app-screenshot.png`` (otherwise it goes to the test's temporary folder).
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import missing_browser_stack
from mixformer import Tracker, build_model
from mixformer.data.frames import FrameSource

SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "app-screenshot.png"
W, H, N = 320, 240, 20


@pytest.fixture(scope="module")
def browser(chromium):
    try:
        import starlette.testclient  # noqa: F401 - the app's extra
        import uvicorn  # noqa: F401
    except (ImportError, RuntimeError) as exc:
        missing_browser_stack(f"the app extra is missing ({exc}; pip install -e '.[test,app]')")
    return chromium


@pytest.fixture(scope="module")
def model():
    return build_model("mixformer-tiny", weights="default")


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> tuple[Path, tuple[float, ...]]:
    """A 20-frame 320x240 mp4 composited from the package's demo photos, and its first box."""
    from mixformer.datagen.composite import Corpus, demo_photos, make_composite_scene

    scene = make_composite_scene(Corpus(demo_photos(), "all"), 6, "plain", N, H, W, name="clip")
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (W, H))
    for i in range(len(scene)):
        writer.write(cv2.cvtColor(scene.render(i), cv2.COLOR_RGB2BGR))
    writer.release()
    return path, tuple(float(v) for v in scene.boxes[0])


@pytest.fixture(scope="module")
def app_server(browser, model, tmp_path_factory) -> Iterator[tuple[str, object]]:
    """``(url, session)`` of a server running in a thread."""
    import uvicorn

    from mixformer.app.server import create_app
    from mixformer.app.session import Session
    from mixformer.cli.app import allowed_hosts, bind, url_of

    session = Session(model, tmp_path_factory.mktemp("work"), max_upload_bytes=20 * 2**20)
    sock = bind("127.0.0.1", 0)
    app = create_app(session, allowed_hosts=allowed_hosts("127.0.0.1"))
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not srv.started and time.time() < deadline:
        time.sleep(0.05)
    assert srv.started, "the server did not start"
    yield url_of(sock), session
    srv.should_exit = True
    thread.join(30)
    sock.close()


@pytest.fixture
def server(app_server) -> str:
    return app_server[0]


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 820}, accept_downloads=True)
    pg = context.new_page()
    errors: list[str] = []
    foreign: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    pg.on("request", lambda req: None if req.url.startswith(server) else foreign.append(req.url))
    pg.goto(server)
    pg.wait_for_function("() => window.mixformerApp && window.mixformerApp.state !== null")
    yield pg
    context.close()
    # The browser logs every 4xx answer (the app's one-line errors, frames dropped from the
    # stream); nothing else may go wrong.
    assert [e for e in errors if "the server responded with a status of 4" not in e] == []
    assert foreign == [], "the page asked for something outside the app"


def _upload(pg, path: Path) -> None:
    pg.set_input_files("#file", str(path))


def _open_video(pg, action) -> None:
    """Run ``action`` (an upload, a click on "Open video…" or "demo clip") and wait until the page
    holds the video it opened: a new video id, ready, with its first frame loaded.

    The page's state from before (the module's server keeps the previous test's video, also
    ``ready``) must not pass for it: the page polls, so for a moment after the action it still
    shows the old video, and a box drawn then is dropped when the new one arrives."""
    before = pg.evaluate("window.mixformerApp.videoId")
    action()
    pg.wait_for_function(
        "(before) => { const a = window.mixformerApp; return a.videoId !== null && "
        "a.videoId !== before && a.state.status === 'ready' && a.firstFrame !== null; }",
        arg=before,
    )


def _drag(pg, box: tuple[float, ...]) -> None:
    """Drag the mouse over image box ``(x, y, w, h)`` on the frame canvas."""
    bb = pg.locator("#view").bounding_box()
    sx, sy = bb["width"] / W, bb["height"] / H
    x, y, w, h = box
    pg.mouse.move(bb["x"] + x * sx, bb["y"] + y * sy)
    pg.mouse.down()
    pg.mouse.move(bb["x"] + (x + w / 2) * sx, bb["y"] + (y + h / 2) * sy, steps=3)
    pg.mouse.move(bb["x"] + (x + w) * sx, bb["y"] + (y + h) * sy, steps=3)
    pg.mouse.up()


def _tracker_boxes(model, path: Path, box) -> list[tuple[float, ...]]:
    """What Tracker gives on the same frames, decoded the same way (FrameSource, RGB)."""
    tracker = Tracker(model, fast=True)  # the model's own settings and the app's fast path
    out = []
    for i, frame in enumerate(FrameSource(path)):
        out.append((tracker.init(frame, box) if i == 0 else tracker.update(frame)).box)
    return out


def test_bad_uploads_and_clicks_get_a_message(page, browser, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a video at all\n" * 40)
    _upload(page, text)
    message = page.locator("#message")
    message.wait_for(state="visible")
    page.wait_for_function(
        "() => document.querySelector('#message').textContent.includes('not a video')"
    )
    assert message.inner_text().startswith("notes.txt is not a video")
    assert "error" in message.get_attribute("class")
    assert "Traceback" not in page.content()
    assert page.locator("#track").is_disabled()
    # A page opened afterwards does not show this page's error.
    other = browser.new_context()
    fresh = other.new_page()
    fresh.goto(page.url)
    fresh.wait_for_function("() => window.mixformerApp && window.mixformerApp.state !== null")
    assert fresh.evaluate("window.mixformerApp.state.message").startswith("notes.txt")
    assert fresh.locator("#message").is_hidden()
    other.close()


def test_keyboard_opens_a_video_and_a_finger_draws_a_box(page, clip):
    """Tab reaches "Open video…" and Enter opens the file chooser; a touch drag (pointer
    events of pointerType 'touch') draws a box; the page names the model and its weights."""
    path, gt = clip
    assert page.locator("#model-name").inner_text() == "mixformer-tiny"
    assert page.locator("#model-weights").inner_text() == "shipped with the package"
    assert page.locator("#weights-warning").is_hidden()
    page.bring_to_front()  # the file chooser opens from the active tab only
    # Playwright asks the browser to report file choosers without waiting for the answer, so
    # the wait starts before the Tab presses: Enter must not come before the browser listens.
    with page.expect_file_chooser() as chooser:
        for _ in range(10):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.id") == "open":
                break
        assert page.evaluate("document.activeElement.id") == "open"
        page.keyboard.press("Enter")
    _open_video(page, lambda: chooser.value.set_files(str(path)))
    assert page.locator("#view").evaluate("el => getComputedStyle(el).touchAction") == "none"
    bb = page.locator("#view").bounding_box()
    sx, sy = bb["width"] / W, bb["height"] / H
    x, y, w, h = gt
    points = [(x, y, "pointerdown"), (x + w / 2, y + h / 2, "pointermove")]
    points += [(x + w, y + h, "pointermove"), (x + w, y + h, "pointerup")]
    for px, py, kind in points:
        page.locator("#view").dispatch_event(
            kind,
            {
                "pointerType": "touch",
                "pointerId": 7,
                "isPrimary": True,
                "button": 0,
                "clientX": bb["x"] + px * sx,
                "clientY": bb["y"] + py * sy,
                "bubbles": True,
            },
        )
    drawn = page.evaluate("window.mixformerApp.drawn")
    assert len(drawn) == 1
    np.testing.assert_allclose(drawn[0], gt, atol=1.01)


def test_track_a_drawn_box_like_the_tracker(page, clip, model, tmp_path):
    path, gt = clip
    _open_video(page, lambda: _upload(page, path))
    assert page.locator("#video-name").inner_text() == f"clip.mp4 ({W}x{H})"
    # A click without a drag is not a box.
    _drag(page, (gt[0], gt[1], 0.2, 0.2))
    page.wait_for_function(
        "() => document.getElementById('message').textContent.includes('drag to draw a box')",
        timeout=10_000,
    )
    assert page.evaluate("window.mixformerApp.drawn") == []
    _drag(page, gt)
    drawn = page.evaluate("window.mixformerApp.drawn")
    assert len(drawn) == 1
    np.testing.assert_allclose(drawn[0], gt, atol=1.01)  # mouse pixels, rounded
    # The attention toggle mirrors what the server can do.
    available = page.evaluate("window.mixformerApp.state.attention.available")
    assert page.locator("#attention").is_disabled() == (not available)
    if not available:
        assert "attention" in page.locator("#attention-label").get_attribute("title")

    page.click("#track")
    page.wait_for_function(
        "() => window.mixformerApp.state.status === 'done' && "
        f"window.mixformerApp.results.length === {N} && window.mixformerApp.shownIndex === {N - 1}",
        timeout=60_000,
    )
    expected = _tracker_boxes(model, path, drawn[0])
    results = page.evaluate("window.mixformerApp.results")
    assert [r["frame"] for r in results] == list(range(N))
    np.testing.assert_allclose([r["boxes"][0] for r in results], expected, atol=0.01)
    assert results[0]["boxes"][0] == drawn[0]

    # What the page shows for the last frame.
    cells = page.locator("#boxes tbody tr").first.locator("td").all_inner_texts()
    assert cells[1:5] == [f"{v:.2f}" for v in expected[-1]]
    assert page.locator("#frame-index").inner_text() == f"{N} of {N}"
    assert float(page.locator("#fps").inner_text()) > 0
    assert float(page.locator("#fps-total").inner_text()) > 0
    assert "network" in page.locator("#fps").evaluate("el => el.previousElementSibling.textContent")
    assert page.evaluate("window.mixformerApp.plotFrames") == N  # the axis ends at frame N
    assert page.locator("#progress-text").inner_text() == f"done: {N} of {N} frames"

    # The downloads.
    with page.expect_download() as info:
        page.click("#dl-boxes")
    rows = [
        [float(v) for v in line.split(",")]
        for line in Path(info.value.path()).read_text().splitlines()
    ]
    assert len(rows) == N
    np.testing.assert_allclose(rows, expected, atol=0.005 + 1e-9)  # 2 decimals
    with page.expect_download() as info:
        page.click("#dl-video")
    video = tmp_path / "tracked.mp4"
    shutil.copy(info.value.path(), video)
    frames = list(FrameSource(video))
    assert len(frames) == N and frames[0].shape == (H, W, 3)

    shot = tmp_path / "app-screenshot.png"
    page.screenshot(path=str(shot))
    img = cv2.imread(str(shot))
    assert img is not None and img.shape[1] == 1280 and img.std() > 10
    if os.environ.get("MIXFORMER_UPDATE_SCREENSHOT") == "1":
        from mixformer.utils import atomic_path

        with atomic_path(SCREENSHOT) as tmp:
            shutil.copy(shot, tmp)


def test_demo_clip_with_two_boxes_paused_and_resumed(page, app_server):
    session = app_server[1]
    original = session._frames

    def slow_frames(video):  # 80 frames take long enough to pause and resume
        for frame in original(video):
            time.sleep(0.02)
            yield frame

    session._frames = slow_frames
    _open_video(page, lambda: page.click("#demo"))
    assert page.locator("#video-name").inner_text() == "demo clip (384x288)"
    bb = page.locator("#view").bounding_box()
    scale = bb["width"] / 384
    for x, y in ((40, 40), (250, 150)):
        page.mouse.move(bb["x"] + x * scale, bb["y"] + y * scale)
        page.mouse.down()
        page.mouse.move(bb["x"] + (x + 50) * scale, bb["y"] + (y + 40) * scale, steps=4)
        page.mouse.up()
    assert len(page.evaluate("window.mixformerApp.drawn")) == 2
    assert page.locator("#boxes tbody tr").count() == 2
    try:
        page.click("#track")
        page.wait_for_function("() => window.mixformerApp.results.length >= 3")
        page.click("#pause")
        page.wait_for_function("() => window.mixformerApp.state.status === 'paused'")
        assert page.locator("#pause").inner_text() == "Resume"
        time.sleep(0.6)
        held = page.evaluate("window.mixformerApp.state.run.done")
        assert held < 80 and page.evaluate("window.mixformerApp.results.length") <= held + 1
        assert page.locator("#progress-text").inner_text().startswith("paused: ")
        page.click("#pause")
        page.wait_for_function("() => window.mixformerApp.state.status !== 'paused'")
    finally:
        session._frames = original
    page.wait_for_function(
        "() => window.mixformerApp.state.status === 'done' && "
        "window.mixformerApp.shownIndex === 79",
        timeout=60_000,
    )
    results = page.evaluate("window.mixformerApp.results")
    assert len(results) == 80 and all(len(r["boxes"]) == 2 for r in results)
    assert page.locator("#boxes tbody tr").count() == 2
    assert page.locator("#frame-index").inner_text() == "80 of 80"


def test_attention_overlay_toggle(page, clip):
    """Two nearby targets: one attention map each, the user picks the one shown, a colour-scale
    legend says whose map it is, and the two box labels do not cover each other."""
    if not page.evaluate("window.mixformerApp.state.attention.available"):
        pytest.skip(page.evaluate("window.mixformerApp.state.attention.reason"))
    path, gt = clip
    _open_video(page, lambda: _upload(page, path))
    page.check("#attention")
    page.wait_for_function("() => window.mixformerApp.state.attention.on")
    _drag(page, gt)
    _drag(page, (gt[0] + 6, gt[1], gt[2], gt[3]))  # labels at the same height, 6 px apart
    page.click("#track")
    page.wait_for_function(
        "() => window.mixformerApp.state.status === 'done' && window.mixformerApp.shownAttention"
        f" && window.mixformerApp.shownIndex === {N - 1}",
        timeout=60_000,
    )
    assert page.evaluate("window.mixformerApp.state.run.attention") is True
    (a, b) = page.evaluate("window.mixformerApp.labels")
    assert a[1] + a[3] <= b[1] or b[1] + b[3] <= a[1] or a[0] + a[2] <= b[0]
    assert page.locator("#attention-target-label").is_visible()
    assert page.locator("#attention-target option").all_inner_texts() == ["target 1", "target 2"]
    legend = page.locator("#attention-legend")
    assert legend.is_visible() and "target 1" in legend.inner_text()
    assert page.locator("#legend-max").inner_text().endswith("%")
    canvas = "document.querySelector('#view').toDataURL()"
    first = page.evaluate(f"() => {canvas}")
    page.select_option("#attention-target", "1")
    page.wait_for_function(
        "() => window.mixformerApp.shownTarget === 1 && window.mixformerApp.state.attention.target"
        " === 1"
    )
    page.wait_for_function(f"() => {canvas} !== {first!r}")
    assert "target 2" in legend.inner_text()
    with_attention = page.evaluate(f"() => {canvas}")
    page.uncheck("#attention")
    page.wait_for_function("() => !window.mixformerApp.shownAttention")
    page.wait_for_function(f"() => {canvas} !== {with_attention!r}")
    assert page.evaluate("window.mixformerApp.state.attention.on") is False
