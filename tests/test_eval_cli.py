"""``mixformer synth | evaluate | report | pack`` driven on tiny inputs."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from mixformer.cli import main
from mixformer.data.io import read_boxes
from mixformer.evaluation.pack import pack_results


def _fake_results(folder: Path, gt_root: Path, shift: float) -> None:
    """Results derived from the ground truth of a synthetic benchmark (no tracking)."""
    folder.mkdir(parents=True)
    for seq in sorted(p for p in gt_root.iterdir() if p.is_dir()):
        gt = read_boxes(seq / "groundtruth.txt")
        pred = gt + [shift, -shift, 0, 0]
        lines = "".join("\t".join(str(int(v)) for v in row) + "\n" for row in pred)
        (folder / f"{seq.name}.txt").write_text(lines)
        (folder / f"{seq.name}_time.txt").write_text("".join("0.010000\n" for _ in pred))


def test_synth_report_pack(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    assert (
        main(
            [
                "synth",
                str(data),
                "--sequences",
                "2",
                "--frames",
                "6",
                "--height",
                "48",
                "--width",
                "64",
                "--seed",
                "3",
            ]
        )
        == 0
    )
    assert (data / "list.txt").read_text().split() == ["synth-0000", "synth-0001"]
    _fake_results(tmp_path / "good", data, 1.0)
    _fake_results(tmp_path / "bad", data, 12.0)
    out = tmp_path / "report"
    rc = main(
        [
            "report",
            str(tmp_path / "good"),
            f"worse={tmp_path / 'bad'}",
            "--dataset",
            "generic",
            "--root",
            str(data),
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "good" in text and "worse" in text and "AUC" in text
    for f in ("report.md", "report.csv", "sequences.csv", "success.png", "precision.png"):
        assert (out / f).stat().st_size > 0
    csv_rows = (out / "report.csv").read_text().splitlines()
    assert csv_rows[0].startswith("Tracker,AUC,OP50,OP75,Precision,NormPrecision")
    good, bad = (float(r.split(",")[1]) for r in csv_rows[1:])
    assert good > bad  # the shifted boxes score lower
    assert (out / "success.png").read_bytes()[:4] == b"\x89PNG"

    # GOT-10k packing of the same files; the inputs stay untouched.
    before = {p.name: p.read_bytes() for p in (tmp_path / "good").iterdir()}
    zpath = tmp_path / "sub.zip"
    assert main(["pack", "got10k", str(tmp_path / "good"), str(zpath)]) == 0
    with zipfile.ZipFile(zpath) as zf:
        names = sorted(zf.namelist())
        assert names == [
            "synth-0000/synth-0000_001.txt",
            "synth-0000/synth-0000_time.txt",
            "synth-0001/synth-0001_001.txt",
            "synth-0001/synth-0001_time.txt",
        ]
        row = zf.read("synth-0000/synth-0000_001.txt").decode().splitlines()[0]
        assert row.count(",") == 3 and "\t" not in row
    assert {p.name: p.read_bytes() for p in (tmp_path / "good").iterdir()} == before


def test_pack_trackingnet_layout_and_errors(tmp_path: Path) -> None:
    res = tmp_path / "res" / "trackingnet"
    res.mkdir(parents=True)
    (res / "seqA.txt").write_text("1\t2\t3\t4\n5\t6\t7\t8\n")
    (res / "seqA_time.txt").write_text("0.1\n0.1\n")
    out = tmp_path / "tn.zip"
    assert pack_results("trackingnet", tmp_path / "res", out, expected=1) == ["seqA"]
    with zipfile.ZipFile(out) as zf:
        assert zf.namelist() == ["seqA.txt"]
        assert zf.read("seqA.txt").decode() == "1,2,3,4\n5,6,7,8\n"
    with pytest.raises(ValueError, match="outside the results folder"):
        pack_results("trackingnet", tmp_path / "res", tmp_path / "res" / "x.zip")
    (res / "seqA_time.txt").unlink()
    with pytest.raises(ValueError, match="time file"):
        pack_results("got10k", res, tmp_path / "g.zip")
    (res / "seqB.txt").write_text("1,2,x,4\n")
    with pytest.raises(ValueError, match=r"seqB\.txt:1"):
        pack_results("trackingnet", res, tmp_path / "t2.zip")
    assert (res / "seqA.txt").is_file() and not (tmp_path / "t2.zip").exists()


def test_report_server_dataset_and_missing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    main(
        ["synth", str(data), "--sequences", "2", "--frames", "3", "--height", "40", "--width", "40"]
    )
    _fake_results(tmp_path / "r", data, 0.0)
    (tmp_path / "r" / "synth-0001.txt").unlink()
    args = ["report", str(tmp_path / "r"), "--dataset", "generic", "--root", str(data)]
    assert main(args) == 2  # missing result -> user error
    assert main([*args, "--allow-missing"]) == 0


def test_evaluate_malformed_folder_exit_code(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "s1" / "img").mkdir(parents=True)
    (data / "s1" / "img" / "00000001.jpg").write_bytes(b"")
    (data / "s1" / "groundtruth.txt").write_text("1,2,3,4\n1,2,3,4\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from mixformer.cli import main; sys.exit(main())",
            "evaluate",
            "--dataset",
            "generic",
            "--root",
            str(data),
            "--results",
            str(tmp_path / "res"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "groundtruth.txt:2: ground truth has 2 rows" in proc.stderr
    assert not (tmp_path / "res").exists()  # nothing tracked or written


def test_evaluate_end_to_end_then_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    main(
        ["synth", str(data), "--sequences", "2", "--frames", "2", "--height", "40", "--width", "48"]
    )
    res = tmp_path / "res"
    args = [
        "evaluate",
        "--dataset",
        "generic",
        "--root",
        str(data),
        "--results",
        str(res),
        "--no-progress",
        "--set",
        "search_factor=4.5",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "done 2, skipped (already done) 0, failed 0" in out and "AUC" in out
    assert np.loadtxt(res / "synth-0000.txt").shape == (2, 4)
    assert main(args) == 0
    assert "done 0, skipped (already done) 2" in capsys.readouterr().out
    assert main([*args[:-1], "search_factor=5.0"]) == 2  # other settings: refused


def test_report_got10k_val_has_ao_columns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import cv2

    from mixformer.datagen.synthetic import generate_sequence

    val = tmp_path / "got10k" / "val"
    names = ["GOT-10k_Val_000001", "GOT-10k_Val_000002"]
    for k, name in enumerate(names):
        seq = generate_sequence(k, num_frames=5, height=40, width=48)
        (val / name).mkdir(parents=True)
        for i, frame in enumerate(seq.frames, start=1):
            cv2.imwrite(str(val / name / f"{i:08d}.jpg"), frame[:, :, ::-1])
        rows = "".join(",".join(str(int(v)) for v in b) + "\n" for b in seq.boxes)
        (val / name / "groundtruth.txt").write_text(rows)
        (val / name / "cover.label").write_text("".join(f"{8 * int(v)}\n" for v in seq.visible))
        res = tmp_path / "perfect" / "got10k"
        res.mkdir(parents=True, exist_ok=True)
        (res / f"{name}.txt").write_text(rows.replace(",", "\t"))
    (val / "list.txt").write_text("\n".join(names) + "\n")
    args = ["report", str(tmp_path / "perfect"), "--dataset", "got10k_val"]
    assert main([*args, "--root", str(tmp_path / "got10k")]) == 0
    out = capsys.readouterr().out
    header, _, row = out.splitlines()[1:4]
    assert header.split()[:4] == ["Tracker", "AO", "SR50", "SR75"]
    assert row.split()[0] == "perfect" and float(row.split()[1]) == pytest.approx(100.0)
    test_args = ["report", str(tmp_path / "perfect"), "--dataset", "got10k_test", "--root"]
    assert main([*test_args, str(val)]) == 2
    assert "no public ground truth" in capsys.readouterr().err


def _short_long_empty(data: Path, res: Path) -> dict[str, Path]:
    """Results for the 3 six-frame sequences of ``data``: one cut short, one too long, one
    empty (``_fake_results`` first)."""
    files = {name: res / f"synth-000{k}.txt" for k, name in enumerate(["short", "long", "empty"])}
    rows = files["short"].read_text().splitlines(keepends=True)
    files["short"].write_text("".join(rows[:4]))
    files["long"].write_text(files["long"].read_text() + "".join(rows[:3]))
    files["empty"].write_text("")
    return files


@pytest.fixture
def six_frames(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    argv = ["synth", str(data), "--sequences", "3", "--frames", "6"]
    assert main([*argv, "--height", "40", "--width", "40"]) == 0
    return data


def test_report_refuses_result_files_of_the_wrong_length(
    six_frames: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog
) -> None:
    import logging

    res = tmp_path / "res"
    _fake_results(res, six_frames, 0.0)
    files = _short_long_empty(six_frames, res)
    args = ["report", str(res), "--dataset", "generic", "--root", str(six_frames)]
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "rep")]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0] == (
        f"mixformer report: error: {files['short']}: 4 lines, expected 6 (one per frame of "
        "synth-0000); 2 more result files too; pass --allow-incomplete to score them anyway "
        "(a warning per file)"
    )
    assert "AUC" not in captured.out and not (tmp_path / "rep").exists()
    with caplog.at_level(logging.WARNING):
        assert main([*args, "--allow-incomplete"]) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        f"{files['short']}: 4 lines, expected 6 (one per frame of synth-0000)",
        f"{files['long']}: 9 lines, expected 6 (one per frame of synth-0001)",
        f"{files['empty']}: 0 lines, expected 6 (one per frame of synth-0002)",
    ]
    assert "AUC" in capsys.readouterr().out
    assert "--allow-incomplete" in build_help("report")


def build_help(command: str) -> str:
    from mixformer.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sub.choices[command].format_help()


def test_pack_refuses_result_files_of_the_wrong_length(
    six_frames: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog
) -> None:
    import logging

    res = tmp_path / "res"
    _fake_results(res, six_frames, 0.0)
    files = _short_long_empty(six_frames, res)
    out = tmp_path / "sub.zip"
    capsys.readouterr()
    assert main(["pack", "trackingnet", str(res), str(out)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(
        f"mixformer pack: error: {files['short']}: 4 lines, expected 6 (as many as "
        "synth-0000_time.txt); 2 more result files too; pass --allow-incomplete to pack them"
    )
    assert not out.exists() and not list(tmp_path.glob(".sub*"))
    with caplog.at_level(logging.WARNING):
        assert main(["pack", "trackingnet", str(res), str(out), "--allow-incomplete"]) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings[:3] == [
        f"{files['short']}: 4 lines, expected 6 (as many as synth-0000_time.txt)",
        f"{files['long']}: 9 lines, expected 6 (as many as synth-0001_time.txt)",
        f"{files['empty']}: 0 lines, expected 6 (as many as synth-0002_time.txt)",
    ]
    with zipfile.ZipFile(out) as zf:
        assert len(zf.read("synth-0000.txt").decode().splitlines()) == 4
    assert "--allow-incomplete" in build_help("pack")


def test_pack_checks_lengths_against_the_test_split(tmp_path: Path, capsys) -> None:
    root = tmp_path / "TrackingNet"
    (root / "anno").mkdir(parents=True)
    (root / "frames" / "seqA").mkdir(parents=True)
    (root / "anno" / "seqA.txt").write_text("1,2,3,4\n")
    for i in range(5):
        (root / "frames" / "seqA" / f"{i}.jpg").write_bytes(b"")
    res = tmp_path / "res"
    res.mkdir()
    (res / "seqA.txt").write_text("1,2,3,4\n" * 3)  # no time file: only --root can tell
    out = tmp_path / "tn.zip"
    assert main(["pack", "trackingnet", str(res), str(out), "--root", str(root)]) == 2
    msg = capsys.readouterr().err.strip()
    assert "\n" not in msg
    assert f"{res / 'seqA.txt'}: 3 lines, expected 5 (one per frame of seqA)" in msg
    assert not out.exists()
    (res / "seqA.txt").write_text("1,2,3,4\n" * 5)
    assert main(["pack", "trackingnet", str(res), str(out), "--root", str(root)]) == 0
    (res / "seqA.txt").write_text("")
    assert main(["pack", "trackingnet", str(res), str(out)]) == 2
    assert f"{res / 'seqA.txt'}: 0 lines, expected at least 1" in capsys.readouterr().err
