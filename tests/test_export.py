"""ONNX export (export/onnx.py) and the ONNX Runtime backend against PyTorch."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from conftest import vector_config
from mixformer import Tracker, TrackerConfig, build_model
from mixformer.datagen.synthetic import generate_sequence
from mixformer.models.heads import corner_prior
from test_fuse import _inputs, _sharpen

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from mixformer.export.onnx import (  # noqa: E402
    META_FILE,
    SEARCH_GRAPH,
    TEMPLATE_GRAPH,
    OnnxRuntimeModel,
    export_onnx,
)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    model = _sharpen(build_model("mixformer-tiny"))
    out = tmp_path_factory.mktemp("onnx")
    export_onnx(model, out)
    return model, out


def test_export_writes_graphs_and_metadata(exported):
    model, out = exported
    assert (out / TEMPLATE_GRAPH).is_file() and (out / SEARCH_GRAPH).is_file()
    meta = json.loads((out / META_FILE).read_text())
    assert meta["num_blocks"] == sum(model.config.backbone.depth)
    assert meta["cache"][0] == "template_feat" and len(meta["cache"]) == 1 + 2 * sum(
        model.config.backbone.depth
    )


def test_exported_attention_is_the_explicit_formula(exported):
    """``softmax((q @ k^T) * scale) @ v``, not the exporter's form of the fused kernel (scale
    split over q and an explicitly transposed k), which OpenVINO runs slower."""
    import onnx

    _, out = exported
    graph = onnx.load(str(out / SEARCH_GRAPH)).graph
    made_by = {o: n for n in graph.node for o in n.output}
    attention = [n for n in graph.node if n.op_type == "Softmax" and "box_head" not in n.name]
    assert len(attention) >= 5  # the mixed-attention blocks and the score module
    for softmax in attention:
        scaled = made_by[softmax.input[0]]
        assert scaled.op_type == "Mul" and made_by[scaled.input[0]].op_type == "MatMul"


@pytest.mark.isolated  # ONNX Runtime kernels (see tests/conftest.py)
@pytest.mark.parametrize("n_online", [1, 3])
def test_onnxruntime_matches_torch(exported, n_online):
    """Any number of online templates: the graphs were traced with 2."""
    model, out = exported
    ort_model = OnnxRuntimeModel(out, threads=1)
    z, o, x = _inputs(n_online)
    with torch.inference_mode():
        ref = model.track(x, model.encode_templates(z, o))
    cache = ort_model.encode_templates(z, o)
    side = model.config.template_size // 8  # stage 0: /4 patch embed, k/v stride 2
    assert cache.arrays["k0"].shape[2] == (1 + n_online) * side * side
    got = ort_model.track(x, cache)
    assert ref["pred_boxes"].std() > 1e-3
    torch.testing.assert_close(got["pred_boxes"], ref["pred_boxes"], atol=1e-4, rtol=0)
    torch.testing.assert_close(got["pred_scores"], ref["pred_scores"], atol=1e-4, rtol=0)


@pytest.mark.isolated  # ONNX Runtime kernels (see tests/conftest.py)
def test_onnxruntime_tracker_matches_torch_tracker(tracker_vectors):
    weights, runs, frames = tracker_vectors
    model = build_model(vector_config(weights["config"]))
    model.load_state_dict(weights["state_dict"])
    r = runs["runs"]["interval5_online3"]
    cfg = TrackerConfig(
        update_interval=r["update_interval"],
        online_size=r["online_size"],
        search_factor=r["search_factor"],
        max_score_decay=r["max_score_decay"],
    )
    tracker = Tracker(model, cfg, backend="onnxruntime")
    assert isinstance(tracker.engine.network, OnnxRuntimeModel)
    ref = np.asarray(r["boxes_xywh"])
    tracker.init(frames[0], ref[0])
    # 20 frames: four template updates, the cache grows from 1 to 3 online templates.
    got = [tracker.update(f).box for f in frames[1:21]]
    np.testing.assert_allclose(np.asarray(got), ref[1:21], atol=0.01, rtol=0)
    assert tracker.num_online_templates == 3


def test_onnxruntime_backend_rejects_bf16():
    with pytest.raises(ValueError, match="fp32"):
        Tracker(build_model("mixformer-tiny"), dtype="bf16", backend="onnxruntime")


def test_cli_export_onnx(tmp_path, capsys):
    from mixformer.cli import main

    code = main(["export", "onnx", str(tmp_path / "out"), "--model", "mixformer-tiny"])
    assert code == 0
    text = capsys.readouterr().out
    assert "verify: max |pred_boxes(onnxruntime) - pred_boxes(torch)|" in text
    assert (tmp_path / "out" / SEARCH_GRAPH).is_file()


@pytest.mark.isolated  # ONNX Runtime kernels (see tests/conftest.py)
def test_onnxruntime_applies_a_corner_prior(exported):
    """The search graph's corner_prior input: a sharp prior pins the box as in torch."""
    model, out = exported
    ort_model = OnnxRuntimeModel(out, threads=1)
    z, o, x = _inputs(1)
    head = model.box_head
    cells = torch.tensor([[16.0, 32.0, 96.0, 112.0]])
    prior = corner_prior(cells, head.coord_x, head.coord_y, 8.0)
    with torch.inference_mode():
        ref = model.track(x, model.encode_templates(z, o), corner_prior=prior)
        free = model.track(x, model.encode_templates(z, o))
    cache = ort_model.encode_templates(z, o)
    got = ort_model.track(x, cache, corner_prior=prior)
    assert (ref["pred_boxes"] - free["pred_boxes"]).abs().max() > 1e-2
    torch.testing.assert_close(got["pred_boxes"], ref["pred_boxes"], atol=1e-4, rtol=0)
    torch.testing.assert_close(got["pred_scores"], ref["pred_scores"], atol=1e-4, rtol=0)
    no_prior = ort_model.track(x, cache)
    torch.testing.assert_close(no_prior["pred_boxes"], free["pred_boxes"], atol=1e-4, rtol=0)


@pytest.mark.isolated  # ONNX Runtime kernels (see tests/conftest.py)
def test_onnxruntime_tracker_runs_the_shipped_settings():
    """The shipped model's preset (motion prior, velocity, size update): same boxes as torch."""
    model = build_model("mixformer-tiny", weights="default")
    cfg = TrackerConfig.for_model(model)
    assert cfg.motion_prior > 0 and cfg.velocity > 0
    seq = generate_sequence(3, num_frames=12, height=120, width=160)
    boxes = {}
    for backend in ("torch", "onnxruntime"):
        tracker = Tracker(model, cfg, backend=backend, fast=backend == "torch", dtype="fp32")
        tracker.init(seq.frames[0], seq.boxes[0])
        boxes[backend] = np.array([tracker.update(f).box for f in seq.frames[1:]])
    np.testing.assert_allclose(boxes["onnxruntime"], boxes["torch"], atol=1e-2, rtol=0)


def test_export_cache_reuses_graphs_of_the_same_weights(tmp_path, monkeypatch):
    from mixformer.export import cache as cache_mod

    monkeypatch.setenv("MIXFORMER_CACHE_DIR", str(tmp_path / "cache"))
    torch.manual_seed(0)
    model = build_model("mixformer-tiny").eval()
    first = cache_mod.cached_export(model)
    assert first is not None and (first / META_FILE).is_file()
    assert first.parent == tmp_path / "cache" / "onnx"
    assert not [p for p in first.parent.iterdir() if p.name.startswith(".export-")]

    def no_export(*a, **k):
        raise AssertionError("the cached graphs must be reused")

    monkeypatch.setattr(cache_mod, "export_onnx", no_export)
    assert cache_mod.cached_export(model) == first
    runtime = OnnxRuntimeModel.from_model(model)  # the backends' path reads the cache too
    assert runtime.onnx_dir == first
    other = build_model("mixformer-tiny").eval()  # other random weights: another digest
    assert cache_mod.model_digest(other) != cache_mod.model_digest(model)
    with pytest.raises(AssertionError, match="reused"):
        cache_mod.cached_export(other)
    digest = cache_mod.model_digest(model)
    monkeypatch.setattr(cache_mod, "GRAPH_REVISION", cache_mod.GRAPH_REVISION + 1)
    assert cache_mod.model_digest(model) != digest  # graphs of another form: another entry


def test_export_cache_off_or_unwritable_falls_back(tmp_path, monkeypatch):
    from mixformer.export import cache as cache_mod

    model = build_model("mixformer-tiny").eval()
    monkeypatch.setenv("MIXFORMER_CACHE_DIR", "")
    assert cache_mod.export_cache_dir() is None and cache_mod.cached_export(model) is None
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("MIXFORMER_CACHE_DIR", str(blocker))
    assert cache_mod.cached_export(model) is None  # cannot create a folder under a file
    runtime = OnnxRuntimeModel.from_model(model)  # a temporary folder instead
    assert runtime.onnx_dir.is_dir() and blocker.is_file()


def test_export_cache_keeps_the_most_recent(tmp_path):
    from mixformer.export import cache as cache_mod

    for i in range(5):
        d = tmp_path / f"e{i}"
        d.mkdir()
        (d / META_FILE).write_text("{}")
        os.utime(d, (1000 + i, 1000 + i))
    cache_mod._prune(tmp_path, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e3", "e4"]


@pytest.mark.isolated  # ONNX Runtime kernels (see tests/conftest.py)
def test_onnxruntime_int8_quantises_the_blocks_only_and_stays_close(tmp_path):
    """ONNX Runtime int8 (static QDQ on calibration steps): the mixed-attention blocks' matrix
    products in int8, the embedding and the heads in float (the INT8_FLOAT_SCOPES shared with
    OpenVINO); boxes close to fp32 on the shipped weights."""
    import onnx

    from mixformer.export.int8 import INT8_FLOAT_SCOPES, quantize_onnx_search_graph
    from mixformer.perf.calibration import calibration_feeds

    model = build_model("mixformer-tiny", weights="default").eval()
    export_onnx(model, tmp_path, check=False)
    fp32 = OnnxRuntimeModel(tmp_path, threads=1)
    feeds = calibration_feeds(fp32, steps=8, sequences=2, height=240, width=320)
    with pytest.raises(ValueError, match="calibration"):
        OnnxRuntimeModel(tmp_path, threads=1, precision="int8")
    with pytest.raises(ValueError, match="precision"):
        OnnxRuntimeModel(tmp_path, threads=1, precision="bf16")

    def quantised(path) -> set[str]:
        """Nodes fed by a DequantizeLinear of an activation (the int8 operators)."""
        graph = onnx.load(str(path)).graph
        deq = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
        return {n.name for n in graph.node if n.op_type != "QuantizeLinear" and deq & set(n.input)}

    every = quantised(
        quantize_onnx_search_graph(tmp_path / SEARCH_GRAPH, tmp_path / "all.onnx", feeds, ())
    )
    blocks = quantised(
        quantize_onnx_search_graph(
            tmp_path / SEARCH_GRAPH, tmp_path / "blocks.onnx", feeds, INT8_FLOAT_SCOPES
        )
    )
    float_parts = ("/box_head/", "/score_branch/", "/patch_embed")
    assert any(n.startswith(float_parts) for n in every)
    assert blocks and not any(n.startswith(float_parts) for n in blocks)
    assert any("mlp" in n for n in blocks)

    int8 = OnnxRuntimeModel(tmp_path, threads=1, precision="int8", calibration=feeds)
    test = calibration_feeds(fp32, steps=6, sequences=2, seed=77, height=240, width=320)
    for f in test:
        ref, got = fp32._run_search(f), int8._run_search(f)
        assert np.isfinite(got[0]).all()
        assert np.abs(got[0] - ref[0]).max() < 0.05  # of the crop side
        assert 0 < np.abs(got[0] - ref[0]).max()  # it is another computation
