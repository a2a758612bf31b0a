"""Runner: result format, resume, settings record, sharding, per-sequence errors (tiny model)."""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mixformer.cli import main
from mixformer.data.benchmarks import get_benchmark, load_benchmark
from mixformer.datagen.synthetic import write_benchmark
from mixformer.evaluation.locks import results_lock
from mixformer.evaluation.report import evaluate_tracker
from mixformer.evaluation.runner import (
    parse_shard,
    run_benchmark,
    shard_from_env,
    shard_sequences,
)
from mixformer.evaluation.settings import RunSettings
from mixformer.tracking import TrackerConfig

BENCH = get_benchmark("generic")


def _settings(**tracker: float) -> RunSettings:
    cfg = TrackerConfig.preset("default", model="mixformer-tiny").replace(**tracker)
    return RunSettings("generic", "mixformer-tiny", "random", dataclasses.asdict(cfg))


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    write_benchmark(
        root, num_sequences=3, num_frames=2, seed=4, height=48, width=64, progress=False
    )
    return root


@pytest.fixture(scope="module")
def full_run(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One complete run of the 3 sequences; tests copy it instead of tracking again."""
    res = tmp_path_factory.mktemp("full") / "res"
    summary = run_benchmark(
        load_benchmark("generic", data), BENCH, res, _settings(), progress=False
    )
    assert sorted(summary.done) == ["synth-0000", "synth-0001", "synth-0002"]
    assert not summary.failed and summary.frames == 6
    return res


def test_result_files_reference_format(full_run: Path, data: Path) -> None:
    gt = load_benchmark("generic", data)[0].ground_truth
    lines = (full_run / "synth-0000.txt").read_text().splitlines()
    assert len(lines) == 2
    assert all(len(line.split("\t")) == 4 for line in lines)
    first = [int(v) for v in lines[0].split("\t")]
    assert first == [int(v) for v in gt[0]]  # frame 0 = the initial box, truncated
    times = (full_run / "synth-0000_time.txt").read_text().splitlines()
    assert len(times) == 2 and all(len(t.split(".")[1]) == 6 for t in times)
    assert (full_run / "settings.json").is_file()


def test_resume_skips_finished_and_redoes_lost(full_run: Path, data: Path, tmp_path: Path) -> None:
    res = tmp_path / "res"
    shutil.copytree(full_run, res)
    # A run killed while tracking synth-0001: its box file never appeared.
    (res / "synth-0001.txt").unlink()
    (res / ".synth-0001.txt.abc.tmp").write_text("partial")
    before = (res / "synth-0000.txt").stat().st_mtime_ns
    summary = run_benchmark(
        load_benchmark("generic", data), BENCH, res, _settings(), progress=False
    )
    assert summary.done == ["synth-0001"]
    assert sorted(summary.skipped) == ["synth-0000", "synth-0002"]
    assert (res / "synth-0001.txt").is_file()
    assert (res / "synth-0000.txt").stat().st_mtime_ns == before


def test_settings_mismatch_refused(full_run: Path, data: Path, tmp_path: Path) -> None:
    res = tmp_path / "res"
    shutil.copytree(full_run, res)
    seqs = load_benchmark("generic", data)
    with pytest.raises(ValueError, match=r"search_factor: 4\.5 \(recorded\) vs 4\.0"):
        run_benchmark(seqs, BENCH, res, _settings(search_factor=4.0), progress=False)
    (res / "settings.json").unlink()
    with pytest.raises(ValueError, match="no settings.json"):
        run_benchmark(seqs, BENCH, res, _settings(), progress=False)


def test_inference_path_is_recorded_and_not_mixed(
    full_run: Path, data: Path, tmp_path: Path
) -> None:
    """settings.json records fast/plain; a record from before the field means the plain path."""
    import json

    res = tmp_path / "res"
    shutil.copytree(full_run, res)
    record = json.loads((res / "settings.json").read_text())
    assert record["fast"] is True  # the default
    seqs = load_benchmark("generic", data)
    plain = dataclasses.replace(_settings(), fast=False)
    with pytest.raises(ValueError, match=r"inference path: fast \(recorded\) vs plain"):
        run_benchmark(seqs, BENCH, res, plain, progress=False)
    del record["fast"]
    (res / "settings.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"inference path: plain \(--plain\) \(recorded\)"):
        run_benchmark(seqs, BENCH, res, _settings(), progress=False)
    assert run_benchmark(seqs, BENCH, res, plain, progress=False).skipped


def test_backend_is_recorded_and_not_mixed(full_run: Path, data: Path, tmp_path: Path) -> None:
    """settings.json records the backend that ran; a record from before the field means torch."""
    import json

    res = tmp_path / "res"
    shutil.copytree(full_run, res)
    record = json.loads((res / "settings.json").read_text())
    assert record["backend"] == "torch"  # resolved, never "auto"
    seqs = load_benchmark("generic", data)
    openvino = dataclasses.replace(_settings(), backend="openvino")
    with pytest.raises(ValueError, match=r"backend: torch \(recorded; --backend torch continues"):
        run_benchmark(seqs, BENCH, res, openvino, progress=False)
    del record["backend"]
    (res / "settings.json").write_text(json.dumps(record))
    assert run_benchmark(seqs, BENCH, res, _settings(), progress=False).skipped


def test_shards_are_disjoint_and_report_merges(full_run: Path, data: Path, tmp_path: Path) -> None:
    seqs = load_benchmark("generic", data)
    parts = [shard_sequences(seqs, i, 2) for i in range(2)]
    assert [s.name for s in parts[0]] == ["synth-0000", "synth-0002"]
    assert [s.name for s in parts[1]] == ["synth-0001"]
    # Shard 1 runs on "another machine"; shard 0's results come from the full run.
    res1 = tmp_path / "shard1"
    summary = run_benchmark(seqs, BENCH, res1, _settings(), shard=(1, 2), progress=False)
    assert summary.done == ["synth-0001"] and not summary.skipped
    res0 = tmp_path / "shard0"
    res0.mkdir()
    for name in ("synth-0000", "synth-0002"):
        for suffix in (".txt", "_time.txt"):
            shutil.copy(full_run / f"{name}{suffix}", res0)
    with pytest.raises(ValueError, match="no result for 1 of 3"):
        evaluate_tracker("t", [res0], seqs, BENCH)
    merged = evaluate_tracker("t", [res0, res1], seqs, BENCH)
    whole = evaluate_tracker("t", [full_run], seqs, BENCH)
    assert len(merged.sequences) == 3 and not merged.missing
    # Seeded random weights: the shard reproduces the full run exactly.
    assert merged.summary == pytest.approx(whole.summary)


def test_failed_sequence_recorded_and_run_continues(data: Path, tmp_path: Path) -> None:
    root = tmp_path / "data"
    shutil.copytree(data, root)
    (root / "list.txt").write_text("synth-0000\nsynth-0001\n")
    bad = root / "synth-0000" / "img" / "00000002.jpg"
    bad.write_bytes(b"not a jpeg")
    seqs = load_benchmark("generic", root)  # frames exist: the damage shows while tracking
    res = tmp_path / "res"
    summary = run_benchmark(seqs, BENCH, res, _settings(), progress=False)
    assert summary.done == ["synth-0001"]
    assert (
        list(summary.failed) == ["synth-0000"] and "cannot decode" in summary.failed["synth-0000"]
    )
    err = (res / "errors" / "synth-0000.txt").read_text()
    assert "Traceback" in err and "00000002.jpg" in err
    assert not (res / "synth-0000.txt").exists()
    shutil.copy(data / "synth-0000" / "img" / "00000002.jpg", bad)
    summary = run_benchmark(seqs, BENCH, res, _settings(), progress=False)
    assert summary.done == ["synth-0000"] and not summary.failed
    assert not (res / "errors" / "synth-0000.txt").exists()


def test_parse_shard_and_torchrun_env(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_shard("1/4") == (1, 4)
    for bad in ("4/4", "x", "1/0", "-1/2"):
        with pytest.raises(ValueError, match="shard"):
            parse_shard(bad)
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert shard_from_env() is None
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert shard_from_env() == (2, 3)


@pytest.mark.slow
def test_two_worker_processes_match_in_process(full_run: Path, data: Path, tmp_path: Path) -> None:
    seqs = load_benchmark("generic", data)
    res = tmp_path / "res"
    summary = run_benchmark(seqs, BENCH, res, _settings(), workers=2, progress=False)
    assert sorted(summary.done) == ["synth-0000", "synth-0001", "synth-0002"]
    for s in seqs:
        a = np.loadtxt(res / f"{s.name}.txt")
        b = np.loadtxt(full_run / f"{s.name}.txt")
        np.testing.assert_array_equal(a, b)


_HOLD_LOCK = (
    "import sys\n"
    "from mixformer.evaluation.locks import results_lock\n"
    "shard = tuple(int(v) for v in sys.argv[2].split('/'))\n"
    "with results_lock(sys.argv[1], shard):\n"
    "    print('locked', flush=True)\n"
    "    sys.stdin.read()\n"
)


def _hold_lock(res: Path, shard: str = "0/1") -> subprocess.Popen:
    """Another process that holds the results folder's lock until its stdin closes."""
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(res), shard],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    return holder


def test_second_run_into_a_locked_folder_is_refused(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    res = tmp_path / "res"
    seqs = load_benchmark("generic", data)
    holder = _hold_lock(res)
    try:
        with pytest.raises(ValueError, match="in use by another evaluate run") as err:
            run_benchmark(seqs, BENCH, res, _settings(), progress=False)
        assert str(res) in str(err.value)
        assert not list(res.glob("*.txt")) and not (res / "settings.json").exists()
        argv = ["evaluate", "--dataset", "generic", "--root", str(data), "--results", str(res)]
        assert main([*argv, "--no-progress"]) == 2
        msg = capsys.readouterr().err.strip()
        assert "\n" not in msg and str(res) in msg and "in use" in msg
        # A shard of a sharded run cannot slip in beside an unsharded run either.
        with pytest.raises(ValueError, match="in use"):
            run_benchmark(seqs, BENCH, res, _settings(), shard=(1, 2), progress=False)
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)
    # Released when the holder ends: the run goes ahead.
    summary = run_benchmark(seqs, BENCH, res, _settings(), shard=(1, 2), progress=False)
    assert summary.done == ["synth-0001"]


def test_shards_share_a_folder_but_not_a_shard(data: Path, tmp_path: Path) -> None:
    res = tmp_path / "res"
    holder = _hold_lock(res, "0/2")
    try:
        with pytest.raises(ValueError, match="shard 0/2 is in use"):
            with results_lock(res, (0, 2)):
                pass
        with pytest.raises(ValueError, match="in use"):
            with results_lock(res):  # an unsharded run would track shard 0's sequences
                pass
        with results_lock(res, (1, 2)):  # the other shard of the same run: fine
            pass
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)


def test_runs_split_into_different_shard_counts_exclude_each_other(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Shard 0/3 overlaps shards 0/2 and 1/2: it must not run beside a 2-way split."""
    res = tmp_path / "res"
    holder = _hold_lock(res, "0/2")
    try:
        for shard in [(0, 3), (2, 3), (1, 4)]:
            with pytest.raises(ValueError, match="split into 2 shards") as err:
                with results_lock(res, shard):
                    pass
            msg = str(err.value)
            assert "\n" not in msg and str(res) in msg
            assert f"shard 0/2 (pid {holder.pid})" in msg
        argv = ["evaluate", "--dataset", "generic", "--root", str(data), "--results", str(res)]
        assert main([*argv, "--shard", "1/3", "--no-progress"]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("mixformer evaluate: error: ")
        assert str(res) in lines[0] and f"pid {holder.pid}" in lines[0]
        assert not list(res.glob("*.txt")) and not (res / "settings.json").exists()
        with results_lock(res, (1, 2)):  # the same split: fine
            pass
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)
    with results_lock(res, (0, 3)):  # the 2-way run has ended
        # ... and now a 2-way shard is refused beside the 3-way run.
        with pytest.raises(ValueError, match="split into 3 shards"):
            with results_lock(res, (1, 2)):
                pass


def test_a_refused_unsharded_run_names_the_holders(data: Path, tmp_path: Path) -> None:
    res = tmp_path / "res"
    holder = _hold_lock(res, "1/2")
    try:
        with pytest.raises(ValueError, match="in use by another evaluate run") as err:
            with results_lock(res):
                pass
        assert f"shard 1/2 (pid {holder.pid})" in str(err.value)
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)
    holder = _hold_lock(res)
    try:
        with pytest.raises(ValueError, match=f"an unsharded run \\(pid {holder.pid}\\)"):
            with results_lock(res, (0, 2)):
                pass
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)


def test_stale_temporary_files_are_removed(full_run: Path, data: Path, tmp_path: Path) -> None:
    res = tmp_path / "res"
    shutil.copytree(full_run, res)
    old, fresh = res / ".synth-0001.txt.abc.tmp", res / ".synth-0002.txt.def.tmp"
    errors_old = res / "errors" / ".synth-0000.txt.ghi.tmp"
    for p in (old, fresh, errors_old):
        p.parent.mkdir(exist_ok=True)
        p.write_text("partial")
    hour_ago = time.time() - 3600
    for p in (old, errors_old):
        os.utime(p, (hour_ago, hour_ago))
    run_benchmark(load_benchmark("generic", data), BENCH, res, _settings(), progress=False)
    assert not old.exists() and not errors_old.exists()
    assert fresh.exists()  # may belong to a writer that is still running


def _is_running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _workers_of(pid: int) -> list[int]:
    """The multiprocessing worker processes whose parent is ``pid`` (from /proc)."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmd = (d / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid and b"spawn_main" in cmd:
            out.append(int(d.name))
    return out


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="needs Linux /proc")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_killed_evaluate_takes_its_workers_along(tmp_path: Path, sig: signal.Signals) -> None:
    data, res = tmp_path / "data", tmp_path / "res"
    write_benchmark(
        data, num_sequences=6, num_frames=40, seed=5, height=48, width=64, progress=False
    )
    argv = ["evaluate", "--dataset", "generic", "--root", str(data), "--results", str(res)]
    with open(tmp_path / "log.txt", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mixformer", *argv, "--workers", "2", "--no-progress"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 180
        while not [p for p in res.glob("synth-*.txt") if "_time" not in p.name]:
            assert proc.poll() is None and time.monotonic() < deadline, "no sequence finished"
            time.sleep(0.2)
        workers = _workers_of(proc.pid)
        assert len(workers) == 2
        proc.send_signal(sig)
        rc = proc.wait(timeout=30)
        deadline = time.monotonic() + 10
        while any(_is_running(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_is_running(w) for w in workers), "workers outlived the killed run"
    finally:
        proc.kill()
        proc.wait()
        for w in workers:  # do not leave them behind when the test fails
            if _is_running(w):
                os.kill(w, signal.SIGKILL)
    if sig == signal.SIGTERM:
        assert rc == 143  # handled like Ctrl-C, reported as terminated
        assert "terminated: " in (tmp_path / "log.txt").read_text()
    done = [p for p in res.glob("synth-*.txt") if "_time" not in p.name]
    assert done and all(len(p.read_text().splitlines()) == 40 for p in done)


def test_cli_evaluate_plain(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import json

    import torch

    data, res = tmp_path / "data", tmp_path / "res"
    assert main(["synth", str(data), "--sequences", "1", "--frames", "2", "--height", "48"]) == 0
    args = ["evaluate", "--dataset", "generic", "--root", str(data), "--results", str(res)]
    old = torch.get_num_threads()
    try:
        assert main([*args, "--threads", "1", "--no-progress", "--plain"]) == 0
        record = json.loads((res / "settings.json").read_text())
        assert record["fast"] is False and record["backend"] == "torch"
        assert "plain path in fp32 on torch" in capsys.readouterr().out
        assert main([*args, "--threads", "1", "--no-progress"]) == 2  # the default is fast
    finally:
        torch.set_num_threads(old)
    assert "inference path: plain (--plain) (recorded) vs fast (now)" in capsys.readouterr().err


@pytest.mark.slow
def test_sigterm_stops_a_run_with_workers_cleanly(tmp_path: Path) -> None:
    """SIGTERM while two workers track: no traceback (it was a concurrent.futures
    InvalidStateError from the pool's manager thread in about 3 of 8 runs), one line, exit 143,
    finished sequences kept."""
    data, res = tmp_path / "data", tmp_path / "res"
    write_benchmark(
        data, num_sequences=16, num_frames=20, seed=6, height=48, width=64, progress=False
    )
    argv = ["evaluate", "--dataset", "generic", "--root", str(data), "--results", str(res)]
    for _ in range(2):  # the race needs a few tries to show; each resumes the last
        proc = subprocess.Popen(
            [sys.executable, "-m", "mixformer", *argv]
            + ["--workers", "2", "--threads", "1", "--no-progress"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        before = len(_done(res))
        deadline = time.monotonic() + 180
        while len(_done(res)) == before:
            assert proc.poll() is None and time.monotonic() < deadline, "no sequence finished"
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 143, err
        assert "Traceback" not in err and "Error" not in err, err
        last = err.strip().splitlines()[-1]
        done = _done(res)
        assert last == (
            f"terminated: {len(done)} of 16 sequences done (kept in {res}); run the same "
            "command again to continue"
        )
        assert before < len(done) < 16
        assert all(len(p.read_text().splitlines()) == 20 for p in done)


def _done(res: Path) -> list[Path]:
    return [p for p in res.glob("synth-*.txt") if "_time" not in p.name]
