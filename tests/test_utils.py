"""Atomic writers: the permissions of a plain open(), checksums, stale temporary files."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from mixformer.evaluation.pack import pack_results
from mixformer.evaluation.plots import plot_success
from mixformer.utils import (
    atomic_save_torch,
    atomic_write_text,
    remove_stale_tmp,
    state_checksum,
)


@pytest.fixture
def umask() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_files_get_the_mode_of_a_plain_open(umask: None, tmp_path: Path) -> None:
    atomic_write_text(tmp_path / "a.txt", "x\n")
    atomic_save_torch({"t": torch.zeros(2)}, tmp_path / "b.pth")
    res = tmp_path / "res"
    res.mkdir()
    (res / "seq.txt").write_text("1,2,3,4\n")
    pack_results("trackingnet", res, tmp_path / "sub.zip", expected=1)
    plot_success({"t": (np.linspace(0, 1, 5), np.linspace(1, 0, 5))}, tmp_path / "s.png")
    (tmp_path / "plain.txt").write_text("x")
    for name in ("a.txt", "b.pth", "sub.zip", "s.png", "plain.txt"):
        assert _mode(tmp_path / name) == 0o644, name
    os.umask(0o077)
    atomic_write_text(tmp_path / "private.txt", "x\n")
    assert _mode(tmp_path / "private.txt") == 0o600  # the umask is respected, not overridden
    assert not list(tmp_path.glob(".*.tmp"))


def test_state_checksum_survives_a_save_and_sees_a_flipped_value(tmp_path: Path) -> None:
    obj = {
        "net": {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "n": torch.tensor(3)},
        "epoch": 2,
        "history": [{"loss": 0.25}],
        "rng": ["MT19937", torch.zeros(3, dtype=torch.int64), (1, None)],
        "bf16": torch.ones(2, dtype=torch.bfloat16),
    }
    atomic_save_torch(obj, tmp_path / "c.pth", checksum=True)
    back = torch.load(tmp_path / "c.pth", weights_only=True)
    recorded = back.pop("checksum")
    assert recorded == state_checksum(back) == state_checksum(obj)
    back["net"]["w"][0, 0] = 0.5
    assert state_checksum(back) != recorded
    back = torch.load(tmp_path / "c.pth", weights_only=True)
    back.pop("checksum")
    back["epoch"] = 3
    assert state_checksum(back) != recorded


def test_remove_stale_tmp_keeps_young_and_foreign_files(tmp_path: Path) -> None:
    old, young, other = tmp_path / ".a.txt.x.tmp", tmp_path / ".b.txt.y.tmp", tmp_path / "c.tmp"
    for p in (old, young, other):
        p.write_text("x")
    t = time.time() - 3600
    os.utime(old, (t, t))
    os.utime(other, (t, t))
    assert remove_stale_tmp(tmp_path) == [old]
    assert young.exists() and other.exists()
