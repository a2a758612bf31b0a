"""Attention maps of tracking results (keep_attention=True) and their pictures."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from conftest import micro_config
from mixformer import MultiTracker, Tracker, TrackerConfig, build_model
from mixformer.datagen.synthetic import generate_sequence
from mixformer.tracking.attention import (
    query_attention,
    render_frame,
    render_query,
    segment_mass,
    write_attention,
)

BOX = (20, 30, 30, 25)


@pytest.fixture(scope="module")
def model(micro_model):
    return micro_model


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return generate_sequence(3, num_frames=8, height=120, width=160).frames


config = micro_config


def _layer(model, name):
    return dict(model.named_modules())[name]


@pytest.mark.parametrize("fast", [False, True], ids=["plain", "fast"])
def test_recorded_probabilities_are_the_softmax_of_q_and_k(model, frames, fast, monkeypatch):
    """Recompute one block's probabilities by hand from the q / k its attention projected."""
    name = "backbone.stage2.blocks.1.attn"
    cfg = config(update_interval=2, online_size=2)
    tracker = Tracker(model, cfg, fast=fast, keep_attention=True)
    layer = _layer(tracker.engine.network, name)
    calls: list[tuple[torch.Tensor, torch.Tensor]] = []
    project = layer.project_qkv

    def spy(tokens, n_images, h, w):
        q, k, v = project(tokens, n_images, h, w)
        calls.append((q.float(), k.float()))
        return q, k, v

    monkeypatch.setattr(layer, "project_qkv", spy)
    tracker.init(frames[0], BOX)
    for f in frames[1:4]:  # a template update on frame 2: two online templates from then on
        res = tracker.update(f)
    (q_t, k_t), (q_s, k_s) = calls[-2], calls[-1]  # the re-encode of frame 2, frame 3's search
    maps = {(m.layer, m.kind): m for m in res.attention.maps}
    scale = layer.scale
    want_t = torch.softmax(q_t @ k_t.transpose(-2, -1) * scale, dim=-1)
    k_all = torch.cat([k_t, k_s], dim=2)
    want_s = torch.softmax(q_s @ k_all.transpose(-2, -1) * scale, dim=-1)
    torch.testing.assert_close(maps[name, "template"].probs, want_t, atol=1e-6, rtol=0)
    torch.testing.assert_close(maps[name, "search"].probs, want_s, atol=1e-6, rtol=0)


def test_recording_does_not_change_the_boxes(model, frames):
    cfg = config(update_interval=2, online_size=3)
    a = Tracker(model, cfg, dtype="fp32")
    b = Tracker(model, cfg, keep_attention=True, dtype="fp32")
    a.init(frames[0], BOX)
    b.init(frames[0], BOX)
    for f in frames[1:]:
        ra, rb = a.update(f), b.update(f)
        assert ra.attention is None and rb.attention is not None
        np.testing.assert_allclose(ra.box, rb.box, atol=1e-4)


def test_shapes_segments_and_rows_for_every_online_template_count(model, frames):
    cfg = config(update_interval=2, online_size=3)
    tracker = Tracker(model, cfg, keep_attention=True)
    first = tracker.init(frames[0], BOX).attention
    assert first.crop_window is None and not first.search_maps and first.template_maps
    seen = set()
    for f in frames[1:]:
        n = tracker.num_online_templates  # the count this frame's search runs against
        att = tracker.update(f).attention
        seen.add(n)
        names = ["template", *[f"online{i}" for i in range(n)]]
        assert len(att.templates) == n + 1
        assert all(t.shape == (64, 64, 3) and t.dtype == np.uint8 for t in att.templates)
        stages = [m.layer.split(".")[1] for m in att.search_maps]
        assert stages == ["stage0", "stage1", "stage2", "stage2"]  # MICRO: depth (1, 1, 2)
        for m in att.maps:
            assert m.probs.dtype == torch.float32 and m.probs.shape[0] == 1
            q = sum(h * w for _, h, w in m.query_segments)
            k = sum(h * w for _, h, w in m.key_segments)
            assert m.probs.shape[2:] == (q, k)
            torch.testing.assert_close(m.probs.sum(-1), torch.ones(m.probs.shape[:3]))
            keys = [s[0] for s in m.key_segments]
            assert keys == (names if m.kind == "template" else [*names, "search"])
        # stride-2 keys: stage 0 of a 128 px crop has 32x32 search queries over 16x16 keys
        s0 = att.search_maps[0]
        assert s0.query_segments == (("search", 32, 32),)
        assert s0.key_segments[-1] == ("search", 16, 16) and s0.key_segments[0][1:] == (8, 8)
    assert seen == {1, 2, 3}


def test_multi_tracker_rows_match_single_trackers(model, frames):
    boxes = [BOX, (80, 40, 25, 35)]
    cfg = config(update_interval=2, online_size=2)
    mt = MultiTracker(model, cfg, keep_attention=True)
    ids = [mt.add(frames[0], b) for b in boxes]
    for f in frames[1:4]:
        got = mt.update(f)
    for tid, box in zip(ids, boxes):
        single = Tracker(model, cfg, keep_attention=True)
        single.init(frames[0], box)
        for f in frames[1:4]:
            ref = single.update(f)
        assert [m.layer for m in got[tid].attention.maps] == [m.layer for m in ref.attention.maps]
        for a, b in zip(got[tid].attention.maps, ref.attention.maps):
            assert a.key_segments == b.key_segments
            torch.testing.assert_close(a.probs, b.probs, atol=1e-4, rtol=0)


def test_shared_engine_records_only_for_the_tracker_that_asks(model, frames):
    cfg = config()
    keeping, plain = Tracker(model, cfg, keep_attention=True), Tracker(model, cfg)
    assert keeping.engine is plain.engine
    keeping.init(frames[0], BOX)
    plain.init(frames[0], BOX)
    assert keeping.update(frames[1]).attention is not None
    assert plain.update(frames[1]).attention is None
    layers = [m for m in plain.engine.network.modules() if hasattr(m, "keep_attention")]
    assert layers and not any(m.keep_attention for m in layers)


def test_keep_attention_needs_a_torch_engine(model):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    with pytest.raises(ValueError, match="keep_attention needs a torch engine"):
        Tracker(model, config(), backend="onnxruntime", keep_attention=True)


def test_query_and_mass_helpers_by_hand(model, frames):
    tracker = Tracker(model, config(), keep_attention=True)
    tracker.init(frames[0], BOX)
    att = tracker.update(frames[1]).attention
    m = att.search_maps[-1]
    per_key = query_attention(m, (1, 2))
    _, qh, qw = m.query_segments[0]
    row = m.probs[0, :, 1 * qw + 2].mean(0).numpy()
    assert sum(float(v.sum()) for v in per_key.values()) == pytest.approx(1.0, abs=1e-5)
    assert float(per_key["template"].sum()) == pytest.approx(float(row[: 2 * 2].sum()), abs=1e-6)
    mass = segment_mass(m, "template")
    assert mass.shape == (qh, qw) and mass[1, 2] == pytest.approx(per_key["template"].sum())
    with pytest.raises(ValueError, match="outside"):
        query_attention(m, (qh, 0))
    with pytest.raises(ValueError, match="no key segment"):
        segment_mass(m, "online5")


def test_pictures_are_written(model, frames, tmp_path):
    cfg = config(update_interval=2, online_size=2)
    tracker = Tracker(model, cfg, keep_attention=True)
    tracker.init(frames[0], BOX)
    for f in frames[1:4]:
        att = tracker.update(f).attention
    query = render_query(att, frames[3])
    assert query.shape == (22 + 192 + 24, 192 * 4, 3)  # search, template, online0, online1
    whole = render_frame(att, frames[3], layer="backbone.stage1.blocks.0.attn")
    assert whole.shape == (120 + 40, 160, 3)
    assert not np.array_equal(whole[:120], frames[3])  # the window's area is coloured
    paths = write_attention(tmp_path / "att", "frame000003", att, frames[3], layer=0)
    for p in paths:
        img = cv2.imread(str(p))
        assert img is not None and img.shape[2] == 3
    assert sorted(p.name for p in (tmp_path / "att").iterdir()) == [
        "frame000003_frame.png",
        "frame000003_query.png",
    ]
    with pytest.raises(ValueError, match="no search attention"):
        render_query(tracker.init(frames[0], BOX).attention, frames[0])


def test_cli_track_attention(tmp_path):
    from mixformer.cli import main

    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(generate_sequence(7, num_frames=5, height=120, width=160).frames):
        cv2.imwrite(str(folder / f"{i:04d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    out = tmp_path / "att"
    argv = ["track", str(folder), "--box", "20,30,30,25", "--boxes", str(tmp_path / "b.txt")]
    assert main([*argv, "--attention", str(out), "--attention-every", "2"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "frame000002_frame.png",
        "frame000002_query.png",
        "frame000004_frame.png",
        "frame000004_query.png",
    ]
    assert main([*argv, "--attention", str(out), "--attention-every", "0"]) == 2


@pytest.mark.parametrize("name", ["mixvit-b", "mixformerv2-s"])
def test_other_families_through_the_same_core(name, tmp_path):
    """MixViT (pyramid corner head) and MixFormerV2 (prediction tokens, no heat maps): the core's
    MultiTracker equals single Trackers, attention segments cover every key, pictures render."""
    torch.manual_seed(0)
    model = build_model(name, depth=1)
    cfg = TrackerConfig.for_model(model).replace(update_interval=1, online_size=2)
    seq = generate_sequence(3, num_frames=3, height=240, width=320)
    boxes = [(40, 60, 50, 40), (150, 80, 40, 50)]
    mt = MultiTracker(model, cfg, keep_attention=True, dtype="fp32")
    ids = [mt.add(seq.frames[0], b) for b in boxes]
    for f in seq.frames[1:]:
        got = mt.update(f, observe=True)
    single = Tracker(model, cfg, dtype="fp32")
    single.init(seq.frames[0], boxes[1])
    for f in seq.frames[1:]:
        ref = single.update(f)
    np.testing.assert_allclose(got[ids[1]].box, ref.box, atol=1e-3)
    res = got[ids[0]]
    heat = res.observation.heatmaps
    if name == "mixformerv2-s":
        assert heat is None
    else:
        f_side = model.config.corner_map_size
        assert heat.shape == (2, f_side, f_side)
    for m in res.attention.maps:
        assert sum(h * w for _, h, w in m.key_segments) == m.probs.shape[-1]
    names = [s[0] for s in res.attention.search_maps[-1].key_segments]
    assert names[:3] == ["template", "online0", "online1"] and "search" in names
    query, whole = write_attention(tmp_path, name, res.attention, seq.frames[-1])
    assert cv2.imread(str(query)).shape[1] == 192 * 4 and cv2.imread(str(whole)) is not None
