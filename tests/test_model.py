"""Network structure: presets, state_dict layout, shapes, gradients, template caching."""

from __future__ import annotations

import pytest
import torch

from conftest import random_crops
from mixformer import build_model, list_models
from mixformer.models import MixFormer, get_config

PRESETS = list_models()


def _inputs(b: int = 1, name: str = "mixformer-tiny") -> tuple[torch.Tensor, ...]:
    return random_crops(get_config(name), batch=b)


def test_presets_registered():
    assert {"mixformer-22k", "mixformer-1k", "mixformer-large", "mixformer-tiny"} <= set(PRESETS)
    with pytest.raises(KeyError, match="mixformer-tiny"):
        get_config("mixformer-tinny")


@pytest.mark.parametrize(
    "name,keys_fixture",
    [
        ("mixformer-22k", "keys_baseline"),
        ("mixformer-1k", "keys_baseline"),
        ("mixformer-large", "keys_large"),
    ],
)
def test_state_dict_keys_and_shapes_match_reference(name, keys_fixture, request):
    expected = request.getfixturevalue(keys_fixture)
    with torch.device("meta"):
        model = MixFormer(get_config(name))
    got = [(k, list(v.shape)) for k, v in model.state_dict().items()]
    assert got == [(k, list(v)) for k, v in expected.items()]


@pytest.mark.parametrize(
    "name,params,numel",
    [
        ("mixformer-22k", 37_459_499, 37_548_971),
        ("mixformer-large", 195_395_435, 195_571_691),
    ],
)
def test_parameter_counts_match_spec(name, params, numel):
    with torch.device("meta"):
        model = MixFormer(get_config(name))
    assert sum(p.numel() for p in model.parameters()) == params
    assert sum(v.numel() for v in model.state_dict().values()) == numel


_LARGE = {"mixformer-large", "mixvit-l", "mixvit-convmae-l"}


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in _LARGE else n for n in PRESETS]
)
def test_forward_shapes_every_preset(name):
    model = build_model(name)
    z, o, x = _inputs(1, name)
    with torch.inference_mode():
        out = model(z, o, x)
    assert out["pred_boxes"].shape == (1, 1, 4)
    assert out["pred_scores"].shape == (1,)
    assert torch.isfinite(out["pred_boxes"]).all() and torch.isfinite(out["pred_scores"]).all()
    cx, cy, w, h = out["pred_boxes"][0, 0]
    f = model.config.corner_map_size  # soft-argmax grid of cell corners: [0, (F - 1) / F]
    assert 0 <= cx - w / 2 and cx + w / 2 <= (f - 1) / f + 1e-6


def _check_gradients(model: MixFormer, b: int = 2) -> None:
    model.train()
    z, o, x = _inputs(b, model.name)
    gt = torch.tensor([[0.3, 0.3, 0.6, 0.7]] * b)
    out = model(z, o, x, gt_bboxes=gt)
    (out["pred_boxes"].sum() + out["pred_scores"].sum()).backward()
    unused = {
        "backbone.norm.weight",
        "backbone.norm.bias",
        "backbone.head.weight",
        "backbone.head.bias",
    }
    for name, p in model.named_parameters():
        if name in unused:
            assert p.grad is None, name
        else:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
            assert p.grad.abs().sum() > 0, f"zero gradient for {name}"


def test_gradients_reach_every_parameter_tiny():
    _check_gradients(build_model("mixformer-tiny"))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mixformer-22k", "mixformer-large"])
def test_gradients_reach_every_parameter_large_presets(name):
    # Stochastic depth could drop a whole block for the single sample: switch it off here.
    _check_gradients(build_model(name, drop_path_rate=(0.0, 0.0, 0.0)), b=1)


def test_stage1_variant_has_batchnorm_head_and_no_score():
    model = build_model("mixformer-tiny", score_head=False, head_bn="batch")
    keys = model.state_dict().keys()
    assert not any(k.startswith("score_branch.") for k in keys)
    assert "box_head.conv1_tl.1.num_batches_tracked" in keys
    z, o, x = _inputs(2)
    out = model(z, o, x)
    assert "pred_scores" not in out and out["pred_boxes"].shape == (2, 1, 4)


@pytest.fixture(scope="module")
def tiny() -> MixFormer:
    torch.manual_seed(0)
    return build_model("mixformer-tiny")


def test_template_features_do_not_depend_on_search(tiny):
    z, o, x = _inputs(1)
    x2 = torch.randn_like(x)
    with torch.inference_mode():
        feats1 = tiny.backbone(z, o, x, return_stages=True)
        feats2 = tiny.backbone(z, o, x2, return_stages=True)
    for (z1, o1, s1), (z2, o2, s2) in zip(feats1, feats2):
        assert torch.equal(z1, z2) and torch.equal(o1, o2)
        assert not torch.allclose(s1, s2)


def test_cached_path_equals_joint_forward(tiny):
    z, o, x = _inputs(2)
    with torch.inference_mode():
        joint = tiny(z, o, x)
        cache = tiny.encode_templates(z, o[:, None])
        cached = tiny.track(x, cache)
    torch.testing.assert_close(cached["pred_boxes"], joint["pred_boxes"], atol=1e-5, rtol=0)
    torch.testing.assert_close(cached["pred_scores"], joint["pred_scores"], atol=1e-4, rtol=0)


def test_cache_with_several_online_templates_depends_on_all_of_them(tiny):
    z, o, x = _inputs(1)
    o2 = torch.randn_like(o)
    with torch.inference_mode():
        a = tiny.track(x, tiny.encode_templates(z, torch.cat([o, o2])[None]))
        b = tiny.track(x, tiny.encode_templates(z, torch.cat([o, o])[None]))
        c = tiny.track(x, tiny.encode_templates(z, torch.cat([o, o2])[None]))
    assert not torch.allclose(a["pred_boxes"], b["pred_boxes"])
    torch.testing.assert_close(a["pred_boxes"], c["pred_boxes"])


def test_batched_cache_matches_per_sample(tiny):
    z, o, x = _inputs(2)
    with torch.inference_mode():
        both = tiny.track(x, tiny.encode_templates(z, o[:, None]))
        first = tiny.track(x[:1], tiny.encode_templates(z[:1], o[:1, None]))
    torch.testing.assert_close(both["pred_boxes"][:1], first["pred_boxes"], atol=1e-5, rtol=0)
