"""Faults a probe found: OS errors (a path under a file, a full disk), bad ``--set`` values,
killed runs. Each ends in one ``mixformer COMMAND: error:`` line with exit code 2 (never a
traceback) and keeps the work already done.

In-process tests go through :func:`mixformer.cli.main`; the ones that need a real signal or a
file-size limit run the command in a subprocess.
"""

from __future__ import annotations

import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from mixformer.cli import build_parser, main

build_parser()  # import every command module before a test patches one (see test_cli_errors)


def _one_line_error(capsys: pytest.CaptureFixture[str], command: str) -> str:
    """The captured stderr, checked to be exactly one ``mixformer COMMAND: error:`` line."""
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"mixformer {command}: error: "), lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    """A generic benchmark of one 3-frame sequence."""
    data = tmp_path_factory.mktemp("synth") / "data"
    assert main(["synth", str(data), "--sequences", "1", "--frames", "3"] + SMALL) == 0
    return data


SMALL = ["--height", "48", "--width", "64"]


@pytest.fixture
def a_file(tmp_path) -> Path:
    path = tmp_path / "plain.txt"
    path.write_text("not a folder\n")
    return path


def test_synth_to_dev_null(capsys):
    assert main(["synth", "/dev/null/x", "--sequences", "1", "--frames", "2", *SMALL]) == 2
    assert "/dev/null" in _one_line_error(capsys, "synth")


def test_demo_to_dev_null(capsys):
    assert main(["demo", "--out", "/dev/null/x", "--frames", "2"]) == 2
    assert "/dev/null" in _one_line_error(capsys, "demo")


def test_export_onnx_to_dev_null(capsys):
    pytest.importorskip("onnx")
    assert main(["export", "onnx", "/dev/null/x"]) == 2
    assert "/dev/null" in _one_line_error(capsys, "export")


@pytest.mark.parametrize("where", ["file", "under-file"])
def test_evaluate_results_on_or_under_a_file(where, synth, a_file, capsys):
    results = a_file if where == "file" else a_file / "res"
    args = ["evaluate", "--dataset", "generic", "--root", str(synth), "--results", str(results)]
    assert main([*args, "--no-progress"]) == 2
    msg = _one_line_error(capsys, "evaluate")
    assert str(a_file) in msg
    assert a_file.read_text() == "not a folder\n"


def test_report_out_under_a_file(synth, tmp_path, a_file, capsys):
    res = tmp_path / "res"
    args = ["evaluate", "--dataset", "generic", "--root", str(synth), "--results", str(res)]
    assert main([*args, "--no-progress"]) == 0
    capsys.readouterr()
    args = ["report", str(res), "--dataset", "generic", "--root", str(synth)]
    assert main([*args, "--out", str(a_file / "rep")]) == 2
    assert str(a_file) in _one_line_error(capsys, "report")


def test_pack_onto_a_folder_or_under_a_file(tmp_path, a_file, capsys):
    res = tmp_path / "res"
    res.mkdir()
    (res / "seq1.txt").write_text("1,2,3,4\n")
    (res / "seq1_time.txt").write_text("0.01\n")
    assert main(["pack", "trackingnet", str(res), str(a_file / "sub.zip")]) == 2
    assert str(a_file) in _one_line_error(capsys, "pack")
    folder = tmp_path / "taken.zip"
    folder.mkdir()
    assert main(["pack", "trackingnet", str(res), str(folder)]) == 2
    assert str(folder) in _one_line_error(capsys, "pack")
    assert folder.is_dir() and not list(folder.iterdir())


@pytest.mark.parametrize(
    "item,msg",
    [
        ("search_factor=abc", "--set search_factor: expects a number, got 'abc'"),
        ("motion_prior=nan", "--set motion_prior: expects a finite number, got 'nan'"),
        ("max_scale_change=inf", "--set max_scale_change: expects a finite number"),
        ("update_interval=1.5", "--set update_interval: expects an integer, got '1.5'"),
        ("online_size=", "--set online_size: expects an integer, got ''"),
        ("serch_factor=4", "unknown tracker setting 'serch_factor'; did you mean 'search_factor'"),
        ("search_factor", "--set expects KEY=VALUE"),
    ],
)
def test_set_values_are_type_checked(item, msg, synth, tmp_path, capsys):
    args = ["evaluate", "--dataset", "generic", "--root", str(synth)]
    args += ["--results", str(tmp_path / "res"), "--set", item]
    assert main(args) == 2
    assert msg in _one_line_error(capsys, "evaluate")
    assert not (tmp_path / "res").exists()


def test_set_values_keep_their_types():
    from mixformer.cli.evaluate import apply_set
    from mixformer.tracking import TrackerConfig

    cfg = apply_set(TrackerConfig(), ["search_factor=4", "update_interval=25", "velocity=0.5"])
    assert cfg.search_factor == 4.0 and isinstance(cfg.search_factor, float)
    assert cfg.update_interval == 25 and isinstance(cfg.update_interval, int)
    assert cfg.velocity == 0.5


def test_os_error_message():
    import errno
    import os

    from mixformer.cli import os_error_message

    err = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/data/out.mp4")
    assert os_error_message(err) == "/data/out.mp4: No space left on device"
    err = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert os_error_message(err) == "No space left on device"
    err = PermissionError(errno.EACCES, os.strerror(errno.EACCES), "/a", None, "/b")
    assert os_error_message(err) == "/a -> /b: Permission denied"
    assert os_error_message(FileNotFoundError("weights not found: w.pth")) == (
        "weights not found: w.pth"
    )


# ---------------------------------------------------------------- mixformer track outputs


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    """A 6-frame 160x120 mp4 of a moving square."""
    path = tmp_path_factory.mktemp("vid") / "moving.mp4"
    _write_video(path, 6)
    return path


def _write_video(path: Path, n: int, fourcc: str = "mp4v", noise: bool = False) -> None:
    rng = np.random.default_rng(0)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 10, (160, 120))
    for i in range(n):
        if noise:
            frame = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
        else:
            frame = np.full((120, 160, 3), 40, np.uint8)
        x = 20 + (4 * i) % 80
        cv2.rectangle(frame, (x, 30), (x + 30, 60), (255, 0, 0), -1)
        writer.write(frame)
    writer.release()


def _no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(args):  # noqa: ANN001, ANN202
        raise AssertionError("the model was loaded before the outputs were checked")

    monkeypatch.setattr("mixformer.cli.track.load_model_from_args", refuse)


def _left_over(folder: Path) -> list[str]:
    """Hidden or partial files a run left in ``folder``."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") or "partial" in p.name)


TRACK = ["--box", "20,30,30,30", "--threads", "1"]


def test_track_out_equal_to_the_source_is_refused(video, monkeypatch, capsys):
    _no_model(monkeypatch)
    before = video.read_bytes()
    assert main(["track", str(video), *TRACK, "--out", str(video)]) == 2
    assert "is the source" in _one_line_error(capsys, "track")
    assert main(["track", str(video), *TRACK, "--boxes", str(video)]) == 2
    assert "is the source" in _one_line_error(capsys, "track")
    assert video.read_bytes() == before
    assert _left_over(video.parent) == []


@pytest.mark.parametrize("name", ["o.txt", "o.gif"])
def test_track_out_without_an_encoder_fails_before_the_model(
    name, video, tmp_path, monkeypatch, capsys
):
    _no_model(monkeypatch)
    out = tmp_path / name
    assert main(["track", str(video), *TRACK, "--out", str(out)]) == 2
    msg = _one_line_error(capsys, "track")
    assert f"cannot write video {out}" in msg and "use .mp4" in msg
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("flag", ["--out", "--boxes"])
def test_track_output_under_a_file_fails_before_the_model(flag, video, a_file, monkeypatch, capsys):
    _no_model(monkeypatch)
    assert main(["track", str(video), *TRACK, flag, str(a_file / "sub" / "o.mp4")]) == 2
    assert f"{a_file / 'sub'}: Not a directory" in _one_line_error(capsys, "track")
    assert _left_over(a_file.parent) == []


def test_track_output_folders_are_checked_together(video, tmp_path, a_file, monkeypatch, capsys):
    """A bad --boxes must not leave the video's temporary file behind."""
    _no_model(monkeypatch)
    args = ["--out", str(tmp_path / "o.mp4"), "--boxes", str(a_file / "b.txt")]
    assert main(["track", str(video), *TRACK, *args]) == 2
    _one_line_error(capsys, "track")
    assert _left_over(tmp_path) == []


def test_track_negative_box_and_fps(tmp_path, capsys, caplog):
    import logging

    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        cv2.imwrite(str(frames / f"{i + 1:05d}.png"), np.full((120, 160, 3), 30 * i, np.uint8))
    with caplog.at_level(logging.INFO):
        assert main(["track", str(frames), "--box", "-5,-5,40,40", "--threads", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[0] == "-5.00,-5.00,40.00,40.00"
    assert "tracked 3 frames in" in caplog.text and "FPS)" in caplog.text


def test_attach_negative_values():
    from mixformer.cli import attach_negative_values

    argv = ["track", "v.mp4", "--box", "-50,-50,100,100", "--box", "-5 -5 9 9", "--frames", "-3"]
    assert attach_negative_values(argv) == [
        "track",
        "v.mp4",
        "--box=-50,-50,100,100",
        "--box=-5 -5 9 9",
        "--frames",
        "-3",
    ]
    assert attach_negative_values(["--box", "--out", "x"]) == ["--box", "--out", "x"]
    assert attach_negative_values(["--", "--box", "-1,2,3,4"]) == ["--", "--box", "-1,2,3,4"]


def test_track_video_that_ends_early_warns(tmp_path, caplog):
    import logging

    src = tmp_path / "full.avi"
    _write_video(src, 20, fourcc="MJPG")
    cut = tmp_path / "cut.avi"
    cut.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    with caplog.at_level(logging.WARNING):
        assert main(["track", str(cut), *TRACK, "--boxes", str(tmp_path / "b.txt")]) == 0
    n = len((tmp_path / "b.txt").read_text().splitlines())
    assert n < 20
    assert f"{cut} ended after {n} of the 20 frames its header lists" in caplog.text


def test_video_writers_of_one_name_use_their_own_temporary_files(tmp_path):
    from mixformer.tracking.render import VideoWriter

    out = tmp_path / "o.mp4"
    a, b = VideoWriter(out, 10), VideoWriter(out, 10)
    frame = np.zeros((48, 64, 3), np.uint8)
    a.write(frame)
    b.write(frame + 100)
    b.write(frame + 100)
    assert a.tmp != b.tmp and a.tmp.name.startswith(".o.") and a.tmp.name.endswith(".partial.mp4")
    assert b.close() == out
    assert a.close() == out  # the later close wins, whole
    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 1
    cap.release()
    assert _left_over(tmp_path) == []


def test_stale_temporary_videos_are_removed(tmp_path):
    import os
    import time

    from mixformer.tracking.render import STALE_SECONDS, VideoWriter

    old = tmp_path / ".o.k1ll3d00.partial.mp4"
    fresh = tmp_path / ".o.running.partial.mp4"
    other = tmp_path / ".x.k1ll3d00.partial.mp4"
    for p in (old, fresh, other):
        p.write_bytes(b"\0" * 10)
    then = time.time() - STALE_SECONDS - 60
    os.utime(old, (then, then))
    os.utime(other, (then, then))
    w = VideoWriter(tmp_path / "o.mp4", 10)
    w.open(64, 48)
    assert not old.exists() and fresh.exists() and other.exists()
    w.discard()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([fresh.name, other.name])


def _limited(limit: int):  # noqa: ANN202 - preexec_fn
    """A ``preexec_fn``: files may not grow past ``limit`` bytes; writes past it fail (EFBIG)."""

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    return apply


def _fails_in_one_line(argv: list[str]) -> str:
    """Run ``argv`` in a child whose files may not grow past 60 KB: it must end with exit code 2
    and no traceback. Returns the last line of its stderr."""
    r = subprocess.run(
        argv, capture_output=True, text=True, timeout=300, preexec_fn=_limited(60_000)
    )
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    return r.stderr.strip().splitlines()[-1]


def _warm_export_cache() -> None:
    """Export the default model's graphs into the session's export cache now, so a child run
    under a file-size limit finds them there (alone, a test would otherwise fail on the export,
    not on what it checks: the order of the suite must not matter)."""
    from mixformer.export.cache import cached_export
    from mixformer.models import build_model

    assert cached_export(build_model(weights="default")) is not None


@pytest.mark.parametrize("backend", ["pyav", "opencv"])
def test_track_full_disk_keeps_boxes_and_no_broken_video(backend, tmp_path):
    if backend == "pyav":
        pytest.importorskip("av")
    pytest.importorskip("onnx")
    _warm_export_cache()
    src = tmp_path / "noise.mp4"
    _write_video(src, 40, noise=True)
    out, boxes = tmp_path / "out" / "o.mp4", tmp_path / "out" / "b.txt"
    code = (
        "import sys, mixformer.tracking.render as r; from mixformer.cli import main; "
        f"r.video_backend = lambda: {backend!r}; sys.exit(main(sys.argv[1:]))"
    )
    last = _fails_in_one_line(
        [sys.executable, "-c", code, "track", str(src), *TRACK]
        + ["--out", str(out), "--boxes", str(boxes)]
    )
    assert last.startswith(f"mixformer track: error: {out}: "), last
    assert not out.exists()
    lines = boxes.read_text().splitlines()
    assert lines and [float(v) for v in lines[0].split(",")] == [20, 30, 30, 30]
    assert _left_over(out.parent) == []


def test_full_disk_during_the_export_names_the_folder(tmp_path, monkeypatch):
    """Without a usable export cache the graphs go to a temporary folder; a full disk there is a
    one-line error naming that folder (it was the bare errno text)."""
    pytest.importorskip("onnx")
    pytest.importorskip("openvino")
    src = tmp_path / "noise.mp4"
    _write_video(src, 5, noise=True)
    monkeypatch.setenv("MIXFORMER_CACHE_DIR", "")  # cache off: export to a temporary folder
    last = _fails_in_one_line(
        [sys.executable, "-m", "mixformer", "track", str(src), *TRACK, "--backend", "openvino"]
    )
    assert last.startswith("mixformer track: error: "), last
    assert "mixformer-onnx-" in last and "cannot write the exported graphs" in last, last


def _start_long_track(tmp_path: Path) -> tuple[subprocess.Popen, Path, Path]:
    src = tmp_path / "long.mp4"
    _write_video(src, 2000)
    boxes, out = tmp_path / "boxes.txt", tmp_path / "out.mp4"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mixformer", "track", str(src), *TRACK]
        + ["--boxes", str(boxes), "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 240
    while len(_partial_boxes(tmp_path, "boxes.txt")) < 3 and proc.poll() is None:
        assert time.monotonic() < deadline, "tracking never started"
        time.sleep(0.05)
    return proc, boxes, out


def _partial_boxes(folder: Path, name: str) -> list[str]:
    found = list(folder.glob(f"{name}.*.partial"))
    return found[0].read_text().splitlines() if found else []


def test_sigterm_stops_like_ctrl_c(tmp_path):
    proc, boxes, out = _start_long_track(tmp_path)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "terminated after" in err and err.strip().splitlines()[-1] == "terminated"
    lines = boxes.read_text().splitlines()
    assert 3 <= len(lines) < 2000
    assert all(len(line.split(",")) == 4 for line in lines)
    partial = tmp_path / "out.partial.mp4"
    assert not out.exists() and partial.is_file()
    cap = cv2.VideoCapture(str(partial))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) in (len(lines) - 1, len(lines))
    cap.release()
    assert _left_over(tmp_path) == ["out.partial.mp4"]


def test_sigkill_keeps_the_boxes_tracked_so_far(tmp_path):
    proc, boxes, _ = _start_long_track(tmp_path)
    proc.kill()
    proc.communicate(timeout=120)
    lines = _partial_boxes(tmp_path, "boxes.txt")
    assert len(lines) >= 3 and [float(v) for v in lines[0].split(",")] == [20, 30, 30, 30]
    assert not boxes.exists()


# ---------------------------------------------------------------- browser-playable video


def test_annotated_video_is_h264(video, tmp_path):
    pytest.importorskip("av")
    out = tmp_path / "o.mp4"
    assert (
        main(["track", str(video), *TRACK, "--out", str(out), "--boxes", str(tmp_path / "b")]) == 0
    )
    cap = cv2.VideoCapture(str(out))
    fourcc = int(cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode()
    assert fourcc.lower() in ("h264", "avc1")
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    assert n == 6


def test_odd_sized_frames_are_padded_for_h264(tmp_path):
    pytest.importorskip("av")
    from mixformer.tracking.render import VideoWriter

    w = VideoWriter(tmp_path / "odd.mp4", 10)
    for i in range(3):
        w.write(np.full((45, 63, 3), 50 * i, np.uint8))
    cap = cv2.VideoCapture(str(w.close()))
    ok, frame = cap.read()
    cap.release()
    assert ok and frame.shape == (46, 64, 3)


def test_without_pyav_opencv_writes_with_a_warning(tmp_path, monkeypatch, caplog):
    import logging

    import mixformer.tracking.render as render

    monkeypatch.setattr(render, "video_backend", lambda: "opencv")
    w = render.VideoWriter(tmp_path / "o.mp4", 10)
    with caplog.at_level(logging.WARNING):
        for _ in range(2):
            w.write(np.zeros((48, 64, 3), np.uint8))
    assert w.close() == tmp_path / "o.mp4"
    assert "browsers do not play" in caplog.text and "pip install av" in caplog.text
    cap = cv2.VideoCapture(str(tmp_path / "o.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 2
    cap.release()


# ---------------------------------------------------------------- images over the pixel limit


def _png_declaring(path: Path, width: int, height: int, whole: bool = False) -> Path:
    """A small PNG whose IHDR declares ``width`` x ``height`` grey pixels: 64 bytes of image
    data, or with ``whole`` all rows (zeros: 400 MB deflate to 0.4 MB), which OpenCV decodes
    into a colour array of ``3 * width * height`` bytes and then converts into another."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    if whole:
        packer, row = zlib.compressobj(9), bytes(width + 1)
        idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    else:
        idat = zlib.compress(bytes(64))
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )
    return path


_READ_HUGE = """
import resource, sys
from mixformer.data.frames import read_image
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    read_image(sys.argv[1])
    print("read")
except ValueError as exc:
    print(exc)
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(grown // 1024)  # MiB (ru_maxrss is in KiB on Linux)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss in KiB")
def test_image_over_the_pixel_limit_is_refused_from_its_header(tmp_path):
    png = _png_declaring(tmp_path / "huge.png", 20000, 20000, whole=True)
    assert png.stat().st_size < 1_000_000  # decoded before the fix: 2.3 GB more memory
    r = subprocess.run(
        [sys.executable, "-c", _READ_HUGE, str(png)], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    msg, grown = r.stdout.strip().splitlines()
    assert msg == (
        f"image too large: {png} declares 20000x20000 pixels, over the limit of 50,000,000 "
        "(set MIXFORMER_MAX_IMAGE_PIXELS to raise it)"
    )
    assert int(grown) < 300, f"reading grew the process by {grown} MiB"


def test_track_refuses_a_frame_over_the_pixel_limit(tmp_path, capsys):
    frames = tmp_path / "frames"
    frames.mkdir()
    png = _png_declaring(frames / "00001.png", 20000, 20000)
    assert main(["track", str(frames), "--box", "1,1,4,4", "--threads", "1"]) == 2
    assert _one_line_error(capsys, "track").endswith(
        f"image too large: {png} declares 20000x20000 pixels, over the limit of 50,000,000 "
        "(set MIXFORMER_MAX_IMAGE_PIXELS to raise it)"
    )


def test_pixel_limit_can_be_raised(tmp_path, monkeypatch):
    from mixformer.data.frames import check_image_pixels

    png = _png_declaring(tmp_path / "big.png", 8000, 8000)
    with pytest.raises(ValueError, match="8000x8000 pixels, over the limit of 50,000,000"):
        check_image_pixels(png)
    monkeypatch.setenv("MIXFORMER_MAX_IMAGE_PIXELS", "64000000")
    check_image_pixels(png)
    monkeypatch.setenv("MIXFORMER_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(ValueError, match="MIXFORMER_MAX_IMAGE_PIXELS must be a number"):
        check_image_pixels(png)


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".webp", ".tif"])
def test_image_size_reads_the_header(ext, tmp_path):
    from mixformer.data.frames import image_size

    path = tmp_path / f"a{ext}"
    assert cv2.imwrite(str(path), np.zeros((37, 53, 3), np.uint8))
    assert image_size(path) == (53, 37)
    progressive = tmp_path / "p.jpg"
    assert cv2.imwrite(
        str(progressive), np.zeros((9, 300, 3), np.uint8), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]
    )
    assert image_size(progressive) == (300, 9)
    (tmp_path / "cut.jpg").write_bytes(b"\xff\xd8\xff")
    assert image_size(tmp_path / "cut.jpg") is None


def test_background_encoding_copies_frames_and_reports_errors(tmp_path, monkeypatch):
    """Frames are encoded by the writer's thread: a buffer the caller reuses after write()
    does not change the video, and an encoder error comes out of a later write() or close()
    as the one-line OSError naming the video, with no file left behind."""
    import errno
    import os

    import mixformer.tracking.render as render

    w = render.VideoWriter(tmp_path / "o.mp4", 10)
    buf = np.zeros((48, 64, 3), np.uint8)
    for _ in range(3):
        w.write(buf)
        buf[:] = 255  # reused by the caller at once
    cap = cv2.VideoCapture(str(w.close()))
    ok, first = cap.read()
    cap.release()
    assert ok and first.mean() < 30

    def fail(self, frame):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(render, "video_backend", lambda: "opencv")
    monkeypatch.setattr(render._OpenCVEncoder, "write", fail)
    w = render.VideoWriter(tmp_path / "full.mp4", 10)
    with pytest.raises(OSError, match="full.mp4") as info:
        for _ in range(render.VideoWriter.QUEUE + 4):
            w.write(buf)
        w.close()
    assert info.value.errno == errno.ENOSPC
    w.discard()
    assert _left_over(tmp_path) == [] and not (tmp_path / "full.mp4").exists()
