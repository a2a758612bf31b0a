"""Runner: result format, resume, settings record, sharding, per-sequence errors (tiny model)."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest

from mixformer.data.benchmarks import get_benchmark, load_benchmark
from mixformer.data.synthetic import write_benchmark
from mixformer.evaluation.report import evaluate_tracker
from mixformer.evaluation.runner import (
    RunSettings,
    parse_shard,
    run_benchmark,
    shard_from_env,
    shard_sequences,
)
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
    with pytest.raises(ValueError, match=r"search_factor: 5\.0 \(recorded\) vs 4\.5"):
        run_benchmark(seqs, BENCH, res, _settings(search_factor=4.5), progress=False)
    (res / "settings.json").unlink()
    with pytest.raises(ValueError, match="no settings.json"):
        run_benchmark(seqs, BENCH, res, _settings(), progress=False)


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
