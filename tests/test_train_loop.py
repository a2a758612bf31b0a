"""Training loop: exact resume after a kill, NaN stop, checkpoint format, stage 2, CLI."""

from __future__ import annotations

import logging
import os
import struct
import time
import zipfile
from pathlib import Path

import pytest
import torch

import mixformer
from conftest import SMALL_MODEL, small_config
from mixformer.cli import main
from mixformer.models.weights import CheckpointError
from mixformer.train import NonFiniteLossError, Trainer
from mixformer.train import trainer as trainer_mod
from mixformer.train.heldout import heldout_report

# A miniature network on small crops: same code paths, a fraction of the cost.


def _net(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["net"]


def test_killed_and_resumed_run_matches_uninterrupted(tmp_path: Path) -> None:
    cfg = small_config()
    full = Trainer(cfg, tmp_path / "a", progress=False).fit()
    assert full is not None
    # Kill during epoch 2 (after global step 3 of 4): only the epoch-1 checkpoint exists.
    assert Trainer(cfg, tmp_path / "b", progress=False).fit(stop_at_step=3) is None
    assert [p.name for p in (tmp_path / "b" / "checkpoints").iterdir()] == ["ckpt_ep0001.pth"]
    with pytest.raises(ValueError, match="--resume"):
        Trainer(cfg, tmp_path / "b", progress=False)
    resumed = Trainer(cfg, tmp_path / "b", resume=True, progress=False)
    assert resumed.start_epoch == 1
    final = resumed.fit()
    a, b = _net(full), _net(final)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    rows = (tmp_path / "b" / "log.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,split") and len(rows) == 3


def test_checkpoint_format_and_slim_weights(tmp_path: Path) -> None:
    cfg = small_config(epochs=1)
    final = Trainer(cfg, tmp_path, progress=False).fit()
    ckpt = torch.load(tmp_path / "checkpoints" / "ckpt_ep0001.pth", weights_only=True)
    for key in ("net", "model_config", "preset", "optimizer", "scheduler", "rng", "epoch"):
        assert key in ckpt
    assert ckpt["epoch"] == 1 and ckpt["preset"] == "mixformer-tiny"
    assert ckpt["train_config"]["stage"] == 1
    slim = torch.load(final, weights_only=True)
    assert set(slim) == {"net", "model_config", "preset"}
    model = mixformer.build_model(None, weights=final)
    assert model.config.backbone.dim_embed == (16, 32, 32) and model.score_branch is None


def test_stage2_trains_only_the_score_module(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s1 = Trainer(small_config(epochs=1, samples_per_epoch=2), tmp_path / "s1", progress=False)
    s1_final = s1.fit()
    cfg = small_config(
        stage=2,
        epochs=1,
        stage1_checkpoint=str(s1_final),
        val_datasets=("synthetic",),
        val_samples=4,
        val_every=1,
    )
    final = Trainer(cfg, tmp_path / "s2", progress=False).fit()
    before, after = _net(s1_final), _net(final)
    changed = {k for k in after if k in before and not torch.equal(before[k], after[k])}
    assert not changed - {k for k in before if k.endswith("num_batches_tracked")}
    assert any(k.startswith("score_branch.") for k in after)
    log = (tmp_path / "s2" / "log.csv").read_text()
    assert ",val," in log
    model = mixformer.build_model(None, weights=final)
    assert model.score_branch is not None
    report = heldout_report(model, "mixformer-tiny", 99, 1, 6, score_samples=4, progress=False)
    assert 0.0 <= report.tracker_auc <= 100.0 and 0.0 <= report.static_auc <= 100.0
    assert report.score_accuracy is not None and report.score_samples == 4
    # train-eval --set changes the tracker settings of the held-out run.
    argv = ["train-eval", str(final), "--seed", "99", "--sequences", "1", "--frames", "6"]
    argv += ["--score-samples", "0", "--no-progress"]
    assert main([*argv, "--set", "search_factor=4.5"]) == 0
    assert "AUC tracker" in capsys.readouterr().out
    assert main([*argv, "--set", "search_size=96"]) == 2  # reaches the Tracker's size check
    assert "do not match the model's" in capsys.readouterr().err
    assert main([*argv, "--set", "serch_factor=3.0"]) == 2
    assert "search_factor" in capsys.readouterr().err


def test_nan_loss_stops_and_keeps_last_good_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = small_config()
    Trainer(cfg.replace(epochs=1), tmp_path, progress=False).fit()
    good = (tmp_path / "checkpoints" / "ckpt_ep0001.pth").read_bytes()
    real = trainer_mod.stage_loss

    def nan_loss(*args: object, **kwargs: object) -> tuple[torch.Tensor, dict[str, float]]:
        loss, stats = real(*args, **kwargs)
        return loss * float("nan"), {**stats, "loss": float("nan")}

    monkeypatch.setattr(trainer_mod, "stage_loss", nan_loss)
    with pytest.raises(NonFiniteLossError, match=r"epoch 2, step 1 \(batch 1 .*ckpt_ep0001"):
        Trainer(cfg, tmp_path, resume=True, progress=False).fit()
    assert (tmp_path / "checkpoints" / "ckpt_ep0001.pth").read_bytes() == good
    assert not (tmp_path / "checkpoints" / "ckpt_ep0002.pth").exists()


def test_cli_errors_and_dry_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "tiny-synthetic-stage1.yaml", "epochz=1"]) == 2
    assert "did you mean 'epochs'" in capsys.readouterr().err
    assert main(["train", "nope.yaml"]) == 2
    assert main(["train"]) == 2
    assert main(["train", "--list"]) == 0
    assert "tiny-synthetic-stage2" in capsys.readouterr().out
    args = ["train", "tiny-synthetic-stage1", "batch_size=2", "synthetic_size=[96,128]"]
    assert main([*args, "--dry-run-data", "1", "--no-progress"]) == 0
    assert "samples/s" in capsys.readouterr().out
    # overrides after an option reach the config too (argparse alone refused them)
    late = ["train", "tiny-synthetic-stage1", "--no-progress", "batch_size=2", "epochz=1"]
    assert main(late) == 2
    assert "did you mean 'epochs'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "tiny-synthetic-stage1", "--no-progress", "stray"])
    args = ["train", "tiny-synthetic-stage1", "datasets=[lasot]", "data_roots.lasot=/nonexistent"]
    assert main([*args, "--output", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_gradient_accumulation_matches_the_combined_batch(tmp_path: Path) -> None:
    model = {**SMALL_MODEL, "head_bn": "frozen", "drop_path_rate": [0.0, 0.0, 0.0]}
    cfg = small_config(epochs=1, model_overrides=model)
    Trainer(cfg, tmp_path / "one", progress=False).fit()
    Trainer(cfg.replace(batch_size=1, accum_iter=2), tmp_path / "acc", progress=False).fit()
    rows = [
        (tmp_path / d / "log.csv").read_text().splitlines()[1].split(",") for d in ("one", "acc")
    ]
    header = (tmp_path / "one" / "log.csv").read_text().splitlines()[0].split(",")
    for key in ("loss", "grad_norm"):
        i = header.index(key)
        assert float(rows[1][i]) == pytest.approx(float(rows[0][i]), rel=1e-4), key
    one, acc = (
        _net(tmp_path / "one" / "model_final.pth"),
        _net(tmp_path / "acc" / "model_final.pth"),
    )
    for k in one:  # see test_train_ddp.py for the +-lr tolerance on zero-gradient entries
        diff = (one[k] - acc[k]).abs().float()
        assert diff.max() <= 2.5 * cfg.lr, k
        if one[k].numel() >= 16:
            assert (diff > 1e-5).float().mean() < 0.01, k


def _flip_tensor_bytes(path: Path) -> None:
    """Invert 8 bytes in the middle of the largest tensor of a torch zip file."""
    with zipfile.ZipFile(path) as zf:
        info = max((i for i in zf.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    with open(path, "r+b") as f:
        f.seek(info.header_offset)
        name_len, extra_len = struct.unpack("<HH", f.read(30)[26:30])
        at = info.header_offset + 30 + name_len + extra_len + info.file_size // 2
        f.seek(at)
        chunk = f.read(8)
        f.seek(at)
        f.write(bytes(b ^ 0xFF for b in chunk))


def test_corrupt_newest_checkpoint_is_refused_and_resume_falls_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = small_config()
    full = Trainer(cfg, tmp_path / "a", progress=False).fit()
    assert full is not None
    assert Trainer(cfg, tmp_path / "b", progress=False).fit() is not None
    newest = tmp_path / "b" / "checkpoints" / "ckpt_ep0002.pth"
    _flip_tensor_bytes(newest)
    with pytest.raises(CheckpointError, match=r"ckpt_ep0002\.pth: corrupt checkpoint"):
        mixformer.build_model(None, weights=newest)
    with caplog.at_level(logging.WARNING):
        resumed = Trainer(cfg, tmp_path / "b", resume=True, progress=False)
    assert resumed.start_epoch == 1
    assert "ckpt_ep0002.pth" in caplog.text and "falling back" in caplog.text
    final = resumed.fit()
    assert final is not None
    a, b = _net(full), _net(final)
    for k in a:  # epoch 2 was redone from the good epoch-1 checkpoint
        assert torch.equal(a[k], b[k]), k


def test_truncated_checkpoint_without_a_good_one_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = small_config(epochs=1)
    Trainer(cfg, tmp_path, progress=False).fit()
    ckpt = tmp_path / "checkpoints" / "ckpt_ep0001.pth"
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    with pytest.raises(CheckpointError) as err:
        Trainer(cfg.replace(epochs=2), tmp_path, resume=True, progress=False)
    msg = str(err.value)
    assert "no good checkpoint left" in msg and str(ckpt) in msg and "\n" not in msg
    args = ["train", "tiny-synthetic-stage1", "--output", str(tmp_path), "--resume"]
    assert main([*args, "--no-progress"]) == 2
    err_lines = capsys.readouterr().err.strip().splitlines()
    assert str(ckpt) in err_lines[-1] and "Traceback" not in "".join(err_lines)


def test_log_rows_lost_by_a_kill_come_back_on_resume(tmp_path: Path) -> None:
    cfg = small_config()
    Trainer(cfg, tmp_path, progress=False).fit()
    log_csv = tmp_path / "log.csv"
    lines = log_csv.read_text().splitlines(keepends=True)
    assert len(lines) == 3
    # Killed after the epoch-2 checkpoint but before its log row.
    log_csv.write_text("".join(lines[:2]))
    stale = tmp_path / "checkpoints" / ".ckpt_ep0003.pth.abc.tmp"
    stale.write_bytes(b"half a checkpoint")
    hour_ago = time.time() - 3600
    os.utime(stale, (hour_ago, hour_ago))
    Trainer(cfg.replace(epochs=3), tmp_path, resume=True, progress=False).fit()
    rows = log_csv.read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3"]
    assert rows[1:3] == [line.rstrip("\r\n") for line in lines[1:]]
    assert not stale.exists()  # a killed atomic write's leftover
