"""MixFormerV2-B / -S against the reference (SPEC-MIXFORMERV2): key lists and parameter counts of
the released models, the small-configuration vectors (joint forward, per-block tokens, box and
score heads, cached path), the reference tracker's boxes frame by frame, the fused and ONNX
forms, the released file format, wrong-family refusals and training through the trainer."""

from __future__ import annotations

import json
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
from mixformer.geometry import box_xyxy_to_cxcywh
from mixformer.models import (
    BACKBONES,
    HEADS,
    CheckpointError,
    MixFormer,
    MixFormerV2,
    ModelConfig,
    fuse_model,
    get_config,
    save_weights,
)
from mixformer.models.backbones import V2Config
from mixformer.models.backbones.vit import sincos_pos_embed
from mixformer.models.heads import MlpHeadConfig
from mixformer.models.weights import network_family, preset_shapes, read_checkpoint

DATA = Path(__file__).resolve().parent / "data" / "reference" / "mixformerv2"
KEY_FILES = {"mixformerv2-b": "keys_v2_b288_d8.json", "mixformerv2-s": "keys_v2_s224_d4.json"}
# SPEC-MIXFORMERV2 1.1: numel of nn.Parameters, of which requires_grad=False.
PARAMS = {"mixformerv2-b": (58_855_201, 297_984), "mixformerv2-s": (16_228_897, 188_160)}


def vector_config(raw: dict) -> ModelConfig:
    """The ModelConfig of the vector file's ``config`` entry (vectors README)."""
    assert raw["BOX_STRIDE"] == raw["SEARCH_SIZE"] / raw["FEAT_SZ"]
    return ModelConfig(
        backbone=V2Config(
            embed_dim=raw["EMBED_DIM"],
            depth=raw["DEPTH"],
            num_heads=raw["NUM_HEADS"],
            patch_size=raw["PATCH_SIZE"],
            mlp_ratio=raw["MLP_RATIO"],
            drop_path_rate=raw["DROP_PATH_RATE"],
            qkv_bias=raw["QKV_BIAS"],
            norm_eps=raw["BLOCK_NORM_EPS"],
            num_pred_tokens=raw["NUM_PRED_TOKENS"],
        ),
        head=MlpHeadConfig(bins=raw["FEAT_SZ"], norm_eps=raw["BOX_HEAD_NORM_EPS"]),
        template_size=raw["TEMPLATE_SIZE"],
        search_size=raw["SEARCH_SIZE"],
    )


@pytest.fixture(scope="module")
def vectors() -> dict:
    return torch.load(DATA / "vectors_v2_small.pt", weights_only=True)


@pytest.fixture(scope="module")
def small(vectors) -> MixFormerV2:
    model = MixFormer(vector_config(vectors["config"])).eval()
    model.load_state_dict(vectors["state_dict"], strict=True)
    return model


# ---- the released models' keys (meta device: no memory) ---------------------------------------


@pytest.mark.parametrize("name", list(KEY_FILES))
def test_state_dict_keys_shapes_and_order_equal_the_reference_lists(name):
    assert_keys_equal_reference(name, DATA / KEY_FILES[name])


@pytest.mark.parametrize("name", list(PARAMS))
def test_parameter_counts_match_the_spec(name):
    with torch.device("meta"):
        model = MixFormer(get_config(name), name)
    assert isinstance(model, MixFormerV2) and not list(model.buffers())
    assert parameter_counts(name) == PARAMS[name]


def test_family_and_head_are_registered():
    assert "v2" in BACKBONES and "mlp" in HEADS
    cfg = get_config("mixformerv2-s")
    assert (cfg.family, cfg.head.type, cfg.template_size, cfg.search_size) == (
        "v2",
        "mlp",
        112,
        224,
    )
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    assert type(MixFormer(get_config("mixformer-tiny"))) is MixFormer


# ---- network vectors -------------------------------------------------------------------------


def test_position_tables_are_the_float32_reference_tables(vectors):
    c, sd = vectors["config"], vectors["state_dict"]
    t = sincos_pos_embed(c["TEMPLATE_GRID"], c["EMBED_DIM"], np.float32)
    s = sincos_pos_embed(c["SEARCH_GRID"], c["EMBED_DIM"], np.float32)
    assert torch.equal(t, sd["backbone.pos_embed_t"]) and torch.equal(s, sd["backbone.pos_embed_s"])
    # the float64 table of MixFormer v1 / MixViT differs in the last bits (SPEC 2.2)
    assert not torch.equal(sincos_pos_embed(c["SEARCH_GRID"], c["EMBED_DIM"]), s)


@torch.inference_mode()
def test_joint_forward_matches_reference(vectors, small):
    i, j = vectors["inputs"], vectors["joint"]
    out = small(i["template"], i["online_template"], i["search"])
    close(out["pred_boxes"], j["pred_boxes"], 1e-5)
    close(out["pred_scores"], j["pred_scores"], 1e-5)
    for k in ("prob_l", "prob_t", "prob_r", "prob_b", "reg_tokens"):
        close(out[k], j[k], 1e-5)
    z, o, x, tokens = small.backbone.forward_all(i["template"], i["online_template"], i["search"])
    b = vectors["backbone"]
    for got, key in ((z, "template"), (o, "online_template"), (x, "search")):
        close(got, b[key], 1e-5)
    close(tokens, b["reg_tokens"], 1e-5)


@torch.inference_mode()
def test_per_block_tokens_and_patch_embedding_match_reference(vectors, small):
    i, inter = vectors["inputs"], vectors["intermediate"]
    seen = block_outputs(
        small.backbone.blocks, lambda: small(i["template"], i["online_template"], i["search"])
    )
    close(seen, inter["blocks"], 1e-5)
    for part in ("template", "online_template", "search"):
        close(small.backbone.embed(i[part]), inter[f"patch_embed_{part}"], 1e-6)


@torch.inference_mode()
def test_box_and_score_heads_match_reference(vectors, small):
    h, tokens = vectors["box_head"], vectors["joint"]["reg_tokens"]
    head = small.box_head
    assert torch.equal(head.bin_positions, h["bin_positions"][0])  # fl32(i * fl32(96 / 36))
    assert head.img_size == h["img_sz"]
    close(head.hidden(tokens), h["hidden"], 1e-5)
    close(head.bin_logits(tokens), h["bin_logits"], 1e-5)
    logits = vectors["joint_logits"]  # the reference's softmax=False: raw (normed) logits
    for k, t in (("prob_l", 0), ("prob_r", 1), ("prob_t", 2), ("prob_b", 3)):
        close(head.bin_logits(tokens)[:, t], logits[k], 1e-5)
    close(box_xyxy_to_cxcywh(head(tokens))[:, None], vectors["joint"]["pred_boxes"], 1e-5)
    close(small.score_head.per_token(tokens), vectors["score_head"]["per_token_logits"], 1e-5)
    close(small.score(tokens, None, None), vectors["joint"]["pred_scores"], 1e-5)


@pytest.mark.parametrize("fused", [False, True], ids=["plain", "fused"])
@torch.inference_mode()
def test_cached_path_equals_joint_forward_and_reference(vectors, small, fused):
    engine = fuse_model(small) if fused else small
    i, j = vectors["inputs"], vectors["joint"]
    cache = engine.encode_templates(i["template"], i["online_template"][:, None])
    out = engine.track(i["search"], cache)
    joint = engine(i["template"], i["online_template"], i["search"])
    for k in ("pred_boxes", "pred_scores", "prob_l", "prob_b", "reg_tokens"):
        close(out[k], j[k], 1e-5)
        close(out[k], joint[k], 1e-5)


@torch.inference_mode()
def test_encode_templates_is_set_online_for_two_online_templates(vectors, small):
    s = vectors["set_online"]
    cache = small.encode_templates(s["template"], s["online_templates"])
    close(cache.template_feat, s["template_features"], 1e-5)
    assert cache.num_online == 2 and cache.kv[0][0].shape[2] == 3 * 9


@torch.inference_mode()
def test_any_number_of_online_templates_and_batches(small):
    """The reference crashes with more than one online template (quirk 9.1); here the cached
    path takes any N, batches agree with single samples, and the templates matter."""
    g = torch.Generator().manual_seed(0)
    t = torch.randn(2, 3, 48, 48, generator=g)
    o = torch.randn(2, 3, 3, 48, 48, generator=g)
    x = torch.randn(2, 3, 96, 96, generator=g)
    both = small.track(x, small.encode_templates(t, o))
    one = [small.track(x[i : i + 1], small.encode_templates(t[i : i + 1], o[i])) for i in range(2)]
    for k in ("pred_boxes", "pred_scores"):
        close(both[k], torch.cat([r[k] for r in one]), 1e-5)
    fewer = small.track(x, small.encode_templates(t, o[:, :1]))
    assert (fewer["pred_boxes"] - both["pred_boxes"]).abs().max() > 1e-4
    with pytest.raises(NotImplementedError, match="no corner heat maps"):
        small.corner_maps(both["reg_tokens"])
    with pytest.raises(ValueError, match="motion_prior=0"):
        small.track(x, small.encode_templates(t, o), corner_prior=torch.zeros(2, 2, 36))


# ---- the reference tracker, frame by frame -----------------------------------------------------


@pytest.mark.parametrize("fast", [False, True], ids=["plain", "fused"])
@pytest.mark.parametrize("run", ["interval5_decay098", "interval3_decay1_factor5"])
def test_tracker_reproduces_reference_boxes(vectors, small, run, fast):
    frames = tracker_frames()
    r = vectors["tracker"]["runs"][run]
    config = reference_tracker_config(r)
    tracker = Tracker(small, config, fast=fast, dtype="fp32")
    boxes, scores = [tracker.init(frames[0], r["boxes_xywh"][0].tolist()).box], []
    for frame in frames[1:]:
        res = tracker.update(frame)
        boxes.append(res.box)
        scores.append(res.score)
    np.testing.assert_allclose(np.array(boxes), r["boxes_xywh"].numpy(), atol=5e-4, rtol=0)
    np.testing.assert_allclose(np.array(scores), r["scores"][1:].numpy(), atol=1e-5)


def test_motion_prior_is_refused_in_one_line(small):
    frames = tracker_frames()
    tracker = Tracker(small, TrackerConfig(template_size=48, search_size=96, motion_prior=0.1))
    tracker.init(frames[0], [30, 48, 60, 44])
    with pytest.raises(ValueError, match="no corner-map grid .* set motion_prior=0"):
        tracker.update(frames[1])


def test_tracker_runs_three_online_templates(small):
    """The fallback schedule (online size 3) that crashes the reference tracks here."""
    frames = tracker_frames()[:12]
    config = TrackerConfig(template_size=48, search_size=96, update_interval=2, online_size=3)
    tracker = Tracker(small, config)
    tracker.init(frames[0], [30, 48, 60, 44])
    results = [tracker.update(f) for f in frames[1:]]
    assert all(np.isfinite(r.box).all() and 0.0 <= r.score <= 1.0 for r in results)


def test_tracker_presets_come_from_the_model():
    b = TrackerConfig.preset("lasot", model="mixformerv2-b")
    assert (b.search_factor, b.update_interval, b.online_size, b.max_score_decay) == (
        5.0,
        200,
        1,
        1.0,
    )
    assert (b.template_size, b.search_size, b.motion_prior) == (128, 288, 0.0)
    got = TrackerConfig.preset("got10k_test", model="mixformerv2-s")
    assert (got.update_interval, got.online_size, got.search_factor) == (15, 1, 4.55)
    assert (got.template_size, got.search_size) == (112, 224)
    tn = TrackerConfig.preset("trackingnet", model="mixformerv2-s")
    assert (tn.update_interval, tn.online_size, tn.search_factor) == (25, 1, 4.55)
    otb = TrackerConfig.preset("otb", model="mixformerv2-b")  # fallback: crashes the reference
    assert (otb.update_interval, otb.online_size, otb.search_factor) == (200, 3, 4.5)
    assert TrackerConfig.preset("lasot", model="mixformerv2-s").search_factor == 4.4


# ---- presets: forward, gradients ---------------------------------------------------------------


@pytest.mark.parametrize("name", list(KEY_FILES))
def test_forward_shapes_and_gradients(name):
    torch.manual_seed(0)
    model = build_model(name, drop_path_rate=0.0).train()
    cfg = model.config
    t = torch.randn(1, 3, cfg.template_size, cfg.template_size)
    x = torch.randn(1, 3, cfg.search_size, cfg.search_size)
    out = model(t, t.clone(), x)
    assert out["pred_boxes"].shape == (1, 1, 4) and out["pred_scores"].shape == (1,)
    assert out["prob_l"].shape == (1, 96) and out["reg_tokens"].shape == (1, 4, 768)
    (out["pred_boxes"].sum() + out["pred_scores"].sum()).backward()
    no_grad = [
        n
        for n, p in model.named_parameters()
        if p.requires_grad and (p.grad is None or not p.grad.abs().sum())
    ]
    assert not no_grad, no_grad[:5]
    assert (
        not model.backbone.pos_embed_s.requires_grad
        and not model.backbone.pos_embed_t.requires_grad
    )


# ---- fused and ONNX ----------------------------------------------------------------------------


@torch.inference_mode()
def test_fused_matches_plain_low_precisionclose(small, vectors):
    i = vectors["inputs"]
    ref = small.track(
        i["search"], small.encode_templates(i["template"], i["online_template"][:, None])
    )
    bf = fuse_model(small, "bf16")
    got = bf.track(i["search"], bf.encode_templates(i["template"], i["online_template"][:, None]))
    assert got["pred_boxes"].dtype == got["pred_scores"].dtype == torch.float32
    close(got["pred_boxes"], ref["pred_boxes"], 0.03)


@pytest.mark.isolated  # ONNX Runtime kernels (see tests/conftest.py)
def test_onnx_export_and_runtime_match_torch(vectors, small, tmp_path):
    pytest.importorskip("onnxruntime")
    from mixformer.export.onnx import OnnxRuntimeModel, export_onnx

    export_onnx(small, tmp_path)
    meta = json.loads((tmp_path / "mixformer_onnx.json").read_text())
    assert "corner_prior" not in meta["search_inputs"]
    ort_model = OnnxRuntimeModel(tmp_path, threads=1)
    i = vectors["inputs"]
    for n in (1, 3):
        t, x = i["template"][:1], i["search"][:1]
        o = torch.cat([i["online_template"][:1]] * n)
        with torch.inference_mode():
            ref = small.track(x, small.encode_templates(t, o))
        got = ort_model.track(x, ort_model.encode_templates(t, o))
        close(got["pred_boxes"], ref["pred_boxes"], 1e-4)
        close(got["pred_scores"], ref["pred_scores"], 1e-4)
        if n == 1:
            close(got["pred_boxes"], vectors["joint"]["pred_boxes"][:1], 1e-4)
    with pytest.raises(ValueError, match="no corner_prior input"):
        ort_model.track(x, ort_model.encode_templates(t, o), corner_prior=torch.zeros(1, 2, 36))


@pytest.mark.slow
@pytest.mark.parametrize("name", list(KEY_FILES))
def test_onnx_full_presets_match_torch(name, tmp_path):
    pytest.importorskip("onnxruntime")
    from mixformer.export.onnx import OnnxRuntimeModel, export_onnx

    torch.manual_seed(0)
    model = build_model(name)
    export_onnx(model, tmp_path, check=False)
    ort_model = OnnxRuntimeModel(tmp_path, threads=2)
    cfg = model.config
    g = torch.Generator().manual_seed(1)
    t = torch.randn(1, 3, cfg.template_size, cfg.template_size, generator=g)
    x = torch.randn(1, 3, cfg.search_size, cfg.search_size, generator=g)
    with torch.inference_mode():
        ref = model.track(x, model.encode_templates(t, t))
    got = ort_model.track(x, ort_model.encode_templates(t, t))
    close(got["pred_boxes"], ref["pred_boxes"], 1e-4)
    close(got["pred_scores"], ref["pred_scores"], 1e-4)


# ---- weights files ---------------------------------------------------------------------------


def _release_file(path: Path, name: str, fill: float = 0.0) -> dict[str, torch.Tensor]:
    """A file in the released format (SPEC-MIXFORMERV2 6.2): ``net`` plus trainer entries."""
    sd = {k: torch.full(s, fill) for k, s in preset_shapes(name).items()}
    torch.save({"net": sd, "epoch": 300, "net_type": "MixFormer", "settings": None}, path)
    return sd


def test_small_release_file_round_trip_and_rebuild_from_file(vectors, small, tmp_path):
    release = tmp_path / "release.pth.tar"
    torch.save({"net": vectors["state_dict"], "epoch": 1, "settings": None}, release)
    assert read_checkpoint(release).family == "v2"
    same = build_model(small.config, weights=release)
    for k, t in same.state_dict().items():
        assert torch.equal(t, vectors["state_dict"][k]), k
    ours = tmp_path / "ours.pth"
    save_weights(same, ours)
    again = build_model(None, weights=ours)
    assert isinstance(again, MixFormerV2) and again.config == small.config


@pytest.mark.parametrize("name", list(KEY_FILES))
def test_released_preset_files_load_strictly(name, tmp_path):
    path = tmp_path / f"{name}.pth.tar"
    sd = _release_file(path, name, fill=0.5)
    model = build_model(name, weights=path)
    assert list(model.state_dict()) == list(sd)
    assert torch.equal(model.backbone.pos_embed_s, sd["backbone.pos_embed_s"])  # replaced
    assert torch.equal(model.score_head.layers[1].weight, sd["score_head.layers.1.weight"])


def test_wrong_family_files_are_refused_naming_family_and_preset(tmp_path):
    v2 = tmp_path / "v2.pth.tar"
    _release_file(v2, "mixformerv2-s")
    with pytest.raises(
        CheckpointError, match=r"v2 network file \(its shapes fit 'mixformerv2-s'\)"
    ):
        build_model("mixvit-b", weights=v2)
    vit = tmp_path / "vit.pth.tar"
    torch.save({"net": {k: torch.zeros(s) for k, s in preset_shapes("mixvit-b").items()}}, vit)
    assert network_family(read_checkpoint(vit).state_dict) == "vit"
    with pytest.raises(
        CheckpointError, match=r"vit network file \(its shapes fit 'mixvit-b'\).* v2"
    ):
        build_model("mixformerv2-s", weights=vit)
    with pytest.raises(CheckpointError, match="its shapes fit 'mixformerv2-s'"):
        build_model("mixformerv2-b", weights=v2)


def test_mae_vit_backbone_file_loads_into_the_backbone(small, vectors, tmp_path):
    """An MAE ViT file (``model`` entry, raw ViT keys): blocks loaded, tables and the
    prediction tokens kept (SPEC-MIXFORMERV2 6.3)."""
    sd = {
        k.removeprefix("backbone."): t
        for k, t in vectors["state_dict"].items()
        if k.startswith("backbone.") and "reg" not in k
    }
    sd["pos_embed"] = torch.zeros(1, 37, 64)
    sd["cls_token"] = torch.zeros(1, 1, 64)
    sd["mask_token"] = torch.zeros(1, 1, 64)
    path = tmp_path / "mae.pth"
    torch.save({"model": sd}, path)
    assert read_checkpoint(path).family == "vit"
    fresh = MixFormer(small.config).eval()
    tables = fresh.backbone.pos_embed_s.detach().clone()
    reg = fresh.backbone.reg_tokens.detach().clone()
    from mixformer.models import load_weights

    load_weights(fresh, path)
    key = "blocks.1.mlp.fc2.weight"
    assert torch.equal(fresh.backbone.state_dict()[key], sd[key])
    assert torch.equal(fresh.backbone.pos_embed_s, tables)
    assert torch.equal(fresh.backbone.reg_tokens, reg)
    with pytest.raises(CheckpointError, match="vit pretrained backbone file"):
        build_model("mixformer-tiny", weights=path)


def test_stage1_file_without_score_head_loads_with_a_warning(tmp_path, caplog):
    sd = {k: torch.zeros(s) for k, s in preset_shapes("mixformerv2-s").items()}
    path = tmp_path / "stage1.pth.tar"
    torch.save({"net": {k: t for k, t in sd.items() if not k.startswith("score_head.")}}, path)
    with caplog.at_level("WARNING"):
        build_model("mixformerv2-s", weights=path)
    assert "score_head.layers.0.0.weight" in caplog.text


# ---- training through the existing trainer -----------------------------------------------------


def test_stage1_and_stage2_train_through_the_trainer(tmp_path):
    from mixformer.train import Trainer

    overrides = {
        "embed_dim": 32,
        "depth": 2,
        "num_heads": 2,
        "bins": 16,
        "template_size": 48,
        "search_size": 96,
    }
    s1 = micro_training("mixformerv2-s-stage1", overrides)
    first = Trainer(s1, tmp_path / "s1", progress=False).fit()
    s2 = micro_training("mixformerv2-s-stage2", overrides, stage1_checkpoint=str(first))
    final = Trainer(s2, tmp_path / "s2", progress=False).fit()
    net = build_model(None, weights=final)
    assert isinstance(net, MixFormerV2) and net.score_head is not None
    stage1 = build_model(None, weights=first)
    assert stage1.score_head is None
    # stage 2 trains the score head only; the backbone and box head stay as stage 1 left them
    for key in (
        "backbone.blocks.0.attn.qkv.weight",
        "backbone.reg_tokens",
        "box_head.layers.1.1.weight",
    ):
        assert torch.equal(net.state_dict()[key], stage1.state_dict()[key]), key
