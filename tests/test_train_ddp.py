"""DDP: two gloo processes with batch B each match one process with batch 2B."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

# Frozen head BN (BatchNorm statistics are per process in DDP, as in the reference) and no
# DropPath (its random draws are per rank): everything else must agree.
OVERRIDES = {
    "base": "tiny-synthetic-stage1",
    "model_overrides": {
        "dim_embed": [16, 32, 32],
        "num_heads": [1, 1, 1],
        "depth": [1, 1, 1],
        "head_dim": 32,
        "template_size": 64,
        "search_size": 160,
        "head_bn": "frozen",
    },
    "template_size": 64,
    "search_size": 160,
    "synthetic_sequences": 6,
    "synthetic_frames": 24,
    "synthetic_size": [96, 128],
    "samples_per_epoch": 4,
    "epochs": 1,
    "val_datasets": [],
    "num_workers": 0,
    "tensorboard": False,
}
# The same on a micro MixViT (fused qkv attention, pyramid corner head, fixed position tables).
VIT_OVERRIDES = {
    **OVERRIDES,
    "model": "mixvit-b",
    "model_overrides": {
        "embed_dim": 32,
        "depth": 1,
        "num_heads": 2,
        "drop_path_rate": 0.0,
        "head_dim": 16,
        "template_size": 64,
        "search_size": 128,
        "head_bn": "frozen",
    },
    "search_size": 128,
}


def _run(args: list[str], cwd: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]


@pytest.mark.slow
@pytest.mark.parametrize("overrides", [OVERRIDES, VIT_OVERRIDES], ids=["cvt", "vit"])
def test_two_gloo_processes_match_one_process_with_combined_batch(
    tmp_path: Path, overrides: dict
) -> None:
    cfg = tmp_path / "ddp.yaml"
    cfg.write_text(yaml.safe_dump(overrides))
    train = ["-m", "mixformer.train", str(cfg)]
    opts = ["--no-progress", "--device", "cpu", "--output"]
    _run([sys.executable, *train, "batch_size=2", *opts, str(tmp_path / "one")], tmp_path)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    _run([*torchrun, *train, "batch_size=1", *opts, str(tmp_path / "two")], tmp_path)
    one = torch.load(tmp_path / "one" / "model_final.pth", weights_only=True)["net"]
    two = torch.load(tmp_path / "two" / "model_final.pth", weights_only=True)["net"]
    # Same losses and (all-reduced, pre-clipping) gradient norms as the single process.
    rows_one = list(csv.DictReader((tmp_path / "one" / "log.csv").open()))
    rows_two = list(csv.DictReader((tmp_path / "two" / "log.csv").open()))
    for key in ("loss", "l1", "grad_norm"):
        assert float(rows_two[0][key]) == pytest.approx(float(rows_one[0][key]), rel=1e-4), key
    assert float(rows_two[0]["samples"]) == 4.0  # counted over both ranks
    # Same weights. AdamW turns float-rounding noise in a gradient that is exactly zero in
    # theory (e.g. the bias before the soft-argmax) into a step of up to lr in either direction,
    # so two runs may differ by up to 2 * lr per optimizer step on the few such entries; require
    # close agreement everywhere else.
    lr = float(rows_one[0]["lr"])
    steps = overrides["samples_per_epoch"] // 2 * overrides["epochs"]  # global batch 2
    for k in one:
        diff = (one[k].float() - two[k].float()).abs()
        assert diff.max() <= 2 * steps * lr * 1.01, k
        if one[k].numel() >= 16:
            assert (diff > 1e-5).float().mean() < 0.01, k
    # The runs did train: the weights moved from their initial values.
    from mixformer.train import load_train_config
    from mixformer.train.network import build_network

    init = build_network(load_train_config(cfg)[0]).state_dict()
    assert any(not torch.equal(init[k], one[k]) for k in one if k.endswith("weight"))
