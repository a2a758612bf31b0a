"""Shared fixtures: the reference material in ``../shared`` and small model configs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from mixformer.models import ModelConfig

SHARED = Path(__file__).resolve().parents[2] / "shared"
SPEC = SHARED / "spec"
VECTORS = SPEC / "vectors"

# A micro member of the architecture (64 px template, 128 px search) for fast tracker tests:
# ``build_model("mixformer-tiny", **MICRO)``.
MICRO = dict(
    dim_embed=(16, 32, 64),
    num_heads=(1, 1, 2),
    depth=(1, 1, 2),
    head_dim=32,
    template_size=64,
    search_size=128,
)


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """One intra-op thread for the whole suite: the small test networks run many tiny ops, which
    are faster without OpenMP barriers, especially on a shared machine. Results do not depend
    on it. Set MIXFORMER_TEST_THREADS to use more."""
    old = torch.get_num_threads()
    torch.set_num_threads(int(os.environ.get("MIXFORMER_TEST_THREADS", "1")))
    yield
    torch.set_num_threads(old)


def random_crops(
    mc: ModelConfig, batch: int = 1, n_online: int | None = None, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random ``(template, online, search)`` crops of ``mc``'s sizes.

    ``online`` is ``(B, 3, t, t)`` when ``n_online`` is None (the joint forward), else
    ``(B, n_online, 3, t, t)`` (``encode_templates``).
    """
    g = torch.Generator().manual_seed(seed)
    t, s = mc.template_size, mc.search_size
    z = torch.randn(batch, 3, t, t, generator=g)
    shape = (batch, 3, t, t) if n_online is None else (batch, n_online, 3, t, t)
    o = torch.randn(*shape, generator=g)
    return z, o, torch.randn(batch, 3, s, s, generator=g)


def vector_config(raw: dict) -> ModelConfig:
    """The ModelConfig of a reference vector file's ``config`` entry."""
    return ModelConfig(
        dim_embed=tuple(raw["DIM_EMBED"]),
        num_heads=tuple(raw["NUM_HEADS"]),
        depth=tuple(raw["DEPTH"]),
        head_dim=raw["HEAD_DIM"],
    )


@pytest.fixture(scope="session")
def spec_dir() -> Path:
    if not SPEC.is_dir():
        pytest.skip(f"reference material not found at {SPEC}")
    return SPEC


@pytest.fixture(scope="session")
def network_vectors(spec_dir: Path) -> dict:
    return torch.load(VECTORS / "network_small.pt", weights_only=True)


@pytest.fixture(scope="session")
def tracker_vectors(spec_dir: Path) -> tuple[dict, dict, list[np.ndarray]]:
    weights = torch.load(VECTORS / "tracker_small.pt", weights_only=True)
    runs = json.loads((VECTORS / "tracker_small.json").read_text())
    files = sorted((VECTORS / "sequence_small").glob("*.png"))
    frames = [cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB) for f in files]
    return weights, runs, frames


@pytest.fixture(scope="session")
def keys_baseline(spec_dir: Path) -> dict:
    return json.loads((spec_dir / "keys_baseline.json").read_text())


@pytest.fixture(scope="session")
def keys_large(spec_dir: Path) -> dict:
    return json.loads((spec_dir / "keys_baseline_large.json").read_text())
