"""dtype="auto" (bf16 on AMX CPUs, else fp32), the tracker thread default, the precision study."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import micro_config
from mixformer import MultiTracker, Tracker, TrackerConfig, build_model
from mixformer.cli import main
from mixformer.datagen.synthetic import generate_sequence
from mixformer.evaluation.settings import RunSettings, check_settings
from mixformer.tracking import backends as engine_mod
from mixformer.tracking import threads as threads_mod
from mixformer.tracking.engines import Engine, resolve_dtype_setting


@pytest.fixture
def amx(monkeypatch: pytest.MonkeyPatch):
    """Set what the bf16 detector reports: ``amx(True)`` / ``amx(False)``."""

    def set_(value: bool) -> None:
        monkeypatch.setattr(engine_mod, "cpu_has_native_bf16", lambda: value)

    return set_


def test_auto_resolves_to_bf16_only_with_amx_on_the_fast_cpu_path(amx) -> None:
    amx(True)
    assert resolve_dtype_setting() == "bf16"
    assert resolve_dtype_setting("auto", "cpu", "torch", True) == "bf16"
    assert resolve_dtype_setting("auto", "cpu", "torch", False) == "fp32"  # plain path
    assert resolve_dtype_setting("auto", "cpu", "onnxruntime", True) == "fp32"
    assert resolve_dtype_setting("auto", "cuda:0", "torch", True) == "fp32"  # as before
    for explicit in ("fp32", "bf16", "fp16"):
        assert resolve_dtype_setting(explicit) == explicit
    amx(False)
    assert resolve_dtype_setting() == "fp32"
    with pytest.raises(ValueError, match="unknown dtype"):
        resolve_dtype_setting("int8")


def test_detector_reads_the_amx_bf16_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    detect = engine_mod.cpu_has_native_bf16
    try:
        for caps, want in (({"amx_bf16": False, "avx512_bf16": True}, False), ({}, False)):
            monkeypatch.setattr(torch.cpu, "get_capabilities", lambda c=caps: c)
            detect.cache_clear()
            assert detect() is want
        monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"amx_bf16": True})
        detect.cache_clear()
        assert detect() is bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    finally:
        monkeypatch.undo()
        detect.cache_clear()


def test_tracker_default_follows_the_detector(amx, micro_model) -> None:
    amx(True)
    t = Tracker(micro_model, micro_config())
    assert t.dtype == "bf16" and t.engine.dtype == torch.bfloat16
    assert MultiTracker(micro_model, micro_config()).dtype == "bf16"
    assert Tracker(micro_model, micro_config(), dtype="fp32").dtype == "fp32"
    assert Tracker(micro_model, micro_config(), fast=False).engine.network is micro_model
    amx(False)
    t = Tracker(micro_model, micro_config())
    assert t.dtype == "fp32" and t.engine.dtype == torch.float32


def test_auto_keeps_fp32_for_weights_that_track_worse_in_bf16(amx) -> None:
    """The default model's preset says ``auto_bf16=False`` (real-video AUC 65.8 in bf16 against
    68.7 in fp32): ``auto`` is fp32 for it on AMX CPUs too, in the library, the CLI and the
    backend rule (fp32 then means OpenVINO where installed); other presets keep bf16."""
    import argparse

    from mixformer.cli.dtype import resolve_backend_arg, resolve_dtype_arg
    from mixformer.models import TrackingDefaults, get_config

    amx(True)
    assert resolve_dtype_setting("auto", "cpu", "torch", True, auto_bf16=False) == "fp32"
    assert resolve_dtype_setting("auto", "cpu", "openvino", True, auto_bf16=False) == "fp32"
    assert resolve_dtype_setting("bf16", "cpu", "torch", True, auto_bf16=False) == "bf16"
    assert not get_config("mixformer-mbv3").tracking.auto_bf16
    assert get_config("mixformer-tiny").tracking.auto_bf16
    default = build_model("mixformer-mbv3", weights="default")  # its stored settings too
    assert Tracker(default, backend="torch").dtype == "fp32"
    assert Tracker(build_model("mixformer-tiny"), backend="torch").dtype == "bf16"
    assert engine_mod.auto_bf16_of(Tracker(default, backend="torch").engine) is False
    args = argparse.Namespace(model="mixformer-mbv3", dtype="auto", backend="auto")
    assert resolve_dtype_arg(args, "torch") == "fp32"
    assert resolve_dtype_arg(argparse.Namespace(model="mixformer-tiny", dtype="auto")) == "bf16"
    # the main test process sees no openvino (conftest): torch
    assert engine_mod.resolve_backend_setting("auto", auto_bf16=True) == "torch"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(engine_mod, "openvino_installed", lambda: True)
        mp.setattr(engine_mod.platform, "machine", lambda: "x86_64")
        assert engine_mod.resolve_backend_setting("auto", auto_bf16=False) == "openvino"
        # bf16 on AMX runs on OpenVINO too; fp16 stays on torch
        assert engine_mod.resolve_backend_setting("auto", auto_bf16=True) == "openvino"
        assert engine_mod.resolve_backend_setting("auto", dtype="fp16") == "torch"
        assert resolve_backend_arg(args) in ("openvino", "torch")  # torch: openvino unusable
    # the flag travels with checkpoints; configs saved before it read as True
    d = get_config("mixformer-mbv3").tracking.to_dict()
    assert TrackingDefaults.from_dict(d).auto_bf16 is False
    assert TrackingDefaults.from_dict({k: v for k, v in d.items() if k != "auto_bf16"}).auto_bf16


def test_explicit_fp32_is_the_exact_path_whatever_the_cpu(amx, micro_model) -> None:
    """With AMX reported, dtype="fp32" still gives the plain path's boxes (the parity tests'
    guarantee); the auto default does not."""
    amx(True)
    seq = generate_sequence(2, num_frames=5, height=120, width=160)
    box = tuple(seq.boxes[0])
    runs = {}
    for name, kw in {"plain": dict(fast=False), "fp32": dict(dtype="fp32"), "auto": {}}.items():
        t = Tracker(micro_model, micro_config(), **kw)
        t.init(seq.frames[0], box)
        runs[name] = np.array([t.update(f).box for f in seq.frames[1:]])
    np.testing.assert_allclose(runs["fp32"], runs["plain"], atol=1e-3)
    assert np.abs(runs["auto"] - runs["plain"]).max() > 1e-3  # bf16 rounding shows


class _ThreadSpy(torch.nn.Module):
    """An engine that records torch's thread count while it runs."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner, self.seen = inner, []
        self.config = inner.config

    def encode_templates(self, *a, **k):  # noqa: ANN002, ANN003, ANN201
        self.seen.append(torch.get_num_threads())
        return self.inner.encode_templates(*a, **k)

    def track(self, *a, **k):  # noqa: ANN002, ANN003, ANN201
        self.seen.append(torch.get_num_threads())
        return self.inner.track(*a, **k)


def test_threads_apply_around_the_trackers_calls_only(micro_model) -> None:
    seq = generate_sequence(1, num_frames=3, height=120, width=160)
    old = torch.get_num_threads()
    want = 2 if old == 1 else 1
    spy = _ThreadSpy(micro_model)
    t = Tracker(Engine(spy, micro_model), micro_config(), threads=want)
    t.init(seq.frames[0], seq.boxes[0])
    assert torch.get_num_threads() == old
    t.update(seq.frames[1])
    assert torch.get_num_threads() == old
    assert spy.seen and set(spy.seen) == {want}
    spy.seen.clear()
    mt = MultiTracker(Engine(spy, micro_model), micro_config(), threads=want)
    mt.add(seq.frames[0], seq.boxes[0])
    mt.update(seq.frames[1])
    assert set(spy.seen) == {want} and torch.get_num_threads() == old
    spy.seen.clear()
    Tracker(Engine(spy, micro_model), micro_config(), threads=0).init(seq.frames[0], seq.boxes[0])
    assert set(spy.seen) == {old}
    with pytest.raises(ValueError, match="threads"):
        Tracker(micro_model, micro_config(), threads=-1)


def test_thread_default_keeps_the_callers_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads_mod, "auto_threads", lambda model=None, backend="torch": 1)
    monkeypatch.setattr(threads_mod, "caller_chose_threads", lambda: False)
    assert threads_mod.resolve_threads(None) == 1  # torch untouched: the CLI's policy
    monkeypatch.setattr(threads_mod, "caller_chose_threads", lambda: True)
    assert threads_mod.resolve_threads(None) == 0  # the program's own count stays
    assert threads_mod.resolve_threads(3) == 3
    monkeypatch.undo()
    assert threads_mod.auto_threads(cores=1, load=0.0) == 1
    assert threads_mod.auto_threads(cores=8, load=0.0) == 2
    assert threads_mod.auto_threads(cores=2, load=1.5) == 1


def test_evaluate_records_the_resolved_dtype(tmp_path: Path) -> None:
    base = RunSettings("generic", "mixformer-tiny", "random", {"search_size": 320}, dtype="bf16")
    check_settings(tmp_path, base)
    assert json.loads((tmp_path / "settings.json").read_text())["dtype"] == "bf16"
    mixed = r"dtype: bf16 \(recorded; --dtype bf16 continues it\) vs fp32 \(now\)"
    with pytest.raises(ValueError, match=mixed):
        check_settings(tmp_path, dataclasses.replace(base, dtype="fp32"))
    record = json.loads((tmp_path / "settings.json").read_text())
    del record["dtype"]  # a record from before the field: fp32, the only precision then
    (tmp_path / "settings.json").write_text(json.dumps(record))
    check_settings(tmp_path, dataclasses.replace(base, dtype="fp32"))
    with pytest.raises(ValueError, match="dtype: fp32"):
        check_settings(tmp_path, base)


def test_cli_evaluate_writes_auto_as_what_it_resolved_to(amx, tmp_path: Path) -> None:
    amx(True)
    data, res = tmp_path / "data", tmp_path / "res"
    assert main(["synth", str(data), "--sequences", "1", "--frames", "2", "--height", "48"]) == 0
    args = ["evaluate", "--dataset", "generic", "--root", str(data), "--no-progress"]
    old = torch.get_num_threads()
    try:
        tiny = ["--model", "mixformer-tiny"]
        assert main([*args, *tiny, "--results", str(res), "--threads", "1"]) == 0
        assert json.loads((res / "settings.json").read_text())["dtype"] == "bf16"
        res1 = tmp_path / "res1"  # the default model: auto is fp32 for its weights
        assert main([*args, "--results", str(res1), "--threads", "1"]) == 0
        assert json.loads((res1 / "settings.json").read_text())["dtype"] == "fp32"
        res2 = tmp_path / "res2"
        assert main([*args, "--results", str(res2), "--threads", "1", "--plain"]) == 0
        assert json.loads((res2 / "settings.json").read_text())["dtype"] == "fp32"
        assert main([*args, "--results", str(res2), "--plain", "--dtype", "bf16"]) == 2
    finally:
        torch.set_num_threads(old)


def test_precision_study_reference_against_itself_is_exact(micro_model) -> None:
    from mixformer.perf.precision import edge_deviation, precision_study

    a = np.array([[10.0, 20.0, 30.0, 40.0]])
    assert edge_deviation(a, a + [1.0, 0.0, 2.0, 0.0])[0] == 3.0
    cfg = micro_config(update_interval=2, online_size=2)
    same = precision_study(micro_model, "fp32", 1, 4, tracker_config=cfg, size=(120, 160))
    assert same.same_px_max == 0.0 and same.e2e_px_max == 0.0 and same.flips == 0
    assert same.same_iou_min == 1.0 and same.auc_dtype == same.auc_reference
    assert same.updates_reference == same.updates_dtype > 0 and same.decisions == 3
    bf = precision_study(
        micro_model, "bf16", 1, 4, tracker_config=cfg, size=(120, 160), scene="photos"
    )
    assert bf.same_px_max > 0.0 and 0.0 < bf.same_iou_min <= 1.0
    assert 0 <= bf.flips <= bf.decisions == 3
    text = bf.format()
    assert "bf16 vs fp32" in text and "flipped on" in text and "AUC fp32" in text


def test_cli_precision_and_dtype_compare(capsys: pytest.CaptureFixture) -> None:
    base = ["benchmark", "--model", "mixformer-tiny", "--threads", "1"]
    old = torch.get_num_threads()
    try:
        assert main([*base, "--precision", "1", "--precision-frames", "3"]) == 0
        out = capsys.readouterr().out
        assert "precision study: model mixformer-tiny, bf16 vs fp32" in out
        assert "templates every 10 frames" in out
        argv = [*base, "--frames", "1", "--warmup", "0", "--dtype", "bf16", "--compare"]
        assert main([*argv, "--compare-dtype", "fp32"]) == 0
        out = capsys.readouterr().out
        assert "speed-up fast torch bf16 vs fast torch fp32" in out
        assert main([*base, "--compare-dtype", "fp32"]) == 2  # needs --compare
        assert main([*base, "--plain", "--dtype", "bf16"]) == 2
    finally:
        torch.set_num_threads(old)


@pytest.mark.isolated  # ONNX Runtime kernels (see tests/conftest.py)
def test_precision_study_runs_exported_graph_variants() -> None:
    """``onnxruntime-fp32`` on the same crops gives torch fp32's boxes; ``onnxruntime-int8``
    moves them a little; an unknown runtime is refused."""
    pytest.importorskip("onnxruntime")
    from mixformer.perf.precision import build_variant, precision_study

    model = build_model("mixformer-tiny", weights="default").eval()
    cfg = TrackerConfig.for_model(model)
    with pytest.raises(ValueError, match="unknown variant"):
        build_variant(model, "tensorrt-fp16")
    fp32 = precision_study(
        model, "onnxruntime-fp32", 1, 4, tracker_config=cfg, size=(240, 320), scene="photos"
    )
    assert fp32.same_px_max < 0.05 and fp32.flips == 0
    int8 = precision_study(
        model, "onnxruntime-int8", 1, 4, tracker_config=cfg, size=(240, 320), scene="photos"
    )
    assert 0 < int8.same_px_max < 10 and int8.dtype == "onnxruntime-int8"
