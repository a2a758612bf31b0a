"""The benchmark measurement logic (perf/benchmark.py) and ``mixformer benchmark``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mixformer import build_model
from mixformer.perf.benchmark import box_iou, count_search_gmacs, matmul_peak, run_benchmark


def test_box_iou_by_hand():
    a = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 2, 2]], dtype=float)
    b = np.array([[0, 0, 10, 10], [5, 0, 10, 10], [10, 10, 2, 2]], dtype=float)
    # second row: overlap 5x10 = 50, union 100 + 100 - 50 = 150
    np.testing.assert_allclose(box_iou(a, b), [1.0, 50 / 150, 0.0])


def test_matmul_peak_is_a_rate():
    assert matmul_peak("fp32", size=128, repeats=2) > 0.1


def test_gmacs_count_tiny_by_hand():
    """The score module aside, the search step's MACs are the sum of known layer sizes; check the
    stage-0 patch embedding share and the growth with the number of online templates."""
    model = build_model("mixformer-tiny", template_size=128, search_size=320)
    g1, g3 = count_search_gmacs(model, 1), count_search_gmacs(model, 3)
    assert 1.0 < g1 < 3.0
    # Half the crop sides: under a quarter of the MACs (attention over search tokens is quadratic).
    small = count_search_gmacs(build_model("mixformer-tiny", template_size=64, search_size=160), 1)
    assert 0.1 < small / g1 < 0.25
    # Two more online templates add keys only: per block (heads*d) * 2 (QK^T and AV) * extra keys
    # * queries; stage i has 2 * ceil(h/2)^2 extra keys per block.
    c = model.config
    extra = 0
    for dim, depth, n_q, m in zip(
        c.backbone.dim_embed, c.backbone.depth, (80 * 80, 40 * 40, 20 * 20), (16 * 16, 8 * 8, 4 * 4)
    ):
        extra += depth * 2 * dim * n_q * (2 * m)
    assert g3 - g1 == pytest.approx(extra / 1e9, rel=1e-6)


def test_run_benchmark_compare_tiny():
    torch.manual_seed(0)
    report = run_benchmark(build_model("mixformer-tiny"), frames=1, warmup=1, compare=True)
    assert [p.label for p in report.paths] == ["reference fp32", "fast torch fp32"]
    for p in report.paths:
        assert p.total > 0 and p.network > 0 and p.crop > 0
        assert p.network <= p.total
        assert p.boxes.shape == (2, 4)
    assert report.mean_iou is not None and report.mean_iou > 0.999
    text = report.format()
    assert "GMACs" in text and "speed-up" in text and "mean IoU" in text


def test_cli_benchmark(capsys):
    from mixformer.cli import main

    argv = ["benchmark", "--model", "mixformer-tiny", "--frames", "1", "--warmup", "0"]
    assert main([*argv, "--dtype", "fp32"]) == 0
    out = capsys.readouterr().out
    assert "fast torch fp32" in out and "FPS" in out
    assert main(["benchmark", "--frames", "0"]) == 2
    plain = ["benchmark", "--model", "mixformer-tiny", "--frames", "1", "--warmup", "0", "--plain"]
    assert main([*plain, "--preset", "lasot", "--scene", "photos"]) == 0
    out = capsys.readouterr().out
    assert "plain torch fp32" in out and "fast torch" not in out and "photos scene" in out
    assert "templates every 200 frames x 2" in out  # mixformer-tiny's lasot preset
    assert main([*plain, "--compare"]) == 2


def test_precision_study_int8_tiny():
    from mixformer.perf.precision import build_variant, precision_study

    torch.manual_seed(0)
    model = build_model("mixformer-tiny")
    q = build_variant(model, "int8")
    assert any("quantized" in type(m).__module__ for m in q.modules())
    with pytest.raises(ValueError, match="unknown variant"):
        build_variant(model, "int4")
    res = precision_study(model, "int8", num_sequences=1, num_frames=3, size=(240, 320))
    assert (res.dtype, res.reference) == ("int8", "fp32")
    assert 0.0 <= res.same_iou_mean <= 1.0 and 0.0 <= res.auc_reference <= 100.0
    same = precision_study(model, "fp32", num_sequences=1, num_frames=3, size=(240, 320))
    assert same.same_iou_min == 1.0 and same.e2e_iou_min == 1.0  # fp32 against itself: exact
    assert same.auc_dtype == same.auc_reference


def test_cli_benchmark_accuracy(capsys):
    from mixformer.cli import main

    argv = ["benchmark", "--model", "mixformer-tiny", "--accuracy", "1", "--accuracy-frames", "2"]
    assert main([*argv, "--dtype", "fp32"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split() == ["variant", "AUC", "%", "IoU", "same", "crops", "IoU", "end-to-end"]
    assert [ln.split()[0] for ln in lines[2:]] == ["fp32", "int8"]
