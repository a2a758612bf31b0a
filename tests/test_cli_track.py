"""The command line, driven through subprocess on a small generated video."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest


def _mixformer(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mixformer", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def _partial_boxes(folder: Path, name: str) -> list[str]:
    """The lines of the box file a running ``track`` is writing (``NAME.XXXXXXXX.partial``)."""
    found = list(folder.glob(f"{name}.*.partial"))
    return found[0].read_text().splitlines() if found else []


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("vid") / "moving.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (160, 120))
    for i in range(6):
        frame = np.full((120, 160, 3), 40, np.uint8)
        cv2.rectangle(frame, (20 + 4 * i, 30), (50 + 4 * i, 60), (255, 0, 0), -1)
        writer.write(frame)
    writer.release()
    return path


def test_track_video_writes_boxes_and_annotated_video(video, tmp_path):
    boxes, out = tmp_path / "boxes.txt", tmp_path / "out.mp4"
    r = _mixformer(
        "track", str(video), "--box", "20,30,30,30", "--boxes", str(boxes), "--output", str(out)
    )
    assert r.returncode == 0, r.stderr
    lines = boxes.read_text().splitlines()
    assert len(lines) == 6
    assert [float(v) for v in lines[0].split(",")] == [20, 30, 30, 30]
    assert all(len(line.split(",")) == 4 for line in lines)
    cap = cv2.VideoCapture(str(out))
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    assert n == 6
    if "random weights" in r.stderr or "NO WEIGHTS" in r.stderr:
        assert "--weights" in r.stderr


def test_track_frame_folder_to_stdout(tmp_path):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i + 1:05d}.jpg"), np.full((64, 64, 3), 30 * i, np.uint8))
    r = _mixformer("track", str(tmp_path), "--box", "10 10 20 20")
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.strip().splitlines()) == 3


@pytest.mark.parametrize(
    "args,msg",
    [
        (["--box", "1,2,0,4"], "width and height"),
        (["--box", "1,2,3"], "4 numbers"),
        (["--box", "1,2,3,4", "--weights", "/nonexistent/w.pth"], "not found"),
        (["--box", "1,2,3,4", "--model", "mixformer-tinny"], "mixformer-tiny"),
        (["--box", "1,2,3,4", "--model", "mixformer-large", "--weights", "default"], "no default"),
    ],
)
def test_track_bad_input_exit_code_2(video, args, msg):
    r = _mixformer("track", str(video), *args)
    assert r.returncode == 2
    assert msg in r.stderr


def test_unreadable_video_and_missing_source(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00garbage" * 100)
    r = _mixformer("track", str(bad), "--box", "1,2,3,4")
    assert r.returncode == 2 and "cannot read video" in r.stderr
    r = _mixformer("track", str(tmp_path / "missing"), "--box", "1,2,3,4")
    assert r.returncode == 2 and "not found" in r.stderr


def test_models_lists_presets():
    r = _mixformer("models")
    assert r.returncode == 0
    for name in ("mixformer-22k", "mixformer-1k", "mixformer-large", "mixformer-tiny"):
        assert name in r.stdout


def test_corrupt_frame_mid_sequence_keeps_tracked_boxes(tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        cv2.imwrite(str(frames / f"{i + 1:05d}.jpg"), np.full((64, 64, 3), 30 * i, np.uint8))
    (frames / "00004.jpg").write_bytes(b"not a jpeg")
    boxes = tmp_path / "boxes.txt"
    r = _mixformer("track", str(frames), "--box", "10,10,20,20", "--boxes", str(boxes))
    assert r.returncode == 2
    assert "00004.jpg" in r.stderr
    assert len(boxes.read_text().splitlines()) == 3


def test_truncated_mp4_gives_one_line_without_ffmpeg_noise(video, tmp_path):
    """libav's "moov atom not found" must not reach stderr before the clean error."""
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(video.read_bytes()[: video.stat().st_size // 2])
    r = _mixformer("track", str(cut), "--box", "20,30,30,30")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"mixformer track: error: cannot read video (unsupported or corrupt): {cut}"
    ]


def test_ctrl_c_keeps_the_boxes_and_marks_the_video_partial(tmp_path):
    """A real SIGINT mid-run: boxes of the frames tracked so far are written, and the video is
    finished as NAME.partial.mp4 (never left under the final name)."""
    import os
    import signal
    import time

    src = tmp_path / "long.mp4"
    writer = cv2.VideoWriter(str(src), cv2.VideoWriter_fourcc(*"mp4v"), 10, (160, 120))
    for i in range(2000):
        frame = np.full((120, 160, 3), 40, np.uint8)
        x = 20 + (i % 80)
        cv2.rectangle(frame, (x, 30), (x + 30, 60), (255, 0, 0), -1)
        writer.write(frame)
    writer.release()
    boxes, out = tmp_path / "boxes.txt", tmp_path / "out.mp4"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mixformer", "track", str(src), "--box", "20,30,30,30"]
        + ["--boxes", str(boxes), "--out", str(out), "--threads", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell may start background jobs with SIGINT ignored; Python then keeps ignoring it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        # a run that does not stop prints every thread's stack on SIGABRT (below)
        env={**os.environ, "PYTHONFAULTHANDLER": "1"},
    )
    deadline = time.monotonic() + 240
    while not _partial_boxes(tmp_path, "boxes.txt") and proc.poll() is None:
        assert time.monotonic() < deadline, "tracking never started"
        time.sleep(0.05)
    time.sleep(0.5)
    os.kill(proc.pid, signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        _, err = proc.communicate(timeout=60)
        pytest.fail(f"track did not stop within 120 s of SIGINT; its threads:\n{err[-8000:]}")
    assert proc.returncode == 130, err
    assert "interrupted" in err
    lines = boxes.read_text().splitlines()
    assert 1 <= len(lines) < 2000
    assert [float(v) for v in lines[0].split(",")] == [20, 30, 30, 30]
    assert all(len(line.split(",")) == 4 for line in lines)
    assert not out.exists() and not list(tmp_path.glob(".out.*"))  # no hidden temporary file
    assert not list(tmp_path.glob("boxes.txt.*"))
    partial = tmp_path / "out.partial.mp4"
    cap = cv2.VideoCapture(str(partial))
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    assert n in (len(lines), len(lines) + 1)  # the frame being drawn may be in the video
    assert str(partial) in err


def test_auto_backend_rule(monkeypatch):
    """``--backend auto`` picks OpenVINO only where it runs the torch fast path's arithmetic
    faster: fp32 on the CPU, or bf16 on AMX; no attention, not the plain path, its packages
    installed."""
    from mixformer.tracking import backends

    monkeypatch.setattr(backends, "cpu_has_native_bf16", lambda: False)
    monkeypatch.setattr(backends.platform, "machine", lambda: "x86_64")
    have = {"openvino", "onnx"}
    monkeypatch.setattr(backends, "openvino_installed", lambda: {"openvino", "onnx"} <= have)
    rule = backends.resolve_backend_setting
    assert rule("auto") == "openvino" and rule("auto", dtype="fp32") == "openvino"
    assert rule("auto", dtype="bf16") == "torch"
    assert rule("auto", attention=True) == "torch"
    assert rule("auto", fast=False) == "torch"
    assert rule("auto", device="cuda") == "torch"
    assert rule("torch") == "torch" and rule("onnxruntime") == "onnxruntime"
    monkeypatch.setattr(backends, "cpu_has_native_bf16", lambda: True)  # auto is bf16 there
    # AMX: OpenVINO bf16 beat torch bf16 on every preset measured (docs/speed.md#amx)
    assert rule("auto") == "openvino" and rule("auto", dtype="fp32") == "openvino"
    assert rule("auto", dtype="bf16") == "openvino" and rule("auto", dtype="fp16") == "torch"
    assert rule("auto", auto_bf16=False) == "openvino"  # fp32 for such weights
    assert rule("auto", attention=True) == "torch" and rule("auto", fast=False) == "torch"
    monkeypatch.setattr(backends, "cpu_has_native_bf16", lambda: False)
    monkeypatch.setattr(backends.platform, "machine", lambda: "arm64")  # not measured there
    assert rule("auto") == "torch"
    monkeypatch.setattr(backends.platform, "machine", lambda: "x86_64")
    assert rule("auto") == "openvino"
    have.discard("openvino")
    assert rule("auto") == "torch"
    with pytest.raises(ValueError, match="unknown backend"):
        rule("tensorrt")


def test_track_backend_errors_are_one_line(video):
    r = _mixformer("track", str(video), "--box", "20,30,30,30", "--backend", "openvino", "--plain")
    assert r.returncode == 2 and "--plain needs --backend torch" in r.stderr
    assert "Traceback" not in r.stderr


def test_track_auto_backend_gives_the_torch_boxes(video, tmp_path):
    """Where ``auto`` picks OpenVINO (the openvino extra installed, no AMX), the boxes are
    those of ``--backend torch`` within float rounding."""
    pytest.importorskip("openvino")
    pytest.importorskip("onnx")
    out = {}
    for backend in ("auto", "torch"):
        boxes = tmp_path / f"{backend}.txt"
        args = ["--box", "20,30,30,30", "--backend", backend, "--boxes", str(boxes)]
        r = _mixformer("track", str(video), *args, "--dtype", "fp32")
        assert r.returncode == 0, r.stderr
        assert "TracerWarning" not in r.stderr and "Constant folding" not in r.stderr
        out[backend] = np.loadtxt(boxes, delimiter=",")
    np.testing.assert_allclose(out["auto"], out["torch"], atol=0.05)


def test_auto_backend_falls_back_to_torch_when_openvino_is_broken(monkeypatch, caplog):
    """An installed but unusable openvino (its import fails) is not the user's request: ``auto``
    warns and runs torch; ``--backend openvino`` is an error."""
    import argparse
    import logging

    from mixformer.cli import CLIError
    from mixformer.cli.dtype import resolve_backend_arg
    from mixformer.export import openvino as ov_mod
    from mixformer.tracking import backends

    monkeypatch.setattr(backends, "resolve_backend_setting", lambda *a, **k: "openvino")

    def broken(int8: bool = False) -> None:
        raise ImportError("openvino is not installed; the openvino backend needs ...")

    monkeypatch.setattr(ov_mod, "require_openvino", broken)
    args = argparse.Namespace(backend="auto", dtype="auto", device="cpu", plain=False)
    with caplog.at_level(logging.WARNING):
        assert resolve_backend_arg(args) == "torch"
    assert "running on torch" in caplog.text
    with pytest.raises(CLIError, match="openvino"):
        resolve_backend_arg(argparse.Namespace(**{**vars(args), "backend": "openvino"}))
