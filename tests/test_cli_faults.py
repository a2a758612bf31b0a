"""Faults a probe found: OS errors (a path under a file, a full disk), bad ``--set`` values,
killed runs. Each ends in one ``mixformer COMMAND: error:`` line with exit code 2 (never a
traceback) and keeps the work already done.

In-process tests go through :func:`mixformer.cli.main`; the ones that need a real signal or a
file-size limit run the command in a subprocess.
"""

from __future__ import annotations

from pathlib import Path

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
