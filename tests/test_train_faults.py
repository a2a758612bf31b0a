"""``mixformer train`` faults (issue 22): a full disk while saving a checkpoint, and a resume
whose newest checkpoint no longer fits the run (the config changed)."""

from __future__ import annotations

import logging
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import small_config
from mixformer.cli import main
from mixformer.models.weights import CheckpointError
from mixformer.train import Trainer

# A miniature network on small crops (as tests/test_train_loop.py): seconds per epoch.
SMALL = """\
base: tiny-synthetic-stage1
model_overrides: {dim_embed: [16, 32, 32], num_heads: [1, 1, 1], depth: [1, 1, 2], head_dim: 32,
  template_size: 64, search_size: 160, drop_path_rate: [0.0, 0.0, 0.2]}
template_size: 64
search_size: 160
synthetic_sequences: 6
synthetic_frames: 24
synthetic_size: [96, 128]
samples_per_epoch: 4
batch_size: 2
epochs: 1
lr_drop_epoch: 1
val_datasets: []
num_workers: 0
tensorboard: false
"""


def _small(**changes: object):  # noqa: ANN202
    return small_config(**{"epochs": 1, **changes})


def _limited(limit: int):  # noqa: ANN202 - preexec_fn
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    return apply


def test_train_on_a_full_disk_is_one_line_and_keeps_the_last_checkpoint(tmp_path: Path) -> None:
    config = tmp_path / "small.yaml"
    config.write_text(SMALL)
    run = tmp_path / "run"
    argv = [sys.executable, "-m", "mixformer", "train", str(config)]
    out = ["--output", str(run), "--no-progress"]
    assert subprocess.run([*argv, *out], capture_output=True, timeout=600).returncode == 0
    good = run / "checkpoints" / "ckpt_ep0001.pth"
    before = good.read_bytes()
    assert len(before) > 300_000
    r = subprocess.run(
        [*argv, "epochs=2", *out, "--resume"],
        capture_output=True,
        text=True,
        timeout=600,
        preexec_fn=_limited(200_000),  # the epoch-2 checkpoint cannot be written whole
    )
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    last = r.stderr.strip().splitlines()[-1]
    ckpt2 = run / "checkpoints" / "ckpt_ep0002.pth"
    assert last == f"mixformer train: error: {ckpt2}: File too large"
    assert good.read_bytes() == before
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["ckpt_ep0001.pth"]


@pytest.fixture(scope="module")
def two_configs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A run of the small config (epoch 1) and one of a wider network (epoch 1)."""
    root = tmp_path_factory.mktemp("runs")
    small, wide = root / "small", root / "wide"
    assert Trainer(_small(), small, progress=False).fit() is not None
    wide_model = {**_small().model_overrides, "dim_embed": [16, 48, 48]}
    assert Trainer(_small(model_overrides=wide_model), wide, progress=False).fit() is not None
    return small, wide


def test_resume_skips_a_newest_checkpoint_of_another_shape(
    two_configs: tuple[Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    small, wide = two_configs
    run = tmp_path / "run"
    shutil.copytree(small, run)
    other = run / "checkpoints" / "ckpt_ep0002.pth"
    shutil.copy(wide / "checkpoints" / "ckpt_ep0001.pth", other)  # written after a config change
    with caplog.at_level(logging.WARNING):
        trainer = Trainer(_small(epochs=2), run, resume=True, progress=False)
    assert trainer.start_epoch == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].startswith(f"{other}: does not fit this run's network (")
    assert " there, " in warnings[0] and " here" in warnings[0]  # the shapes of a tensor
    assert warnings[0].endswith(
        "was the model config changed?; falling back to the previous checkpoint"
    )


def test_resume_without_a_fitting_checkpoint_is_a_one_line_error(
    two_configs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, wide = two_configs
    run = tmp_path / "run"
    shutil.copytree(wide, run)
    ckpt = run / "checkpoints" / "ckpt_ep0001.pth"
    with pytest.raises(CheckpointError, match="no good checkpoint left") as err:
        Trainer(_small(epochs=2), run, resume=True, progress=False)
    assert f"{ckpt}: does not fit this run's network" in str(err.value)
    config = tmp_path / "small.yaml"
    config.write_text(SMALL)
    argv = ["train", str(config), "epochs=2", "--output", str(run), "--resume", "--no-progress"]
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(
        f"mixformer train: error: cannot resume, no good checkpoint left: {ckpt}: does not fit "
    )
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["ckpt_ep0001.pth"]
