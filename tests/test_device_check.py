"""tools/device_check.py (the GPU check) runs its every section on the CPU with ``--cpu``."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

from mixformer.models import get_config, list_models
from mixformer.models.config import DEFAULT_MODEL

SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "device_check.py"


def run_check(tmp_path: Path, *extra: str) -> tuple[subprocess.CompletedProcess, dict[str, Any]]:
    out = tmp_path / "tmp.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--cpu", "--out", str(out), *extra],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
    )
    assert out.is_file(), proc.stderr[-3000:]
    return proc, json.loads(out.read_text())


def numbers(value: Any) -> list[float]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int | float):
        return [float(value)]
    if isinstance(value, dict):
        return [x for v in value.values() for x in numbers(v)]
    return []


def test_cpu_run_has_a_finite_row_per_preset(tmp_path: Path) -> None:
    proc, data = run_check(tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert data["errors"] == []
    presets = data["settings"]["presets"]
    assert len(presets) >= 3
    rows = {r["preset"]: r for r in data["rows"]}
    assert set(presets) <= set(rows)
    families = set()
    for name in presets:
        row = rows[name]
        for path in ("fp32-plain", "fp32", "bf16", "fp16"):
            assert isinstance(row[f"box_diff_{path}"], float), (name, path, row)
            assert row[f"box_diff_{path}"] < 0.05, (name, path)
        assert row["box_diff_fp32"] < 1e-4
        assert isinstance(row["fps_fp32"], float) and row["fps_fp32"] > 0
        assert all(math.isfinite(x) for x in numbers(row)), row
        families.add(row["family"])
    assert families == {"cvt", "mbv3", "v2", "vit", "convmae"}
    # one training step of every family, one MultiTracker run with 16 targets
    trained = [r for r in rows.values() if isinstance(r.get("train_bf16_loss"), float)]
    families_trained = {get_config(r["preset"]).family for r in trained}
    assert families_trained == {get_config(n).family for n in list_models()}
    assert all(math.isfinite(x) for r in rows.values() for x in numbers(r))
    # the shipped default model: CPU against CPU in fp32 is the same tracker, so no difference
    shipped = rows[DEFAULT_MODEL]
    assert shipped["weights_frames"] == 3
    assert shipped["weights_box_diff_fp32"] == 0.0 and shipped["weights_score_flips_fp32"] == 0
    multi = rows[data["settings"]["multi_presets"][0]]
    assert multi["multi_targets"] == 16 and multi["multi_calls_per_frame"] == 1.0
    assert set(data["sections"].values()) <= {"done", "not run"}
    # the printed table has a line per row
    table = proc.stdout
    assert all(f"| {name} |" in table for name in presets)


def test_budget_skips_the_remaining_sections(tmp_path: Path) -> None:
    proc, data = run_check(tmp_path, "--budget-s", "0", "--presets", "mixformer-tiny")
    assert proc.returncode == 0, proc.stderr[-3000:]
    row = data["rows"][0]
    assert row["box_diff_fp32"] == "skipped (budget)"
    assert row["fps_fp32"] == "skipped (budget)"
    assert set(data["sections"].values()) <= {"skipped (budget)", "not run"}


def test_compiled_search_step_runs_in_the_tracker(tmp_path: Path) -> None:
    # the eager backend traces the search step with dynamo without compiling kernels
    proc, data = run_check(
        tmp_path,
        *("--sections", "compile", "--presets", "mixformer-tiny"),
        *("--compile", "reduce-overhead", "--compile-backend", "eager"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    row = data["rows"][0]
    assert row["compile_fps"] > 0 and math.isfinite(row["compile_speedup"])
    assert row["compile_max_box_diff_px"] < 1e-3


def test_eager_rows_and_shipped_weights_in_every_dtype(tmp_path: Path) -> None:
    proc, data = run_check(
        tmp_path,
        *("--sections", "weights,fps", "--presets", "mixformer-tiny"),
        *("--fps-dtypes", "fp32,bf16,fp32-eager"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {r["preset"]: r for r in data["rows"]}
    tiny = rows["mixformer-tiny"]
    assert tiny["fps_fp32"] > 0 and tiny["fps_fp32-eager"] > 0 and tiny["fps_bf16"] > 0
    assert "graphs_fp32" not in tiny  # a CPU engine has no CUDA graphs
    shipped = rows[DEFAULT_MODEL]
    assert shipped["weights_box_diff_fp32"] == 0.0
    assert "weights_box_diff_bf16" in shipped and "weights_box_diff_fp32-eager" not in shipped
