"""Shared fixtures: the reference vectors in ``tests/data/reference`` and small model configs."""

from __future__ import annotations

import functools
import hashlib
import io
import json
import lzma
import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from mixformer import TrackerConfig
from mixformer.models import ModelConfig

# The reference implementation's outputs on a small configuration, stored compactly in the
# repository (tests/data/reference/build.py says how they were derived), so they run anywhere.
REFERENCE = Path(__file__).resolve().parent / "data" / "reference"

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


# ---- tests in a process of their own (@pytest.mark.isolated) ------------------------------------
# OpenVINO, NNCF and ONNX Runtime bring their own oneDNN/MLAS kernels and thread pools. On a CPU
# with AMX they configure the AMX tiles of the threads they run on, behind the back of torch's
# oneDNN, and NNCF imports its torch integration into the process. A CI run on such a machine
# crashed (SIGSEGV) in a later, unrelated torch training test, which no run on a machine without
# AMX reproduced. So a test marked ``isolated`` runs in a fresh ``python -m pytest NODEID``
# child: the main process only sets up its fixtures (torch only) and reports the child's outcome.
_CHILD_ENV = "MIXFORMER_TEST_CHILD"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "isolated: run the test in a child process of its own (tests that execute OpenVINO, "
        "NNCF or ONNX Runtime kernels; see tests/conftest.py)",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if pyfuncitem.get_closest_marker("isolated") is None or os.environ.get(_CHILD_ENV):
        return None
    _run_in_child(pyfuncitem)
    return True


def _run_in_child(item: pytest.Function) -> None:
    """Run ``item`` in ``python -m pytest NODEID``; its failure, crash or skip becomes ours."""
    cmd = [sys.executable, "-m", "pytest", item.nodeid, "-q", "-rs", "-p", "no:cacheprovider"]
    cmd += ["-o", "addopts="]  # the node id alone selects (a slow test stays selected)
    env = {**os.environ, _CHILD_ENV: "1"}
    try:
        r = subprocess.run(
            cmd, cwd=item.config.rootpath, env=env, capture_output=True, text=True, timeout=900
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"isolated child of {item.nodeid} ran over 900 s", pytrace=False)
    out = (r.stdout + r.stderr)[-6000:]
    if r.returncode == 0 and re.search(r"\b1 passed\b", r.stdout):
        return
    if r.returncode == 0 and re.search(r"\b1 skipped\b", r.stdout):
        reason = re.search(r"^SKIPPED \[\d+\] [^:]+:\d+: (.*)$", r.stdout, re.M)
        pytest.skip(reason.group(1) if reason else "skipped in the isolated child")
    how = f"signal {-r.returncode}" if r.returncode < 0 else f"exit code {r.returncode}"
    pytest.fail(f"isolated child of {item.nodeid} failed ({how}):\n{out}", pytrace=False)


@pytest.fixture(autouse=True, scope="session")
def _export_cache(tmp_path_factory):
    """The ONNX export cache of the session in a temporary folder, not the user's ~/.cache."""
    old = os.environ.get("MIXFORMER_CACHE_DIR")
    os.environ["MIXFORMER_CACHE_DIR"] = str(tmp_path_factory.mktemp("mixformer-cache"))
    yield
    if old is None:
        os.environ.pop("MIXFORMER_CACHE_DIR", None)
    else:
        os.environ["MIXFORMER_CACHE_DIR"] = old


@pytest.fixture(autouse=True, scope="session")
def _torch_in_the_main_process():
    """The library's default ``backend="auto"`` picks OpenVINO where it is installed (a CPU
    without AMX). OpenVINO must only run in the children of ``@pytest.mark.isolated`` tests, so
    in the main process ``auto`` finds the openvino extra missing and runs torch; an isolated
    test's child sees the real installation (the tests of the ``auto`` rule run there)."""
    if os.environ.get(_CHILD_ENV):
        yield
        return
    from mixformer.tracking import backends

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(backends, "openvino_installed", lambda: False)
        yield


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
    return ModelConfig().replace(
        dim_embed=tuple(raw["DIM_EMBED"]),
        num_heads=tuple(raw["NUM_HEADS"]),
        depth=tuple(raw["DEPTH"]),
        head_dim=raw["HEAD_DIM"],
    )


def _reference_inputs(seed: int, digest: str) -> dict[str, torch.Tensor]:
    """The joint-forward inputs of ``network_small.pt``, redrawn from their seed and checked."""
    gen = torch.Generator().manual_seed(seed)
    shapes = {"template": (2, 3, 128, 128), "online_template": (2, 3, 128, 128)}
    shapes["search"] = (2, 3, 320, 320)
    inputs = {k: torch.randn(*shape, generator=gen) for k, shape in shapes.items()}
    h = hashlib.sha256()
    for t in inputs.values():
        h.update(t.numpy().tobytes())
    if h.hexdigest() != digest:
        pytest.fail(f"torch.randn with seed {seed} no longer draws the reference inputs")
    return inputs


@pytest.fixture(scope="session")
def network_vectors() -> dict:
    """``network_small.pt`` of the reference vectors, with the inputs the compact file omits."""
    vec = torch.load(REFERENCE / "network_small.pt", weights_only=True)
    i = _reference_inputs(vec.pop("input_seed"), vec.pop("input_sha256"))
    feats = vec["backbone_features"]
    vec["inputs"] = i
    vec["cached"].update(
        template=i["template"][:1],
        online_templates=torch.stack([i["online_template"][0], i["template"][1]]),
        search=i["search"][:1],
    )
    vec["score_module"].update(
        search_features=feats["stage2_search"], template_features=feats["stage2_template"]
    )
    return vec


@pytest.fixture(scope="session")
def tracker_vectors() -> tuple[dict, dict, list[np.ndarray]]:
    """Weights, reference runs and the 40 RGB frames of the reference tracker vectors."""
    weights = torch.load(REFERENCE / "tracker_small.pt", weights_only=True)
    runs = json.loads((REFERENCE / "tracker_small.json").read_text())
    return weights, runs, tracker_frames()


@functools.cache
def tracker_frames() -> list[np.ndarray]:
    """The 40 RGB frames of ``sequence_small`` (read with OpenCV, BGR -> RGB, as the reference)."""
    bgr = np.load(io.BytesIO(lzma.decompress((REFERENCE / "sequence_small.npy.xz").read_bytes())))
    return [cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in bgr]


@pytest.fixture(scope="session")
def keys_baseline() -> dict:
    return json.loads((REFERENCE / "keys_baseline.json").read_text())


@pytest.fixture(scope="session")
def keys_large() -> dict:
    return json.loads((REFERENCE / "keys_baseline_large.json").read_text())


def reference_tracker_config(run: dict) -> TrackerConfig:
    """The TrackerConfig of one run of a reference tracker-vector file (its setting fields)."""
    fields = (
        "template_factor",
        "template_size",
        "search_factor",
        "search_size",
        "update_interval",
        "online_size",
        "max_score_decay",
    )
    return TrackerConfig(**{k: run[k] for k in fields})


@pytest.fixture(scope="module")
def micro_model():
    """A ``mixformer-tiny`` of the :data:`MICRO` sizes with seeded random weights."""
    from mixformer import build_model

    torch.manual_seed(0)
    return build_model("mixformer-tiny", **MICRO)


def micro_config(**kw: object) -> TrackerConfig:
    """Tracker settings at the :data:`MICRO` crop sizes (64 / 128), ``kw`` changed."""
    return TrackerConfig(
        template_size=MICRO["template_size"], search_size=MICRO["search_size"], **kw
    )


def block_outputs(blocks, run) -> torch.Tensor:
    """The outputs of every module in ``blocks`` while ``run()`` runs, stacked (forward hooks)."""
    seen: list[torch.Tensor] = []
    hooks = [b.register_forward_hook(lambda m, a, out: seen.append(out.clone())) for b in blocks]
    try:
        run()
    finally:
        for h in hooks:
            h.remove()
    return torch.stack(seen)


def close(a: torch.Tensor, b: torch.Tensor, atol: float) -> None:
    """``a`` equals ``b`` within ``atol`` (absolute, both compared in float32)."""
    torch.testing.assert_close(a.float(), b.float(), atol=atol, rtol=0)


def assert_keys_equal_reference(name: str, key_file: Path) -> None:
    """Preset ``name``'s state_dict keys, their order and shapes equal a reference key list."""
    from mixformer.models.weights import preset_shapes

    ref = json.loads(key_file.read_text())
    shapes = preset_shapes(name)
    assert list(shapes) == list(ref)
    assert {k: list(v) for k, v in shapes.items()} == ref


def parameter_counts(name: str) -> tuple[int, int]:
    """``(numel of all parameters, of those with requires_grad=False)`` of preset ``name``,
    built on the meta device."""
    from mixformer.models import MixFormer, get_config

    with torch.device("meta"):
        model = MixFormer(get_config(name), name)
    params = list(model.parameters())
    return sum(p.numel() for p in params), sum(p.numel() for p in params if not p.requires_grad)


def micro_training(preset: str, model_overrides: dict, **changes: object):
    """Training preset ``preset`` shrunk to seconds: a micro network (``model_overrides``, whose
    crop sizes the run takes), four synthetic samples per epoch, no validation, one thread."""
    from mixformer.train import get_train_config

    small = dict(
        model_overrides=model_overrides,
        pretrained="",
        template_size=model_overrides["template_size"],
        search_size=model_overrides["search_size"],
        datasets=("synthetic",),
        dataset_ratio=(1.0,),
        synthetic_sequences=4,
        synthetic_frames=24,
        synthetic_size=(96, 128),
        samples_per_epoch=4,
        batch_size=2,
        val_datasets=(),
        num_workers=0,
        tensorboard=False,
        threads=1,
        epochs=1,
        lr_drop_epoch=1,
    )
    return get_train_config(preset).replace(**{**small, **changes})


# A miniature tiny-synthetic training run (seconds per epoch), for the training-loop and
# training-fault tests.
SMALL_MODEL = {
    "dim_embed": [16, 32, 32],
    "num_heads": [1, 1, 1],
    "depth": [1, 1, 2],
    "head_dim": 32,
    "template_size": 64,
    "search_size": 160,
    "drop_path_rate": [0.0, 0.0, 0.2],
}


def small_config(stage: int = 1, **changes: object):  # noqa: ANN201
    from mixformer.train import get_train_config

    base = get_train_config(f"tiny-synthetic-stage{stage}")
    small = dict(
        model_overrides=SMALL_MODEL,
        template_size=64,
        search_size=160,
        synthetic_sequences=6,
        synthetic_frames=24,
        synthetic_size=(96, 128),
        samples_per_epoch=4,
        batch_size=2,
        epochs=2,
        lr_drop_epoch=1,
        val_datasets=(),
        num_workers=0,
        tensorboard=False,
    )
    return base.replace(**{**small, **changes})


# ---- headless chromium for the browser tests (test_app_browser, test_app_video_playback) ------
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def missing_browser_stack(reason: str) -> None:
    """Skip for a missing browser stack; under CI=true fail instead."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


def _chromium_path() -> str | None:
    import shutil

    for candidate in (
        "/usr/bin/chromium",
        shutil.which("chromium"),
        shutil.which("chromium-browser"),
    ):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture(scope="module")
def chromium():
    """Debian's chromium driven by Playwright (never ``playwright install``)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing_browser_stack("playwright is not installed (pip install -e '.[test]')")
    exe = _chromium_path()
    if exe is None:
        missing_browser_stack("chromium is not installed (apt-get install chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


def cli_parser(*path: str):  # noqa: ANN201
    """The argparse parser of ``mixformer PATH...`` (e.g. ``cli_parser("data", "bench")``)."""
    import argparse

    from mixformer.cli import build_parser

    parser = build_parser()
    for name in path:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[name]
    return parser
