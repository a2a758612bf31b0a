"""MixViT and MixViT-ConvMAE against the reference (SPEC-MIXVIT): key lists of the released
models, the small-configuration vectors (joint forward, per-block features, cached path with one
and two online templates, corner maps, score module), the reference tracker's boxes frame by frame,
the fused and ONNX forms, and the weights files of these families."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import (
    assert_keys_equal_reference,
    block_outputs,
    close,
    micro_training,
    parameter_counts,
    reference_tracker_config,
    tracker_frames,
)
from mixformer import Tracker, TrackerConfig, build_model
from mixformer.models import (
    BACKBONES,
    CheckpointError,
    MixFormer,
    ModelConfig,
    fuse_model,
    get_preset,
    list_models,
    save_weights,
)
from mixformer.models.backbones import ConvMAEConfig, ViTConfig
from mixformer.models.heads import CornerUpConfig
from mixformer.models.weights import preset_shapes

DATA = Path(__file__).resolve().parent / "data" / "reference" / "mixvit"
FAMILIES = ("vit", "convmae")
KEY_FILES = {
    "mixvit-b": "keys_mixvit_b.json",
    "mixvit-l": "keys_mixvit_l.json",
    "mixvit-convmae-b": "keys_convmae_b.json",
    "mixvit-convmae-l": "keys_convmae_l.json",
}
# SPEC-MIXVIT 1.1: numel of nn.Parameters, of which requires_grad=False.
PARAMS = {
    "mixvit-b": (104_311_151, 297_984),
    "mixvit-l": (330_198_127, 737_280),
    "mixvit-convmae-b": (102_198_791, 297_984),
    "mixvit-convmae-l": (298_028_807, 737_280),
}


def vector_config(raw: dict) -> ModelConfig:
    """The ModelConfig of a vector file's ``config`` entry (SPEC-MIXVIT vectors README)."""
    if raw["family"] == "vit":
        backbone = ViTConfig(
            embed_dim=raw["EMBED_DIM"],
            depth=raw["DEPTH"],
            num_heads=raw["NUM_HEADS"],
            patch_size=raw["PATCH_SIZE"],
            mlp_ratio=raw["MLP_RATIO"],
            drop_path_rate=raw["DROP_PATH_RATE"],
        )
    else:
        backbone = ConvMAEConfig(
            dims=tuple(raw["EMBED_DIM"]),
            depths=tuple(raw["DEPTH"]),
            patch_sizes=tuple(raw["PATCH_SIZE"]),
            num_heads=raw["NUM_HEADS"],
            mlp_ratio=raw["MLP_RATIO"][0],
        )
    head = CornerUpConfig(channel=raw["HEAD_DIM"], stride=raw["HEAD_STRIDE"])
    return ModelConfig(
        backbone=backbone,
        head=head,
        template_size=raw["TEMPLATE_SIZE"],
        search_size=raw["SEARCH_SIZE"],
    )


@pytest.fixture(scope="module", params=FAMILIES)
def family(request) -> tuple[dict, MixFormer]:
    v = torch.load(DATA / f"vectors_{request.param}_small.pt", weights_only=True)
    model = MixFormer(vector_config(v["config"])).eval()
    model.load_state_dict(v["state_dict"], strict=True)
    return v, model


# ---- the released models' keys (meta device: no memory) ---------------------------------------


@pytest.mark.parametrize("name", list(KEY_FILES))
def test_state_dict_keys_shapes_and_order_equal_the_reference_lists(name):
    assert_keys_equal_reference(name, DATA / KEY_FILES[name])


@pytest.mark.parametrize("name", list(PARAMS))
def test_parameter_counts_match_the_spec(name):
    assert parameter_counts(name) == PARAMS[name]


def test_registry_knows_every_family_and_refuses_duplicates():
    assert {"cvt", "vit", "convmae"} <= set(BACKBONES)
    with pytest.raises(ValueError, match="already registered"):
        BACKBONES.register("vit")(object)
    with pytest.raises(KeyError, match="did you mean 'vit'"):
        BACKBONES.get("vitt")


# ---- network vectors -------------------------------------------------------------------------


@torch.inference_mode()
def test_joint_forward_matches_reference(family):
    v, model = family
    i = v["inputs"]
    out = model(i["template"], i["online_template"], i["search"])
    close(out["pred_boxes"], v["joint"]["pred_boxes"], 1e-4)
    close(out["pred_scores"], v["joint"]["pred_scores"], 1e-4)
    z, o, x = model.backbone.forward_all(i["template"], i["online_template"], i["search"])
    close(z, v["backbone"]["template"], 1e-5)
    close(o, v["backbone"]["online_template"], 1e-5)
    close(x, v["backbone"]["search"], 1e-5)


@torch.inference_mode()
def test_per_block_and_embedding_features_match_reference(family):
    v, model = family
    i, inter = v["inputs"], v["intermediate"]
    seen = block_outputs(
        model.backbone.mixed_blocks, lambda: model(i["template"], i["online_template"], i["search"])
    )
    close(seen, inter["blocks"], 1e-5)
    bb = model.backbone
    for part in ("template", "online_template", "search"):
        if v["config"]["family"] == "vit":
            close(bb.embed(i[part]), inter[f"patch_embed_{part}"], 1e-5)
        else:
            s1, s2 = bb.conv_stages(i[part])
            close(s1, inter[f"stage1_{part}"], 1e-5)
            close(s2, inter[f"stage2_{part}"], 1e-5)
            close(bb.embed(i[part]), inter[f"patch_embed4_{part}"], 1e-5)


@torch.inference_mode()
def test_corner_maps_and_score_module_match_reference(family):
    v, model = family
    tl, br = model.corner_maps(v["backbone"]["search"])
    close(tl, v["corner_maps"]["tl"], 1e-5)
    close(br, v["corner_maps"]["br"], 1e-5)
    s = v["score_module"]
    logits = model.score_branch(s["search_features"], s["template_features"], s["boxes_xyxy"])
    close(logits, s["logits"], 1e-4)


@pytest.mark.parametrize("key", ["cached", "cached_one"])
@pytest.mark.parametrize("fused", [False, True], ids=["plain", "fused"])
@torch.inference_mode()
def test_cached_path_matches_reference(family, key, fused):
    v, model = family
    engine = fuse_model(model) if fused else model
    c = v[key]
    cache = engine.encode_templates(c["template"], c["online_templates"])
    out = engine.track(c["search"], cache)
    close(out["pred_boxes"], c["pred_boxes"], 1e-4)
    close(out["pred_scores"], c["pred_scores"], 1e-4)
    if key == "cached":
        close(cache.template_feat, c["template_features"], 1e-5)


@torch.inference_mode()
def test_batched_cache_equals_per_sample(family):
    _, model = family
    g = torch.Generator().manual_seed(0)
    t = torch.randn(2, 3, 64, 64, generator=g)
    o = torch.randn(2, 2, 3, 64, 64, generator=g)
    x = torch.randn(2, 3, 128, 128, generator=g)
    both = model.track(x, model.encode_templates(t, o))["pred_boxes"]
    one = torch.cat(
        [
            model.track(x[i : i + 1], model.encode_templates(t[i : i + 1], o[i]))["pred_boxes"]
            for i in range(2)
        ]
    )
    close(both, one, 1e-5)


# ---- the reference tracker, frame by frame -----------------------------------------------------


@pytest.mark.parametrize("fast", [False, True], ids=["plain", "fused"])
@pytest.mark.parametrize("run", ["interval5_online3", "interval4_online1"])
def test_tracker_reproduces_reference_boxes(family, run, fast):
    v, model = family
    frames = tracker_frames()
    r = v["tracker"]["runs"][run]
    config = reference_tracker_config(r)
    tracker = Tracker(model, config, fast=fast, dtype="fp32")
    boxes, scores = [tracker.init(frames[0], r["boxes_xywh"][0].tolist()).box], []
    for frame in frames[1:]:
        res = tracker.update(frame)
        boxes.append(res.box)
        scores.append(res.score)
    np.testing.assert_allclose(np.array(boxes), r["boxes_xywh"].numpy(), atol=1e-3, rtol=0)
    np.testing.assert_allclose(np.array(scores), r["scores"][1:].numpy(), atol=1e-3)


# ---- presets: forward, gradients, tracker settings ----------------------------------------------

_LARGE = {"mixvit-l", "mixvit-convmae-l"}
_MIXVIT = [pytest.param(n, marks=pytest.mark.slow) if n in _LARGE else n for n in KEY_FILES]


@pytest.mark.parametrize("name", _MIXVIT)
def test_forward_shapes_and_gradients(name):
    torch.manual_seed(0)
    model = build_model(name).train()
    cfg = model.config
    t = torch.randn(1, 3, cfg.template_size, cfg.template_size)
    x = torch.randn(1, 3, cfg.search_size, cfg.search_size)
    out = model(t, t.clone(), x)
    assert out["pred_boxes"].shape == (1, 1, 4) and out["pred_scores"].shape == (1,)
    (out["pred_boxes"].sum() + out["pred_scores"].sum()).backward()
    dead = ("cls_token", "pos_embed", "backbone.norm.", "backbone.head.")
    no_grad = [
        n
        for n, p in model.named_parameters()
        if p.requires_grad and p.grad is None and not any(d in n for d in dead)
    ]
    assert not no_grad, no_grad[:5]
    assert not model.backbone.pos_embed_s.requires_grad


def test_tracker_presets_come_from_the_model():
    lasot = TrackerConfig.preset("lasot", model="mixvit-b")
    assert (lasot.search_factor, lasot.update_interval, lasot.online_size) == (5.05, 200, 2)
    assert (lasot.template_size, lasot.search_size) == (128, 288)
    tn = TrackerConfig.preset("trackingnet", model="mixvit-convmae-l")
    assert (tn.update_interval, tn.online_size, tn.search_factor) == (20, 1, 4.6)
    uav = TrackerConfig.preset("uav", model="mixvit-b", got10k_trained=True)
    assert (uav.update_interval, uav.online_size) == (200, 3)
    nfs = TrackerConfig.preset("nfs", model="mixvit-l")  # crashes the reference (quirk 14)
    assert (nfs.update_interval, nfs.online_size, nfs.search_factor) == (200, 3, 4.5)
    assert (nfs.template_size, nfs.search_size) == (192, 384)


# ---- weights files ---------------------------------------------------------------------------


def test_release_file_round_trip_and_rebuild_from_file(family, tmp_path):
    v, model = family
    release = tmp_path / "release.pth.tar"
    torch.save({"net": v["state_dict"], "settings": None}, release)
    cfg = model.config
    same = build_model(cfg, weights=release)
    for k, t in same.state_dict().items():
        assert torch.equal(t, v["state_dict"][k]), k
    ours = tmp_path / "ours.pth"
    save_weights(same, ours)
    again = build_model(None, weights=ours)
    assert again.config == cfg and again.config.family == v["config"]["family"]


def test_wrong_family_file_is_refused_naming_family_and_preset(tmp_path):
    path = tmp_path / "vit.pth.tar"
    with torch.device("meta"):
        shapes = preset_shapes("mixvit-b")
    torch.save({"net": {k: torch.zeros(s) for k, s in shapes.items()}}, path)
    with pytest.raises(CheckpointError, match=r"vit network file \(its shapes fit 'mixvit-b'\)"):
        build_model("mixformer-tiny", weights=path)
    tiny = tmp_path / "tiny.pth"
    save_weights(build_model("mixformer-tiny"), tiny)
    with pytest.raises(CheckpointError, match="cvt network file .*'mixformer-tiny'.* vit network"):
        build_model("mixvit-b", weights=tiny)


def test_mae_and_convmae_backbone_files_load_into_the_backbone(family, tmp_path):
    """A file of the MAE / ConvMAE layout (``model`` entry, raw backbone keys, position tables,
    mask token and decoder keys): backbone weights loaded, fixed sin-cos tables kept."""
    v, model = family
    fresh = MixFormer(model.config).eval()
    pe_s = fresh.backbone.pos_embed_s.detach().clone()
    sd = {
        k.removeprefix("backbone."): t
        for k, t in v["state_dict"].items()
        if k.startswith("backbone.")
    }
    sd["pos_embed_s"] = torch.randn_like(sd["pos_embed_s"])
    sd["mask_token"] = torch.zeros(1, 1, 8)
    sd["decoder_embed.weight"] = torch.zeros(4, 4)
    path = tmp_path / "mae.pth"
    torch.save({"model": sd}, path)
    build_model(model.config, weights=path)  # refuses nothing
    from mixformer.models import load_weights

    load_weights(fresh, path)
    assert torch.equal(fresh.backbone.pos_embed_s, pe_s)
    blk = "blocks3" if v["config"]["family"] == "convmae" else "blocks"
    key = f"{blk}.0.attn.qkv.weight"
    assert torch.equal(fresh.backbone.state_dict()[key], sd[key])
    assert not torch.equal(fresh.box_head.conv1_tl[0].weight, model.box_head.conv1_tl[0].weight)


def test_presets_listed():
    assert set(KEY_FILES) <= set(list_models())
    assert all(get_preset(n).releases for n in KEY_FILES)


# ---- training through the existing trainer -----------------------------------------------------

_MICRO = {
    "vit": {"embed_dim": 32, "depth": 2, "num_heads": 2, "drop_path_rate": 0.1},
    "convmae": {"dims": [8, 16, 32], "depths": [1, 1, 2], "num_heads": 2},
}


@pytest.mark.parametrize("fam", FAMILIES)
def test_stage1_resume_and_stage2_train_through_the_trainer(fam, tmp_path):
    from mixformer.train import Trainer

    model = "mixvit-b" if fam == "vit" else "mixvit-convmae-b"
    overrides = {**_MICRO[fam], "head_dim": 16, "template_size": 64, "search_size": 128}
    s1 = micro_training(f"{model}-stage1", overrides)
    Trainer(s1, tmp_path / "s1", progress=False).fit()
    resumed = Trainer(s1.replace(epochs=2), tmp_path / "s1", resume=True, progress=False).fit()
    assert resumed is not None and resumed.name == "model_final.pth"
    s2 = micro_training(f"{model}-stage2", overrides, stage1_checkpoint=str(resumed))
    final = Trainer(s2, tmp_path / "s2", progress=False).fit()
    net = build_model(None, weights=final)
    assert net.config.family == fam and net.score_branch is not None


@pytest.mark.isolated  # ONNX Runtime kernels (see tests/conftest.py)
def test_onnx_export_and_runtime_match_torch(family, tmp_path):
    pytest.importorskip("onnxruntime")
    from mixformer.export.onnx import OnnxRuntimeModel, export_onnx

    v, model = family
    export_onnx(model, tmp_path)
    ort_model = OnnxRuntimeModel(tmp_path, threads=1)
    for key in ("cached", "cached_one"):
        c = v[key]
        with torch.inference_mode():
            ref = model.track(
                c["search"], model.encode_templates(c["template"], c["online_templates"])
            )
        got = ort_model.track(
            c["search"], ort_model.encode_templates(c["template"], c["online_templates"])
        )
        close(got["pred_boxes"], ref["pred_boxes"], 1e-4)
        close(got["pred_scores"], ref["pred_scores"], 1e-4)
        close(got["pred_boxes"], c["pred_boxes"], 1e-4)


def test_stage1_file_loads_with_a_warning_naming_the_score_keys(tmp_path, caplog):
    """A stage-1 MixViT file: no ``score_branch.*``, trainable-BN head buffers
    (``num_batches_tracked``), which the frozen-BN online model drops (SPEC-MIXVIT 6.3)."""
    stage1 = build_model("mixvit-b", score_head=False, head_bn="batch", depth=1)
    sd = stage1.state_dict()
    assert any(k.endswith("num_batches_tracked") for k in sd)
    path = tmp_path / "MixFormer_ep0500.pth.tar"
    torch.save({"net": sd}, path)
    with caplog.at_level("WARNING"):
        online = build_model("mixvit-b", weights=path, depth=1)
    assert "score module" in caplog.text and "score_branch." in caplog.text
    assert torch.equal(online.box_head.conv1_tl[0].weight, sd["box_head.conv1_tl.0.weight"])
