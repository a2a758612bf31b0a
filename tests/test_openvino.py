"""The OpenVINO backend (``backend="openvino"``; ``openvino`` comes with the package on x86-64):
the same exported graphs as ONNX Runtime, compiled by OpenVINO; fp32 and bf16 against the torch
fp32 path, int8 through NNCF on calibration steps of composited photos."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from mixformer import Tracker, TrackerConfig, build_model
from mixformer.tracking import engine

pytest.importorskip("openvino")
# OpenVINO and NNCF kernels run in a child process per test (see tests/conftest.py)
pytestmark = pytest.mark.isolated

from mixformer.export.openvino import OpenVinoModel  # noqa: E402


def _crops(model, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ts, ss = model.config.template_size, model.config.search_size
    return (
        torch.randn(1, 3, ts, ts, generator=g),
        torch.randn(1, 1, 3, ts, ts, generator=g),
        torch.randn(1, 3, ss, ss, generator=g),
    )


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_model("mixformer-tiny").eval()


def test_openvino_fp32_matches_torch_on_the_same_crops(tiny):
    template, online, search = _crops(tiny)
    ov = engine(tiny, backend="openvino", dtype="fp32")
    assert isinstance(ov.network, OpenVinoModel) and ov.max_batch == 1 and not ov.can_batch
    with torch.inference_mode():
        ref = tiny.track(search, tiny.encode_templates(template, online))
    got = ov.track(search, ov.encode_templates(template, online))
    assert ref["pred_boxes"].std() > 1e-3
    torch.testing.assert_close(got["pred_boxes"], ref["pred_boxes"], atol=1e-4, rtol=0)
    torch.testing.assert_close(got["pred_scores"], ref["pred_scores"], atol=1e-4, rtol=0)


def test_openvino_fp32_matches_the_mobilenetv3_port():
    """The default model: OpenVINO fuses ``x * c * relu6(x + 3)`` into its HSwish with an exact
    1/6, 2.4e-4 off the port's fp16 constant; the exported form it does not fuse keeps fp32
    within float rounding (before: boxes 1.7e-4 and template features 1.3e-3 off)."""
    model = build_model("mixformer-mbv3", weights="default").eval()
    template, online, search = _crops(model, seed=1)
    ov = engine(model, backend="openvino", dtype="fp32")
    with torch.inference_mode():
        ref = model.track(search, model.encode_templates(template, online))
    got = ov.track(search, ov.encode_templates(template, online))
    torch.testing.assert_close(got["pred_boxes"], ref["pred_boxes"], atol=1e-5, rtol=0)
    # the score logit (about 4 in magnitude; the calibration multiplied it by 2.2): rounding
    # is relative
    torch.testing.assert_close(got["pred_scores"], ref["pred_scores"], atol=1e-5, rtol=1e-5)


def test_openvino_tracker_follows_the_torch_tracker(tiny):
    from mixformer.datagen.synthetic import generate_sequence

    seq = generate_sequence(3, 12, 240, 320)
    cfg = TrackerConfig.for_model(tiny)
    runs = {}
    for backend, dtype in (("torch", "fp32"), ("openvino", "fp32"), ("openvino", "bf16")):
        tr = Tracker(tiny, cfg, backend=backend, dtype=dtype, threads=1)
        tr.init(seq.frames[0], seq.boxes[0])
        runs[backend, dtype] = np.array([tr.update(f).box for f in seq.frames[1:]])
    ref = runs["torch", "fp32"]
    assert np.abs(runs["openvino", "fp32"] - ref).max() < 0.5  # px
    assert np.abs(runs["openvino", "bf16"] - ref).max() < 6.0  # px, bf16 rounding


def test_openvino_rejects_fp16_and_auto_follows_the_cpu(tiny, monkeypatch):
    from mixformer.tracking import backends

    with pytest.raises(ValueError, match="fp32 or bf16"):
        Tracker(tiny, backend="openvino", dtype="fp16")
    monkeypatch.setattr(backends, "cpu_has_native_bf16", lambda: False)
    assert backends.resolve_dtype_setting("auto", backend="openvino") == "fp32"
    monkeypatch.setattr(backends, "cpu_has_native_bf16", lambda: True)
    assert backends.resolve_dtype_setting("auto", backend="openvino") == "bf16"


def test_openvino_int8_from_calibration_steps(tiny, tmp_path):
    pytest.importorskip("nncf")
    from mixformer.export.onnx import export_onnx
    from mixformer.perf.calibration import calibration_feeds
    from mixformer.tracking.engines import Engine

    export_onnx(tiny, tmp_path, check=False)
    fp32 = OpenVinoModel(tmp_path, "fp32", threads=1)
    feeds = calibration_feeds(fp32, steps=8, sequences=2, height=240, width=320)
    assert len(feeds) == 8 and {"search", "corner_prior", "k0"} <= set(feeds[0])
    assert feeds[0]["search"].shape == (1, 3, tiny.config.search_size, tiny.config.search_size)
    with pytest.raises(ValueError, match="calibration"):
        OpenVinoModel(tmp_path, "int8")
    int8 = Engine(OpenVinoModel(tmp_path, "int8", threads=1, calibration=feeds), tiny)
    template, online, search = _crops(tiny)
    out = int8.track(search, int8.encode_templates(template, online))
    ref = fp32.track(search, fp32.encode_templates(template, online))
    assert out["pred_boxes"].shape == (1, 1, 4)
    assert torch.isfinite(out["pred_boxes"]).all()
    assert (out["pred_boxes"] - ref["pred_boxes"]).abs().max() < 0.1  # of the crop side


def test_openvino_int8_keeps_embedding_and_heads_in_float(tiny, tmp_path):
    """Whole-graph int8 halved the default model's AUC; the default scope quantises the
    mixed-attention blocks only (INT8_FLOAT_SCOPES)."""
    pytest.importorskip("nncf")
    import openvino as ov

    from mixformer.export.onnx import SEARCH_GRAPH, export_onnx
    from mixformer.export.openvino import quantize_search_graph
    from mixformer.perf.calibration import calibration_feeds

    export_onnx(tiny, tmp_path, check=False)
    feeds = calibration_feeds(
        OpenVinoModel(tmp_path, "fp32", threads=1), steps=4, sequences=1, height=240, width=320
    )
    core = ov.Core()

    def quantised_consumers(model) -> set[str]:
        return {
            inp.get_node().get_friendly_name()
            for op in model.get_ops()
            if op.get_type_name() == "FakeQuantize"
            for inp in op.output(0).get_target_inputs()
        }

    every = quantised_consumers(
        quantize_search_graph(core.read_model(tmp_path / SEARCH_GRAPH), feeds, keep_float=())
    )
    blocks = quantised_consumers(
        quantize_search_graph(core.read_model(tmp_path / SEARCH_GRAPH), feeds)
    )
    float_parts = ("/box_head/", "/score_branch/", "/patch_embed")
    assert any(n.startswith(float_parts) for n in every)
    assert blocks and not any(n.startswith(float_parts) for n in blocks)
    assert any("proj_q" in n or "mlp" in n for n in blocks)


def test_library_auto_backend_follows_the_cli_rule(tiny, monkeypatch, caplog):
    """``Tracker(model)`` (``backend="auto"``, the default) runs what ``mixformer track`` runs
    by default."""
    import importlib.util
    import logging

    from mixformer import MultiTracker
    from mixformer.export import openvino as ov_mod
    from mixformer.tracking import backends

    assert backends.openvino_installed()  # the real check (this child is not patched)
    real = importlib.util.find_spec
    with monkeypatch.context() as m:
        m.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "onnx" else real(n, *a))
        assert not backends.openvino_installed()
    monkeypatch.setattr(backends, "cpu_has_native_bf16", lambda: False)
    assert Tracker(tiny).engine.backend == "openvino"
    assert engine(tiny).backend == "openvino"
    assert Tracker(engine(tiny)).engine.backend == "openvino"  # an engine keeps its backend
    assert Tracker(tiny, backend="torch").engine.backend == "torch"
    assert Tracker(tiny, backend="auto", keep_attention=True).engine.backend == "torch"
    assert Tracker(tiny, backend="auto", fast=False).engine.backend == "torch"
    assert MultiTracker(tiny).engine.backend == "openvino"  # one call per target beats a batch
    monkeypatch.setattr(backends, "cpu_has_native_bf16", lambda: True)  # AMX: OpenVINO bf16
    amx = Tracker(tiny, backend="auto")
    assert amx.engine.backend == "openvino" and amx.dtype == "bf16"
    assert Tracker(tiny, backend="auto", dtype="fp32").engine.backend == "openvino"
    assert Tracker(tiny, backend="auto", dtype="fp16").engine.backend == "torch"

    def broken(int8: bool = False) -> None:
        raise ImportError("openvino is not installed; ...")

    monkeypatch.setattr(ov_mod, "require_openvino", broken)
    with caplog.at_level(logging.WARNING):
        assert Tracker(tiny, backend="auto", dtype="fp32").engine.backend == "torch"
    assert "running on torch" in caplog.text
    with pytest.raises(ImportError, match="openvino"):  # (a copy: no engine of it is cached)
        Tracker(copy.deepcopy(tiny), backend="openvino", dtype="bf16")


def test_evaluate_auto_backend_runs_openvino_and_records_it(tmp_path, monkeypatch):
    """``mixformer evaluate`` (``--backend auto``) runs OpenVINO where ``track`` would, records
    it in settings.json, and writes the boxes of ``--backend torch`` within a pixel."""
    import json

    from mixformer.cli import main
    from mixformer.tracking import backends

    monkeypatch.setattr(backends, "cpu_has_native_bf16", lambda: False)
    data = tmp_path / "data"
    assert main(["synth", str(data), "--sequences", "1", "--frames", "12", "--height", "64"]) == 0
    boxes = {}
    for backend in ("auto", "torch"):
        res = tmp_path / backend
        args = ["evaluate", "--dataset", "generic", "--root", str(data), "--results", str(res)]
        assert main([*args, "--backend", backend, "--threads", "1", "--no-progress"]) == 0
        record = json.loads((res / "settings.json").read_text())
        assert record["backend"] == ("openvino" if backend == "auto" else "torch")
        (result,) = [p for p in res.glob("*.txt") if not p.name.endswith("_time.txt")]
        boxes[backend] = np.loadtxt(result, delimiter="\t")
    assert boxes["auto"].shape == (12, 4)
    np.testing.assert_allclose(boxes["auto"], boxes["torch"], atol=1)


def test_benchmark_measures_the_default_backend(monkeypatch, capsys):
    """``mixformer benchmark`` without ``--backend`` measures what ``track`` runs."""
    from mixformer.cli import main
    from mixformer.tracking import backends

    monkeypatch.setattr(backends, "cpu_has_native_bf16", lambda: False)
    argv = ["benchmark", "--model", "mixformer-tiny", "--frames", "1", "--warmup", "0"]
    assert main(argv) == 0
    assert "backend openvino" in capsys.readouterr().out
    assert main([*argv, "--backend", "torch"]) == 0
    assert "fast torch fp32" in capsys.readouterr().out


def test_trackers_in_several_threads_may_share_an_openvino_engine():
    """Trackers over one model share its engine; OpenVINO's infer requests are not
    thread-safe, so concurrent trackers must still each get the boxes of a lone run."""
    import threading

    from mixformer.perf.benchmark import benchmark_frames

    model = build_model("mixformer-mbv3", weights="default")
    frames, gt = benchmark_frames(31, 3, "synthetic")

    def run(out: dict, key: int) -> None:
        tracker = Tracker(model, backend="openvino", dtype="fp32", threads=1)
        boxes = [tracker.init(frames[0], gt[0]).box]
        boxes += [tracker.update(f).box for f in frames[1:]]
        out[key] = np.array(boxes), tracker.engine

    alone: dict = {}
    run(alone, 0)
    together: dict = {}
    threads = [threading.Thread(target=run, args=(together, k)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(together[k][1] is alone[0][1] for k in range(3))  # one shared engine
    for k in range(3):
        np.testing.assert_allclose(together[k][0], alone[0][0], atol=1e-4)


def test_multitracker_on_openvino_steps_each_target_as_a_lone_tracker():
    """``MultiTracker(model)`` (``auto``: OpenVINO, one call per target) gives each target the
    boxes of a lone OpenVINO ``Tracker`` (whose boxes are torch's, tested above)."""
    from mixformer import MultiTracker
    from mixformer.perf.benchmark import benchmark_frames

    model = build_model("mixformer-mbv3", weights="default")
    frames, gt = benchmark_frames(16, 3, "synthetic")
    starts = [tuple(gt[0]), (40.0, 60.0, 50.0, 40.0), (300.0, 200.0, 60.0, 45.0)]
    multi = MultiTracker(model, backend="openvino", dtype="fp32", threads=1)
    ids = [multi.add(frames[0], b) for b in starts]
    steps = [multi.update(f) for f in frames[1:]]  # one update per frame
    for k, start in enumerate(starts):
        alone = Tracker(model, backend="openvino", dtype="fp32", threads=1)
        alone.init(frames[0], start)
        boxes = [alone.update(f).box for f in frames[1:]]
        np.testing.assert_allclose([s[ids[k]].box for s in steps], boxes, atol=1e-4)


def test_study_variant_int8_whole_quantises_every_layer(tiny, monkeypatch):
    """``openvino-int8-whole`` (the study's row that showed why int8 keeps the embedding and
    the heads in float) passes no float scopes; ``openvino-int8`` the default ones."""
    pytest.importorskip("nncf")
    from mixformer.export import openvino as ov_backend
    from mixformer.export.int8 import INT8_FLOAT_SCOPES
    from mixformer.perf import precision

    seen = []
    real = ov_backend.quantize_search_graph

    def spy(search, calibration, keep_float):
        seen.append(tuple(keep_float))
        return real(search, calibration, keep_float)

    monkeypatch.setattr(ov_backend, "quantize_search_graph", spy)
    monkeypatch.setattr(precision, "CALIBRATION_STEPS", 4)
    monkeypatch.setenv("MIXFORMER_CACHE_DIR", "")
    for variant in ("openvino-int8-whole", "openvino-int8"):
        net = precision.build_variant(tiny, variant)
        assert net.precision == "int8"
    assert seen == [(), tuple(INT8_FLOAT_SCOPES)]


def test_openvino_compiles_the_search_graph_per_cache_length(tiny, tmp_path, monkeypatch):
    """Static-shape compilations (faster kernels) give the dynamic graph's outputs, one per
    template-cache length, the least recently used dropped past STATIC_GRAPHS."""
    from mixformer.export import openvino as ov_backend
    from mixformer.export.onnx import export_onnx

    export_onnx(tiny, tmp_path, check=False)
    static = OpenVinoModel(tmp_path, "fp32", threads=1)
    dynamic = OpenVinoModel(tmp_path, "fp32", threads=1, static_shapes=False)
    template, online, search = _crops(tiny)
    lengths = []
    for n_online in (1, 2, 1):
        online_n = online.expand(1, n_online, *online.shape[2:]).contiguous()
        got = static.track(search, static.encode_templates(template, online_n))
        ref = dynamic.track(search, dynamic.encode_templates(template, online_n))
        torch.testing.assert_close(got["pred_boxes"], ref["pred_boxes"], atol=1e-5, rtol=0)
        torch.testing.assert_close(got["pred_scores"], ref["pred_scores"], atol=1e-5, rtol=0)
        lengths.append(static.compiled_search_shapes[-1])
    assert dynamic.compiled_search_shapes == ()
    assert len(static.compiled_search_shapes) == 2 and lengths[0] == lengths[2] != lengths[1]
    # the search crop is the first feed; the cache's length grows with the online templates
    assert lengths[0][0] == (1, 3, tiny.config.search_size, tiny.config.search_size)
    assert max(s[2] for s in lengths[1][1:] if len(s) == 4) > max(
        s[2] for s in lengths[0][1:] if len(s) == 4
    )
    monkeypatch.setattr(ov_backend, "STATIC_GRAPHS", 1)
    three = online.expand(1, 3, *online.shape[2:]).contiguous()
    static.track(search, static.encode_templates(template, three))
    (kept,) = static.compiled_search_shapes
    assert kept not in lengths
