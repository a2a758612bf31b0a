"""tools/graft_score.py: a stage-1 result with the shipped score module put back on top."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

from mixformer.models import build_model, default_weights_path
from mixformer.models.config import DEFAULT_MODEL
from mixformer.models.weights import save_weights

SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "graft_score.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120
    )


def test_grafted_file_has_the_stage1_boxes_and_the_donors_score(tmp_path: Path) -> None:
    torch.manual_seed(3)
    stage1 = build_model(DEFAULT_MODEL, score_head=False, head_bn="batch")  # random, as trained
    save_weights(stage1, tmp_path / "s1.pth")
    out = tmp_path / "grafted.pth"
    proc = _run(str(tmp_path / "s1.pth"), str(out))
    assert proc.returncode == 0, proc.stderr
    got = torch.load(out, weights_only=True)
    shipped = torch.load(default_weights_path(DEFAULT_MODEL), weights_only=True)
    assert got["preset"] == DEFAULT_MODEL and got["model_config"] == shipped["model_config"]
    s1 = stage1.state_dict()
    score = [k for k in shipped["net"] if k.startswith("score_branch.")]
    assert score and set(got["net"]) == set(shipped["net"])
    for k, v in got["net"].items():
        if k in score:
            assert torch.equal(v, shipped["net"][k]), k
        elif k in s1 and "running_" not in k and "num_batches" not in k:
            assert torch.equal(v, s1[k]), k
    box_keys = [k for k in s1 if k.startswith("box_head.") and k.endswith("weight")]
    assert any(not torch.equal(got["net"][k], shipped["net"][k]) for k in box_keys)


def test_missing_file_is_one_line_exit_2(tmp_path: Path) -> None:
    proc = _run(str(tmp_path / "nope.pth"), str(tmp_path / "out.pth"))
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "not found" in proc.stderr
    assert not (tmp_path / "out.pth").exists()
