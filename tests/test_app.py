"""``mixformer app`` at the HTTP level: Starlette's TestClient, a real socket, and the CLI.

The page itself is driven in a real browser by tests/test_app_browser.py.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import MICRO
from mixformer import MultiTracker, Tracker, build_model
from mixformer.cli import main
from mixformer.data.frames import FrameSource


def _require(module: str) -> None:
    """Import ``module`` or skip; under CI=true a missing ``app`` extra fails instead."""
    try:
        __import__(module)
    except (ImportError, RuntimeError) as exc:  # the test client without its HTTP client
        reason = f"{module}: {exc} (pip install -e '.[test,app]')"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true: {reason}", pytrace=False)
        pytest.skip(reason, allow_module_level=True)


for _module in ("starlette", "uvicorn", "starlette.testclient"):
    _require(_module)

from starlette.testclient import TestClient  # noqa: E402

from mixformer.app.server import create_app  # noqa: E402
from mixformer.app.session import KEEP_FRAMES, MAX_TARGETS, Session  # noqa: E402

HEADERS = {"X-Requested-With": "mixformer"}
W, H, N = 128, 96, 10


def write_video(path: Path, frames: int = N, size: tuple[int, int] = (W, H)) -> Path:
    """A small mp4 of a textured square moving over a noisy background."""
    w, h = size
    rng = np.random.default_rng(3)
    background = cv2.GaussianBlur(rng.integers(0, 160, (h, w, 3), dtype=np.uint8), (7, 7), 0)
    patch = rng.integers(120, 255, (24, 24, 3), dtype=np.uint8)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (w, h))
    for i in range(frames):
        frame = background.copy()
        x, y = 20 + 3 * i, 30 + i
        frame[y : y + 24, x : x + 24] = patch
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture(autouse=True)
def _keep_threads() -> Iterator[None]:
    """Undo the thread count ``main(["app", ...])`` sets (``--threads``: torch's count and the
    recorded choice in :mod:`mixformer.tracking.threads`), so later tests do not inherit it."""
    import torch

    from mixformer.tracking import threads

    old, chosen = torch.get_num_threads(), list(threads._CHOSEN)
    yield
    torch.set_num_threads(old)
    threads._CHOSEN[:] = chosen


@pytest.fixture(scope="module")
def model():
    return build_model("mixformer-tiny", **MICRO)


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("video") / "clip.mp4")


@pytest.fixture
def session(model, tmp_path) -> Iterator[Session]:
    work = tmp_path / "work"
    work.mkdir()
    s = Session(model, work, max_upload_bytes=2**20)
    yield s
    s.shutdown()


@pytest.fixture
def client(session) -> Iterator[TestClient]:
    with TestClient(create_app(session), headers=HEADERS) as c:
        yield c


def _upload(client: TestClient, path: Path, name: str | None = None):
    return client.post("/api/upload", params={"name": name or path.name}, content=path.read_bytes())


def _expected_boxes(model, video: Path, box) -> list[tuple[float, ...]]:
    """What Tracker gives on the same frames (the app's options: model settings, fast path)."""
    tracker = Tracker(model, fast=True)
    out = []
    for i, frame in enumerate(FrameSource(video)):
        res = tracker.init(frame, box) if i == 0 else tracker.update(frame)
        out.append(res.box)
    return out


def _finish(client: TestClient, session: Session) -> dict:
    assert session.wait(60), "the run did not finish"
    return client.get("/api/state").json()


# -- the page's files ----------------------------------------------------------------------
def test_page_and_its_files_are_served_with_a_strict_policy(client):
    page = client.get("/")
    assert page.status_code == 200
    assert '<canvas id="view"' in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "http" not in page.text.replace("http-equiv", "")  # no CDN, nothing external
    for name, kind in (("app.js", "javascript"), ("style.css", "css")):
        r = client.get(f"/static/{name}")
        assert r.status_code == 200 and kind in r.headers["content-type"]
        assert "//cdn" not in r.text and "https://" not in r.text


@pytest.mark.parametrize(
    "path",
    [
        "/static/%2e%2e/session.py",
        "/static/..%2fsession.py",
        "/static/..%2F..%2F..%2Fpyproject.toml",
        "/static/server.py",
        "/static/index.html%00.py",
        "/api/download/..%2fboxes.txt",
        "/api/download/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "//etc/passwd",
        "/static/",
    ],
)
def test_only_its_own_files_are_served(client, path):
    r = client.get(path)
    assert r.status_code == 404, (path, r.status_code)
    assert r.json() == {"error": "not found"}
    assert "def create_app" not in r.text and "root:" not in r.text


def test_dot_dot_paths_on_a_real_socket_are_refused(session):
    """Raw ``..`` segments (which HTTP clients normalise away) sent over a socket."""
    import uvicorn

    from mixformer.cli.app import bind

    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(session), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.time() + 20
        while not server.started and time.time() < deadline:
            time.sleep(0.05)
        for path in (
            "/static/../session.py",
            "/static/../../mixformer/app/server.py",
            "/static/../../../../../../etc/passwd",
            "/../../../../etc/passwd",
        ):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
                conn.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
                reply = b""
                while b"\r\n\r\n" not in reply or not reply.endswith(b"}"):
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    reply += chunk
            head = reply.split(b"\r\n", 1)[0]
            assert b" 404 " in head, (path, head)
            assert b"def create_app" not in reply and b"root:" not in reply
    finally:
        server.should_exit = True
        thread.join(20)
        sock.close()


def test_post_without_the_app_header_is_refused(session):
    with TestClient(create_app(session)) as bare:  # no X-Requested-With
        r = bare.post("/api/demo")
    assert r.status_code == 403
    assert "x-requested-with" in r.json()["error"]
    assert session.status == "empty"


def test_unexpected_host_header_is_refused(session):
    app = create_app(session, allowed_hosts=["127.0.0.1", "localhost"])
    with TestClient(app, base_url="http://evil.example") as c:
        assert c.get("/api/state").status_code == 400
    with TestClient(app, base_url="http://127.0.0.1:7860") as c:
        assert c.get("/api/state").status_code == 200


# -- uploads -------------------------------------------------------------------------------
def test_a_text_file_is_not_a_video(client, session, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("this is not a video\n" * 50)
    r = _upload(client, text)
    assert r.status_code == 415
    assert r.json()["error"].startswith("notes.txt is not a video")
    state = client.get("/api/state").json()
    assert state["status"] == "empty" and state["video"] is None
    assert state["message"] == r.json()["error"]
    assert list(session.workdir.iterdir()) == []  # the upload is gone


def test_a_bad_upload_keeps_the_previous_video(client, video, tmp_path):
    assert _upload(client, video).status_code == 200
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00\x01" * 1000)
    assert _upload(client, junk).status_code == 415
    state = client.get("/api/state").json()
    assert state["status"] == "ready" and state["video"]["name"] == "clip.mp4"
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    r = _upload(client, empty)
    assert r.status_code == 400 and r.json()["error"] == "empty.mp4 is empty"


def test_an_upload_over_the_limit_is_refused(client, session):
    r = client.post("/api/upload", params={"name": "big.mp4"}, content=b"\0" * (2**20 + 1))
    assert r.status_code == 413
    msg = r.json()["error"]
    assert "over the upload limit of 1 MB" in msg and "--max-upload-mb" in msg
    assert client.get("/api/state").json()["status"] == "empty"
    assert list(session.workdir.iterdir()) == []


def test_a_streamed_upload_is_cut_off_at_the_limit(client, session):
    def chunks():
        for _ in range(40):  # 40 x 64 KiB = 2.5 MiB, no Content-Length
            yield b"\0" * 65536

    r = client.post("/api/upload", params={"name": "big.mp4"}, content=chunks())
    assert r.status_code == 413
    assert "over the upload limit of 1 MB" in r.json()["error"]
    assert client.get("/api/state").json()["status"] == "empty"
    assert list(session.workdir.iterdir()) == []


def test_upload_names_are_not_paths(client, session, video):
    r = _upload(client, video, name="../../../etc/evil<script>.mp4")
    assert r.status_code == 200
    assert r.json()["video"]["name"] == "evil<script>.mp4"
    files = [p for p in session.workdir.rglob("*") if p.is_file()]
    assert [p.name for p in files] == ["upload"]
    assert all(session.workdir in p.parents for p in files)


def test_a_video_is_opened_and_its_first_frame_served(client, video):
    state = _upload(client, video).json()
    assert state["status"] == "ready"
    assert state["video"]["width"] == W and state["video"]["height"] == H
    jpeg = client.get("/api/first-frame.jpg")
    assert jpeg.headers["content-type"] == "image/jpeg"
    img = cv2.imdecode(np.frombuffer(jpeg.content, np.uint8), cv2.IMREAD_COLOR)
    first = next(iter(FrameSource(video)))
    assert img.shape == first.shape
    assert np.abs(cv2.cvtColor(img, cv2.COLOR_BGR2RGB).astype(int) - first).mean() < 4


def test_the_demo_clip(client):
    state = client.post("/api/demo").json()
    assert state["status"] == "ready"
    assert state["video"]["name"] == "demo clip"
    assert (state["video"]["width"], state["video"]["height"], state["video"]["frames"]) == (
        384,
        288,
        80,
    )
    img = cv2.imdecode(
        np.frombuffer(client.get("/api/first-frame.jpg").content, np.uint8), cv2.IMREAD_COLOR
    )
    assert img.shape == (288, 384, 3) and img.std() > 10


# -- boxes and runs ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "boxes, message",
    [
        ([[W + 5, 10, 20, 20]], f"is outside the {W}x{H} frame"),
        ([[-30, -30, 20, 20]], f"is outside the {W}x{H} frame"),
        ([[W - 10, 10, 20, 20]], f"is outside the {W}x{H} frame"),
        ([[10, 10, 0, 20]], "is 0x20 px: drag a box"),
        ([[10, 10, 1, 1]], "is 1x1 px"),
        ([[10, 10, 20, 20], [5, 5, 0, 0]], "box 2 is 0x0 px"),
        ([[10, 10, "a", 20]], "must be 4 numbers"),
        ([[10, 10, 20]], "must be 4 numbers"),
        ([], "draw a box"),
        (None, "draw a box"),
    ],
)
def test_bad_boxes_get_a_message(client, video, boxes, message):
    _upload(client, video)
    r = client.post("/api/track", json={"boxes": boxes})
    assert r.status_code == 400
    assert message in r.json()["error"], r.json()
    assert client.get("/api/state").json()["status"] == "ready"


def test_tracking_before_a_video_and_a_body_that_is_not_json(client):
    r = client.post("/api/track", json={"boxes": [[1, 1, 5, 5]]})
    assert r.status_code == 400 and "open a video" in r.json()["error"]
    r = client.post("/api/track", content=b"{not json")
    assert r.status_code == 400 and "must be JSON" in r.json()["error"]


def _blocking_frames(session: Session, gate: threading.Event, stop_after: int | None = None):
    """Make the session's runs wait at frame 2 until ``gate`` is set."""
    original = session._frames

    def frames(video):
        for i, frame in enumerate(original(video)):
            if i == 2:
                assert gate.wait(30)
            yield frame

    session._frames = frames


def test_a_second_run_while_one_runs_is_refused(client, session, video):
    _upload(client, video)
    gate = threading.Event()
    _blocking_frames(session, gate)
    first = client.post("/api/track", json={"boxes": [[20, 30, 24, 24]]})
    assert first.status_code == 200 and first.json()["status"] == "running"
    again = client.post("/api/track", json={"boxes": [[20, 30, 24, 24]]})
    assert again.status_code == 409
    assert "a tracking run is in progress" in again.json()["error"]
    upload = _upload(client, video)
    assert upload.status_code == 409
    assert client.post("/api/demo").status_code == 409
    gate.set()
    state = _finish(client, session)
    assert state["status"] == "done" and state["run"]["id"] == first.json()["run"]["id"]
    assert client.post("/api/track", json={"boxes": [[20, 30, 24, 24]]}).status_code == 200


def test_pause_resume_and_stop(client, session, video):
    _upload(client, video)
    gate = threading.Event()
    _blocking_frames(session, gate)
    client.post("/api/track", json={"boxes": [[20, 30, 24, 24]]})
    assert client.post("/api/resume").status_code == 409
    assert client.post("/api/pause").json()["status"] == "paused"
    gate.set()
    time.sleep(0.5)
    paused = client.get("/api/state").json()
    assert paused["status"] == "paused" and paused["run"]["done"] <= 3
    assert client.post("/api/resume").json()["status"] == "running"
    client.post("/api/pause")
    assert client.post("/api/stop").status_code == 200
    state = _finish(client, session)
    assert state["status"] == "stopped" and state["message"].startswith("stopped after")
    done = state["run"]["done"]
    assert 1 <= done < N
    boxes = client.get("/api/download/boxes.txt").text.splitlines()
    assert len(boxes) == done
    video_out = client.get("/api/download/tracked.mp4")
    assert video_out.status_code == 200
    assert "tracked.partial.mp4" in video_out.headers["content-disposition"]
    assert client.post("/api/stop").status_code == 409


def test_downloads_hold_what_the_tracker_gives(client, session, video, model, tmp_path):
    _upload(client, video)
    assert client.get("/api/download/boxes.txt").status_code == 404
    box = [20, 30, 24, 24]
    run = client.post("/api/track", json={"boxes": [box]}).json()["run"]
    state = _finish(client, session)
    assert state["status"] == "done" and state["run"]["done"] == N
    expected = _expected_boxes(model, video, box)
    shown = [r["boxes"][0] for r in state["run"]["results"]]
    np.testing.assert_allclose(shown, expected, atol=1e-6)
    assert state["run"]["fps"] > 0
    text = client.get("/api/download/boxes.txt")
    assert text.status_code == 200 and "attachment" in text.headers["content-disposition"]
    assert text.text == "".join(",".join(f"{v:.2f}" for v in b) + "\n" for b in expected)
    out = tmp_path / "tracked.mp4"
    out.write_bytes(client.get("/api/download/tracked.mp4").content)
    frames = list(FrameSource(out))
    assert len(frames) == N and frames[0].shape == (H, W, 3)
    # Streamed frames: the newest are kept, as JPEG of the video's size.
    last = client.get(f"/api/frame/{run['id']}/{N - 1}.jpg")
    img = cv2.imdecode(np.frombuffer(last.content, np.uint8), cv2.IMREAD_COLOR)
    assert img.shape == (H, W, 3)
    assert client.get(f"/api/frame/{run['id'] + 99}/0.jpg").status_code == 404
    assert client.get(f"/api/frame/{run['id']}/{N + KEEP_FRAMES}.jpg").status_code == 404
    # Incremental state: only the frames the page does not have yet.
    part = client.get("/api/state", params={"since": N - 2, "run": run["id"]}).json()["run"]
    assert part["since"] == N - 2 and [r["frame"] for r in part["results"]] == [N - 2, N - 1]


def test_several_boxes_run_as_one_multitracker(client, session, video, model):
    _upload(client, video)
    boxes = [[20, 30, 24, 24], [70, 10, 30, 20]]
    client.post("/api/track", json={"boxes": boxes})
    state = _finish(client, session)
    assert state["status"] == "done"
    multi = MultiTracker(model, fast=True)
    expected = []
    for i, frame in enumerate(FrameSource(video)):
        if i == 0:
            ids = [multi.add(frame, b) for b in boxes]
            expected.append([tuple(map(float, b)) for b in boxes])
        else:
            out = multi.update(frame)
            expected.append([out[t].box for t in ids])
    shown = [r["boxes"] for r in state["run"]["results"]]
    np.testing.assert_allclose(shown, expected, atol=1e-6)
    lines = client.get("/api/download/boxes.txt").text.splitlines()
    assert len(lines) == 2 * N
    assert lines[3] == "1,1," + ",".join(f"{v:.2f}" for v in expected[1][1])


def test_a_failing_run_reports_one_line(client, session, video):
    _upload(client, video)
    original = session._frames

    def frames(video):
        for i, frame in enumerate(original(video)):
            yield frame if i < 3 else frame[:-8]  # the size changes at frame 3

    session._frames = frames
    client.post("/api/track", json={"boxes": [[20, 30, 24, 24]]})
    state = _finish(client, session)
    assert state["status"] == "error"
    assert state["message"].startswith("tracking stopped at frame 3: frame size changed")
    assert "Traceback" not in state["message"] and "\n" not in state["message"]
    assert client.get("/api/download/boxes.txt").text.count("\n") == 3


def test_an_internal_error_is_one_line_json(session):
    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire\nsecond line")

    session.load_demo = broken
    with TestClient(create_app(session), headers=HEADERS, raise_server_exceptions=False) as c:
        r = c.post("/api/demo")
    assert r.status_code == 500
    assert r.json() == {"error": "internal error: RuntimeError: disk on fire"}


# -- the command line ----------------------------------------------------------------------
def test_missing_app_extra_is_one_line(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "starlette", None)

    def refuse(args):  # noqa: ANN001, ANN202
        raise AssertionError("the model was loaded before the extra was checked")

    monkeypatch.setattr("mixformer.cli.app.load_model_from_args", refuse)
    assert main(["app"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("mixformer app: error: starlette is not installed")
    assert "pip install 'mixformer[app]'" in lines[0]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--max-upload-mb", "0"], "--max-upload-mb must be positive"),
        (["--port", "70000"], "--port must be between 0 and 65535"),
        (["--model", "nope"], "unknown model 'nope'"),
        (["--backend", "onnxruntime", "--plain"], "--plain needs --backend torch"),
        (["--backend", "onnxruntime", "--dtype", "bf16"], "--backend onnxruntime runs fp32"),
    ],
)
def test_bad_options_are_one_line(argv, message, monkeypatch, capsys):
    monkeypatch.setattr("mixformer.cli.app.load_model_from_args", lambda args: None)
    assert main(["app", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_a_port_in_use_is_one_line(monkeypatch, capsys):
    from mixformer.cli.app import bind

    taken = bind("127.0.0.1", 0)
    try:
        port = taken.getsockname()[1]
        monkeypatch.setattr("mixformer.cli.app.load_model_from_args", lambda args: None)
        assert main(["app", "--port", str(port)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [
            f"mixformer app: error: port {port} on 127.0.0.1 is in use: pick another with --port"
        ]
    finally:
        taken.close()


def test_allowed_hosts():
    from mixformer.cli.app import allowed_hosts

    assert "localhost" in allowed_hosts("127.0.0.1")
    assert allowed_hosts("0.0.0.0") is None


def test_the_command_serves_and_cleans_up_on_ctrl_c(tmp_path):
    env = dict(os.environ, TMPDIR=str(tmp_path), PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen(
        [sys.executable, "-m", "mixformer", "app", "--port", "0", "--threads", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("mixformer app: serving http://127.0.0.1:"), (
            line + proc.stderr.read()
        )
        url = line.split()[3]
        with urllib.request.urlopen(url, timeout=10) as page:
            assert page.status == 200 and b"MixFormer" in page.read()
        work = [p for p in tmp_path.iterdir() if p.name.startswith("mixformer-app-")]
        assert len(work) == 1
        demo = urllib.request.Request(url + "api/demo", method="POST", headers=HEADERS)
        with urllib.request.urlopen(demo, timeout=60) as r:
            assert r.status == 200 and any(work[0].iterdir())
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode in (0, 130), err
    assert "Traceback" not in err, err
    assert not work[0].exists()


# -- the attention overlay -----------------------------------------------------------------
def test_attention_toggle_is_refused_when_it_cannot_be_drawn(client, session, monkeypatch):
    monkeypatch.setattr(session, "_render_attention", None)
    state = client.get("/api/state").json()
    assert state["attention"]["available"] is False
    r = client.post("/api/options", json={"attention": True})
    assert r.status_code == 400 and r.json()["error"] == session.attention_reason
    assert client.post("/api/options", json={"attention": "yes"}).status_code == 400
    assert client.post("/api/options", json={"attention": False}).status_code == 200


@pytest.mark.parametrize("boxes", [[[20, 30, 24, 24]], [[20, 30, 24, 24], [70, 10, 30, 20]]])
def test_attention_pictures_are_streamed_when_on(client, session, video, monkeypatch, boxes):
    """The plumbing, with a stand-in renderer: the tracker's attention of every target goes to
    the renderer, and its picture (cropped to the frame) is what the page gets."""
    calls = []

    def render(attention, frame):
        calls.append(attention)
        out = np.zeros((frame.shape[0] + 24, frame.shape[1], 3), np.uint8)
        out[: frame.shape[0]] = (255, 0, 0)
        return out

    monkeypatch.setattr(session, "_render_attention", render)
    _upload(client, video)
    assert client.post("/api/options", json={"attention": True}).json()["attention"]["on"]
    run = client.post("/api/track", json={"boxes": boxes}).json()["run"]
    assert run["attention"] is True
    state = _finish(client, session)
    assert state["status"] == "done"
    assert len(calls) == len(boxes) * (N - 1) and all(c is not None for c in calls)

    def get(index, attention):
        r = client.get(f"/api/frame/{run['id']}/{index}.jpg", params={"attention": attention})
        return cv2.cvtColor(cv2.imdecode(np.frombuffer(r.content, np.uint8), 1), cv2.COLOR_BGR2RGB)

    picture = get(N - 1, 1)
    assert (
        picture.shape == (H, W, 3) and picture[..., 0].mean() > 240 and picture[..., 2].max() < 40
    )
    plain = get(N - 1, 0)
    assert plain[..., 2].mean() > 40
    np.testing.assert_array_equal(get(0, 1), get(0, 0))  # frame 0 has no search attention


def test_the_real_attention_renderer(client, session, video):
    from mixformer.app.session import attention_renderer

    render, reason = attention_renderer()
    if render is None:
        pytest.skip(reason)
    _upload(client, video)
    client.post("/api/options", json={"attention": True})
    run = client.post("/api/track", json={"boxes": [[20, 30, 24, 24]]}).json()["run"]
    state = _finish(client, session)
    assert state["status"] == "done" and state["message"] == ""
    r = client.get(f"/api/frame/{run['id']}/{N - 1}.jpg", params={"attention": 1})
    picture = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR)
    plain = client.get(f"/api/frame/{run['id']}/{N - 1}.jpg").content
    assert picture.shape == (H, W, 3) and r.content != plain


@pytest.mark.parametrize("boxes", [[[20, 30, 24, 24], [70, 10, 30, 20]]])
def test_every_target_gets_its_own_attention_picture(client, session, video, monkeypatch, boxes):
    """Several targets: one picture each, drawn on the plain frame (no map paints over another
    target's), with the [min, max] of its colour scale in the result; the page picks one."""
    seen = []

    def render(attention, frame):
        seen.append(frame.copy())
        out = frame.copy()
        out[:] = (255, 0, 0) if attention.box[0] < 50 else (0, 0, 255)  # target 1 red, 2 blue
        return out

    monkeypatch.setattr(session, "_render_attention", render)
    _upload(client, video)
    r = client.post("/api/options", json={"attention": True, "target": 1})
    assert r.json()["attention"]["target"] == 1
    run = client.post("/api/track", json={"boxes": boxes}).json()["run"]
    state = _finish(client, session)
    assert state["status"] == "done"
    assert not any((f == (255, 0, 0)).all() or (f == (0, 0, 255)).all() for f in seen)
    last = state["run"]["results"][-1]
    assert len(last["attention"]) == 2
    assert all(lo <= hi for lo, hi in last["attention"])
    assert "attention" not in state["run"]["results"][0]  # the init frame has none

    def get(target):
        r = client.get(
            f"/api/frame/{run['id']}/{N - 1}.jpg", params={"attention": 1, "target": target}
        )
        return cv2.cvtColor(cv2.imdecode(np.frombuffer(r.content, np.uint8), 1), cv2.COLOR_BGR2RGB)

    red, blue = get(0), get(1)
    assert red[..., 0].mean() > 240 and red[..., 2].mean() < 20
    assert blue[..., 2].mean() > 240 and blue[..., 0].mean() < 20
    r = client.post("/api/options", json={"attention": True, "target": MAX_TARGETS})
    assert r.status_code == 400 and "attention target" in r.json()["error"]
    assert client.post("/api/options", json={"attention": True, "target": "1"}).status_code == 400


def test_the_state_names_the_model_its_weights_and_both_frame_rates(client, session, video):
    state = client.get("/api/state").json()
    assert state["model"]["name"] == "mixformer-tiny"
    assert state["model"]["weights"] == "shipped with the package"
    assert state["model"]["random"] is False
    _upload(client, video)
    client.post("/api/track", json={"boxes": [[20, 30, 24, 24]]})
    run = _finish(client, session)["run"]
    # network + tracker only, and end to end (decoding, drawing, encoding): both reported
    assert run["fps"] > 0 and run["fps_end_to_end"] > 0


def test_random_weights_are_said_in_the_state(model, tmp_path):
    from mixformer.app.session import describe_weights

    s = Session(model, tmp_path, weights=None)
    info = s.snapshot()["model"]
    assert info["random"] is True and "random" in info["weights"]
    info = describe_weights("mixformerv2-s", None)
    assert info["releases"] == ["mixformerv2_small.pth.tar"]
    assert info["source"] == "official MixFormerV2 release (github.com/MCG-NJU/MixFormerV2)"
    info = describe_weights("mixformer-22k", tmp_path / "mixformer_cvt_online_22k.pth.tar")
    assert info["random"] is False and info["weights"] == "file mixformer_cvt_online_22k.pth.tar"
    assert info["source"] == "official MixFormer release (github.com/MCG-NJU/MixFormer)"


def test_the_command_tells_the_page_its_weights(monkeypatch):
    """``mixformer app`` passes the weights it loaded to the session (shown in the page)."""
    import argparse

    from mixformer.cli.app import _weights_of

    def ns(model, weights=None):
        return argparse.Namespace(model=model, weights=weights)

    assert _weights_of(ns("mixformer-tiny")) == "default"
    assert _weights_of(ns("mixformer-22k")) is None
    assert _weights_of(ns("mixformer-22k", "x.pth.tar")) == "x.pth.tar"


def test_runs_use_the_sessions_backend_and_dtype_and_torch_for_attention(
    model, video, tmp_path, monkeypatch
):
    """``mixformer app --backend B --dtype D`` reaches every run's trackers; a run with the
    attention overlay uses torch (the only backend that records attention)."""
    import mixformer.app.runs as runs_mod

    seen = []
    original = runs_mod.track_video

    def spy(*args, **kwargs):
        seen.append((kwargs["backend"], kwargs["dtype"], kwargs.get("keep_attention", False)))
        return original(*args, **{**kwargs, "backend": "torch"})  # no ONNX Runtime in-process

    monkeypatch.setattr(runs_mod, "track_video", spy)
    work = tmp_path / "work"
    work.mkdir()
    session = Session(model, work, backend="onnxruntime", dtype="fp32")
    monkeypatch.setattr(session, "_render_attention", lambda attention, frame: frame)
    try:
        with TestClient(create_app(session), headers=HEADERS) as client:
            _upload(client, video)
            client.post("/api/track", json={"boxes": [[20, 30, 24, 24]]})
            assert _finish(client, session)["status"] == "done"
            client.post("/api/options", json={"attention": True})
            client.post("/api/track", json={"boxes": [[20, 30, 24, 24]]})
            assert _finish(client, session)["status"] == "done"
    finally:
        session.shutdown()
    assert seen == [("onnxruntime", "fp32", False), ("torch", "fp32", True)]
