"""Training checkpoints: atomic epoch files, RNG states as tensors, slim weight files.

An epoch checkpoint holds ``net`` (state_dict), ``model_config`` (dict), ``preset`` (str),
``net_type``, ``epoch``, ``optimizer``, ``scheduler``, ``rng`` (tensors / lists),
``train_config`` (dict) and ``history`` (list of dicts of floats), and ``checksum`` (SHA-256 of
all of it, :func:`mixformer.utils.state_checksum`); it loads with
``torch.load(weights_only=True)`` and with :func:`mixformer.build_model` (``weights=path``).
:func:`load_checkpoint` verifies the checksum and names a corrupt file.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mixformer.models.weights import CheckpointError, load_file
from mixformer.utils import atomic_save_torch

__all__ = [
    "capture_rng",
    "restore_rng",
    "checkpoint_path",
    "latest_checkpoint",
    "save_slim",
    "save_checkpoint",
    "load_checkpoint",
]

_NAME = re.compile(r"^ckpt_ep(\d{4,})\.pth$")


def capture_rng() -> dict[str, Any]:
    """Python, NumPy and torch RNG states as plain lists and tensors."""
    py = random.getstate()
    np_state = np.random.get_state()
    out: dict[str, Any] = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [
            np_state[0],
            torch.from_numpy(np_state[1].astype(np.int64)),
            int(np_state[2]),
            int(np_state[3]),
            float(np_state[4]),
        ],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng`."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), n[2], n[3], n[4]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_path(run_dir: str | Path, epoch: int) -> Path:
    """``<run_dir>/checkpoints/ckpt_epEEEE.pth``."""
    return Path(run_dir) / "checkpoints" / f"ckpt_ep{epoch:04d}.pth"


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """``(epoch, path)`` of the epoch checkpoints in ``run_dir``, oldest first."""
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest epoch checkpoint of ``run_dir``, or None."""
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def save_checkpoint(ckpt: dict[str, Any], path: str | Path) -> Path:
    """Write an epoch checkpoint atomically, with its checksum."""
    atomic_save_torch(ckpt, path, checksum=True)
    return Path(path)


def load_checkpoint(path: str | Path, max_bytes: int | None = None) -> dict[str, Any]:
    """Read an epoch checkpoint (``weights_only=True``) and verify its checksum if it has one.

    Args:
        path: the checkpoint.
        max_bytes: refuse a file holding more uncompressed bytes, before reading its tensors.

    Raises:
        mixformer.models.weights.CheckpointError: missing, truncated, corrupt (checksum
            mismatch), not a dict, or too large; the message names the file.
    """
    obj = load_file(path, max_bytes)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: not a training checkpoint ({type(obj).__name__})")
    return obj


def save_slim(ckpt: dict[str, Any], path: str | Path) -> Path:
    """Write only ``net``, ``model_config`` and ``preset`` of ``ckpt`` (the shippable weights)."""
    slim = {k: ckpt[k] for k in ("net", "model_config", "preset")}
    atomic_save_torch(slim, path)
    return Path(path)
