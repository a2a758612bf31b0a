"""The fused deployment form (models/fuse.py) against the plain path and the reference vectors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import random_crops, vector_config
from mixformer import Tracker, build_model, list_models
from mixformer.geometry import normalize_patch, sample_target
from mixformer.models import get_config
from mixformer.models.fuse import fuse_model, is_fused, resolve_dtype
from mixformer.models.layers import (
    FrozenBatchNorm2d,
    GemmPacks,
    PackedLinear,
    mkl_packing_available,
    pack_linears_,
)
from mixformer.models.mixformer import MixFormer
from mixformer.tracking.preprocess import SearchCropper


def _sharpen(model: MixFormer, seed: int = 0) -> MixFormer:
    """Non-trivial frozen-BN statistics and sharp corner maps, so that every folded constant and
    every backbone rounding difference shows up in the boxes."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, FrozenBatchNorm2d):
                n = m.weight.shape[0]
                m.weight.copy_(0.5 + torch.rand(n, generator=g))
                m.bias.copy_(0.2 * torch.randn(n, generator=g))
                m.running_mean.copy_(0.2 * torch.randn(n, generator=g))
                m.running_var.copy_(0.5 + torch.rand(n, generator=g))
        if hasattr(model.box_head, "conv5_tl"):
            for side in ("tl", "br"):
                getattr(model.box_head, f"conv5_{side}").weight.mul_(20.0)
        else:  # MixFormerV2's bin head: the gain of the LayerNorm on the bin logits
            model.box_head.layers[1][1].weight.mul_(20.0)
    return model


def _inputs(n_online: int, name: str = "mixformer-tiny") -> tuple[torch.Tensor, ...]:
    return random_crops(get_config(name), n_online=n_online, seed=1)


def _compare(name: str, n_online: int) -> None:
    torch.manual_seed(0)
    model = _sharpen(build_model(name))
    fast = fuse_model(model)
    z, o, x = _inputs(n_online, name)
    with torch.inference_mode():
        ref = model.track(x, model.encode_templates(z, o))
        got = fast.track(x, fast.encode_templates(z, o))
    assert got["pred_boxes"].shape == ref["pred_boxes"].shape == (1, 1, 4)
    # The sharpened head must make the boxes depend on the input at all (else the test is void).
    assert ref["pred_boxes"].std() > 1e-3
    torch.testing.assert_close(got["pred_boxes"], ref["pred_boxes"], atol=1e-4, rtol=0)
    torch.testing.assert_close(got["pred_scores"], ref["pred_scores"], atol=1e-4, rtol=0)


_SLOW_PRESETS = {"mixformer-large", "mixvit-l", "mixvit-convmae-l"}


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n in _SLOW_PRESETS else n for n in list_models()],
)
def test_fused_matches_plain_every_preset(name):
    _compare(name, n_online=2 if name == "mixformer-tiny" else 1)


def test_fused_joint_forward_batch_matches_plain():
    torch.manual_seed(0)
    model = _sharpen(build_model("mixformer-tiny"))
    fast = fuse_model(model)
    z, o, x = random_crops(model.config, batch=2, seed=3)
    with torch.inference_mode():
        ref, got = model(z, o, x), fast(z, o, x)
    torch.testing.assert_close(got["pred_boxes"], ref["pred_boxes"], atol=1e-4, rtol=0)
    torch.testing.assert_close(got["pred_scores"], ref["pred_scores"], atol=1e-4, rtol=0)


def test_fused_matches_reference_vectors(network_vectors):
    model = build_model(vector_config(network_vectors["config"]))
    model.load_state_dict(network_vectors["state_dict"], strict=True)
    fast = fuse_model(model)
    c = network_vectors["cached"]
    with torch.inference_mode():
        out = fast.track(c["search"], fast.encode_templates(c["template"], c["online_templates"]))
        # Cache interchangeable with the plain model in fp32.
        out_mixed = fast.track(
            c["search"], model.encode_templates(c["template"], c["online_templates"])
        )
    for o in (out, out_mixed):
        torch.testing.assert_close(o["pred_boxes"], c["pred_boxes"], atol=1e-4, rtol=0)
        torch.testing.assert_close(o["pred_scores"], c["pred_scores"], atol=1e-4, rtol=0)


def test_fuse_model_copies_weights():
    model = build_model("mixformer-tiny")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = fuse_model(model, "bf16")
    assert is_fused(fast) and not is_fused(model)
    assert fast.backbone.stage0.blocks[0].mlp.fc1.weight.dtype == torch.bfloat16
    for k, v in model.state_dict().items():
        assert v.dtype == before[k].dtype and torch.equal(v, before[k]), k


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_low_precision_close_to_fp32(dtype):
    torch.manual_seed(0)
    model = _sharpen(build_model("mixformer-tiny"))
    fast32, fast16 = fuse_model(model), fuse_model(model, dtype)
    z, o, x = _inputs(1)
    with torch.inference_mode():
        a = fast32.track(x, fast32.encode_templates(z, o))
        b = fast16.track(x, fast16.encode_templates(z, o))
    assert b["pred_boxes"].dtype == torch.float32
    assert b["pred_scores"].dtype == torch.float32
    # bf16 keeps 8 mantissa bits: boxes agree to a few hundredths of the crop, not 1e-4.
    torch.testing.assert_close(b["pred_boxes"], a["pred_boxes"], atol=0.03, rtol=0)


def test_resolve_dtype_rejects_unknown():
    assert resolve_dtype("bf16") is torch.bfloat16
    with pytest.raises(ValueError, match="unknown dtype"):
        resolve_dtype("int4")


def test_tracker_engine_options():
    model = build_model("mixformer-tiny")
    assert Tracker(model, fast=False).engine.network is model  # the plain reference path
    assert is_fused(Tracker(model, dtype="bf16").engine.network)
    with pytest.raises(ValueError, match="backend"):
        Tracker(model, backend="tensorrt")
    with pytest.raises(ValueError, match="fast path"):
        Tracker(model, dtype="bf16", fast=False)


def test_search_cropper_bit_identical_to_reference_preprocessing(tracker_vectors):
    _, _, frames = tracker_vectors
    cropper = SearchCropper(320)
    for box in [(100.0, 80.0, 40.0, 30.0), (290.0, 200.0, 60.0, 50.0), (-5.0, -5.0, 30.0, 30.0)]:
        x, rf = cropper(frames[3], box, 4.55)
        patch, rf_ref = sample_target(frames[3], box, 4.55, 320)
        assert rf == rf_ref
        assert torch.equal(x, normalize_patch(patch))  # same values, bit for bit
        assert x.is_contiguous(memory_format=torch.channels_last)
    # every uint8 value of every channel (80 px boxes x 4 = 320 px crops: no resampling), two
    # crops in one batch
    noise = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    boxes = [(200.0, 160.0, 80.0, 80.0), (300.0, 200.0, 80.0, 80.0)]
    x, rfs = cropper.crop_batch(noise, boxes, 4.0)
    for i, box in enumerate(boxes):
        patch, rf_ref = sample_target(noise, box, 4.0, 320)
        assert len(np.unique(patch)) == 256 and rfs[i] == rf_ref
        assert torch.equal(x[i : i + 1], normalize_patch(patch))


needs_mkl = pytest.mark.skipif(not mkl_packing_available(), reason="no MKL packed GEMM")


@needs_mkl
def test_packed_linear_equals_linear_and_repacks_edited_weights():
    torch.manual_seed(0)
    plain = torch.nn.Linear(384, 400)
    packed = torch.nn.Sequential(torch.nn.Linear(384, 400))
    packed[0].load_state_dict(plain.state_dict())
    assert pack_linears_(packed) == 1 and isinstance(packed[0], PackedLinear)
    assert list(packed.state_dict()) == ["0.weight", "0.bias"]
    with torch.inference_mode():
        for shape in [(40, 384), (1, 200, 384), (2, 20, 384), (3, 384), (40, 384)]:
            x = torch.randn(shape)
            torch.testing.assert_close(packed(x), plain(x), atol=1e-5, rtol=0)
        packs = packed[0].packs
        assert set(packs._packs) == {40, 200}  # one pack per row count (M >= 32), reused
        for m in range(32, 32 + GemmPacks.max_packs + 2):  # beyond the table: plain, correct
            x = torch.randn(m, 384)
            torch.testing.assert_close(packed(x), plain(x), atol=1e-5, rtol=0)
        assert len(packs._packs) == GemmPacks.max_packs and {40, 200} <= set(packs._packs)
    with torch.no_grad():  # an in-place edit must not reuse the stale pack
        packed[0].weight.mul_(-2.0)
        plain.weight.mul_(-2.0)
    with torch.inference_mode():
        x = torch.randn(40, 384)
        torch.testing.assert_close(packed(x), plain(x), atol=1e-5, rtol=0)


@needs_mkl
def test_packed_linear_trains_like_linear():
    torch.manual_seed(0)
    lin = torch.nn.Sequential(torch.nn.Linear(384, 384))
    ref = torch.nn.Linear(384, 384)
    ref.load_state_dict(lin[0].state_dict())
    pack_linears_(lin)
    x = torch.randn(40, 384)
    lin(x).square().sum().backward()
    ref(x).square().sum().backward()
    torch.testing.assert_close(lin[0].weight.grad, ref.weight.grad)
    assert not lin[0].__dict__.get("packs") or not lin[0].packs._packs  # autograd: F.linear


@needs_mkl
def test_fused_fp32_packs_every_linear_and_plain_none():
    model = build_model("mixformerv2-s")
    fast = fuse_model(model)
    assert not any(isinstance(m, PackedLinear) for m in model.modules())
    linears = [m for m in fast.modules() if isinstance(m, torch.nn.Linear)]
    big = [m for m in linears if m.weight.numel() >= GemmPacks.min_weight]
    assert len(big) > len(linears) // 2 and all(isinstance(m, PackedLinear) for m in big)
    assert not any(isinstance(m, PackedLinear) for m in linears if m.weight.numel() < 384**2)
    assert list(fast.state_dict()) == list(model.state_dict())
    low = fuse_model(model, "bf16")
    assert not any(isinstance(m, PackedLinear) for m in low.modules())
