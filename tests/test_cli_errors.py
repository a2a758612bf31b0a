"""Bad input on the command line: one-line errors, exit code 2, nothing heavy done first.

Driven in-process through :func:`mixformer.cli.main` (stderr captured by ``capsys``; log
records go to ``caplog``).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from mixformer.cli import build_parser, main

# Import every command module now: one first imported while a test patches a shared helper
# (mixformer.cli.common.load_model_from_args) would keep the patched function for good.
build_parser()


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("frames")
    for i in range(3):
        frame = np.full((48, 64, 3), 40, np.uint8)
        cv2.rectangle(frame, (10 + 2 * i, 10), (30 + 2 * i, 30), (255, 0, 0), -1)
        cv2.imwrite(str(folder / f"{i + 1:05d}.png"), frame)
    return folder


def _one_line_error(capsys: pytest.CaptureFixture[str], command: str) -> str:
    """The captured stderr, checked to be exactly one ``mixformer COMMAND: error:`` line."""
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"mixformer {command}: error: "), lines[0]
    return lines[0]


def _no_model(monkeypatch: pytest.MonkeyPatch, module: str) -> None:
    """Make building a model in ``module`` fail the test: errors must come before it."""

    def refuse(args):  # noqa: ANN001, ANN202
        raise AssertionError("the model was loaded before the input was checked")

    monkeypatch.setattr(f"{module}.load_model_from_args", refuse)


@pytest.mark.parametrize("command", ["track", "demo"])
def test_cuda_device_on_a_cpu_build(command, frames, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", None)
    _no_model(monkeypatch, f"mixformer.cli.{command}")
    args = [str(frames), "--box", "10,10,20,20"] if command == "track" else ["--frames", "2"]
    assert main([command, *args, "--device", "cuda:0"]) == 2
    assert "this PyTorch build has no CUDA support" in _one_line_error(capsys, command)


def test_benchmark_onnxruntime_without_onnx(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` fails
    _no_model(monkeypatch, "mixformer.cli.benchmark")
    assert main(["benchmark", "--backend", "onnxruntime", "--frames", "1"]) == 2
    msg = _one_line_error(capsys, "benchmark")
    assert "is not installed" in msg and "mixformer[export]" in msg


def test_vot_server_without_trax_fails_before_loading_the_model(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "trax", None)
    _no_model(monkeypatch, "mixformer.cli.vot")
    assert main(["vot-server"]) == 2
    assert "pip install vot-trax" in _one_line_error(capsys, "vot-server")


def test_track_huge_box_is_refused_before_tracking(frames, monkeypatch, capsys):
    _no_model(monkeypatch, "mixformer.cli.track")
    assert main(["track", str(frames), "--box", "0,0,1e7,1e7"]) == 2
    msg = _one_line_error(capsys, "track")  # one line: no progress bar before it
    assert "far larger than the 64x48 image" in msg


def test_track_box_outside_the_image_before_any_progress_bar(frames, monkeypatch, capsys):
    _no_model(monkeypatch, "mixformer.cli.track")
    assert main(["track", str(frames), "--box", "10,10,5,5", "--box", "100,10,5,5"]) == 2
    assert "--box 2: box (100.0, 10.0, 5.0, 5.0) lies entirely outside" in _one_line_error(
        capsys, "track"
    )


def test_unknown_model_is_named_before_any_weights_warning(frames, capsys, caplog):
    with caplog.at_level(logging.WARNING):
        assert main(["track", str(frames), "--box", "10,10,20,20", "--model", "nosuch"]) == 2
    msg = _one_line_error(capsys, "track")
    assert "unknown model 'nosuch'; choose from" in msg and "mixformer-tiny" in msg
    assert "NO WEIGHTS" not in caplog.text


def test_unknown_preset_lists_the_valid_names(frames, monkeypatch, capsys):
    _no_model(monkeypatch, "mixformer.cli.track")
    assert main(["track", str(frames), "--box", "10,10,20,20", "--preset", "nosuch"]) == 2
    msg = _one_line_error(capsys, "track")
    assert "unknown tracker preset 'nosuch'" in msg and "lasot, got10k_test" in msg


def test_truncated_checkpoint_on_train_resume_names_the_file(tmp_path, capsys):
    ckpt = tmp_path / "checkpoints" / "ckpt_ep0001.pth"
    ckpt.parent.mkdir()
    torch.save({"net": {"w": torch.zeros(4096)}, "epoch": 1}, ckpt)
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    args = ["train", "tiny-synthetic-stage1", "--output", str(tmp_path), "--resume"]
    assert main([*args, "--no-progress"]) == 2
    msg = _one_line_error(capsys, "train")
    assert str(ckpt) in msg and "truncated" in msg


class _Payload:
    """Unpickling this would run ``os.system``: the loader must refuse it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_in_one_line(frames, tmp_path, capsys):
    evil, marker = tmp_path / "evil.pth", tmp_path / "pwned"
    torch.save({"net": _Payload(marker)}, evil)
    assert main(["track", str(frames), "--box", "10,10,20,20", "--weights", str(evil)]) == 2
    msg = _one_line_error(capsys, "track")
    assert "holds pickled code or objects" in msg and "weights_only loading does not allow" in msg
    assert "weights_only=False" not in msg and "weights_only` set to `False" not in msg
    assert not marker.exists()


@pytest.mark.parametrize(
    "content,reason",
    [
        (b"", "the file is empty"),
        (b"this is a text file\n", "not written by torch.save"),
    ],
    ids=["empty", "text"],
)
def test_bad_weights_files_give_a_reason(content, reason, frames, tmp_path, capsys):
    path = tmp_path / "w.pth"
    path.write_bytes(content)
    assert main(["track", str(frames), "--box", "10,10,20,20", "--weights", str(path)]) == 2
    assert reason in _one_line_error(capsys, "track")


def test_auto_threads():
    from mixformer.cli.common import auto_threads

    assert auto_threads(cores=2, load=0.2) == 2  # idle
    assert auto_threads(cores=2, load=1.5) == 1  # another job on the machine
    assert auto_threads(cores=16, load=3.0) == 2
    assert auto_threads(cores=1, load=0.0) == 1
    assert 1 <= auto_threads() <= 2


def test_auto_threads_gives_small_networks_one_thread():
    from mixformer import build_model
    from mixformer.tracking import engine
    from mixformer.tracking.threads import SMALL_NETWORK_PARAMS, auto_threads, is_small_network

    small = build_model("mixformer-mbv3")  # 1.7 M parameters
    large = torch.nn.Linear(3000, 2000)  # 6 M
    assert sum(p.numel() for p in large.parameters()) > SMALL_NETWORK_PARAMS
    assert is_small_network(small) and is_small_network(engine(small, dtype="fp32"))
    assert not is_small_network(large) and not is_small_network(object())
    assert auto_threads(cores=2, load=0.0, model=small) == 1
    assert auto_threads(cores=2, load=0.0, model=large) == 2
    # OpenVINO and ONNX Runtime gain from the second thread even for a small network
    for backend in ("openvino", "onnxruntime"):
        assert auto_threads(cores=2, load=0.0, model=small, backend=backend) == 2
        assert auto_threads(cores=2, load=2.0, model=small, backend=backend) == 1  # busy
    # one core busy: OpenVINO keeps its second thread, ONNX Runtime and torch take one
    assert auto_threads(cores=2, load=1.5, model=small, backend="openvino") == 2
    assert auto_threads(cores=2, load=1.5, model=large, backend="openvino") == 2
    assert auto_threads(cores=2, load=1.5, model=small, backend="onnxruntime") == 1
    assert auto_threads(cores=2, load=1.5, model=large, backend="torch") == 1
    assert auto_threads(cores=16, load=12.0, backend="openvino") == 2
    assert auto_threads(cores=16, load=16.0, backend="openvino") == 1


@pytest.mark.isolated  # compiles OpenVINO graphs (see tests/conftest.py)
def test_tracker_threads_follow_the_backend(monkeypatch):
    """A small network gets one thread on torch and the general rule on OpenVINO, decided with
    the backend the tracker resolved (auto) or the engine's."""
    pytest.importorskip("openvino")
    from mixformer import Tracker, build_model
    from mixformer.tracking import threads as threads_mod

    monkeypatch.setattr(threads_mod, "caller_chose_threads", lambda: False)
    monkeypatch.setattr(threads_mod.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    monkeypatch.setattr(threads_mod.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    small = build_model("mixformer-mbv3").eval()
    assert Tracker(small, backend="torch").threads == 1
    assert Tracker(small, backend="openvino", dtype="fp32").threads == 2


def test_track_threads_and_out_alias(frames, tmp_path):
    old = torch.get_num_threads()
    try:
        out = tmp_path / "v.mp4"
        args = ["track", str(frames), "--box", "10,10,20,20", "--threads", "2", "--out", str(out)]
        assert main([*args, "--boxes", str(tmp_path / "b.txt")]) == 0
        assert torch.get_num_threads() == 2
        assert out.is_file() and len((tmp_path / "b.txt").read_text().splitlines()) == 3
    finally:
        torch.set_num_threads(old)


def test_evaluate_records_the_thread_count(tmp_path, capsys):
    data, res = tmp_path / "data", tmp_path / "res"
    synth = ["synth", str(data), "--sequences", "1", "--frames", "3"]
    assert main([*synth, "--height", "48", "--width", "64"]) == 0
    old = torch.get_num_threads()
    try:
        args = ["evaluate", "--dataset", "generic", "--root", str(data), "--results", str(res)]
        assert main([*args, "--threads", "1", "--no-progress"]) == 0
    finally:
        torch.set_num_threads(old)
    assert json.loads((res / "settings.json").read_text())["threads"] == 1
    assert "1 worker(s) x 1 thread(s)" in capsys.readouterr().out


@pytest.mark.parametrize("cuda", [True, False])
def test_device_auto_is_cuda_where_one_is_visible(cuda, monkeypatch):
    from mixformer.cli import build_parser
    from mixformer.cli.common import check_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert check_device("auto") == ("cuda" if cuda else "cpu")
    assert check_device("cpu") == "cpu"
    for command in (["track", "clip.mp4", "--box", "1,1,5,5"], ["demo"], ["app"]):
        assert build_parser().parse_args(command).device == "auto"
