"""The reference trackers' per-frame protocol (perf/reference.py), what ``benchmark --compare``
times: the joint forward every frame where the reference runs it, the cached step elsewhere."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mixformer import Tracker, TrackerConfig, build_model
from mixformer.datagen.synthetic import generate_sequence
from mixformer.perf.benchmark import REFERENCE_LABEL, count_search_gmacs, run_benchmark
from mixformer.perf.reference import JointTemplates, reference_engine, runs_joint_forward


def _settings(model, online_size: int, motion_prior: float = 0.0) -> TrackerConfig:
    c = model.config
    return TrackerConfig(
        template_size=c.template_size,
        search_size=c.search_size,
        update_interval=3,
        online_size=online_size,
        motion_prior=motion_prior,
    )


def _track(tracker: Tracker, frames, box) -> tuple[np.ndarray, np.ndarray]:
    tracker.init(frames[0], box)
    results = [tracker.update(f) for f in frames[1:]]
    return np.array([r.box for r in results]), np.array([r.score for r in results])


def test_protocol_follows_each_family():
    v2 = build_model("mixformerv2-mbv3")
    cvt = build_model("mixformer-tiny")
    assert runs_joint_forward(v2, _settings(v2, 1)) and runs_joint_forward(v2, _settings(v2, 3))
    assert runs_joint_forward(cvt, _settings(cvt, 1))
    assert not runs_joint_forward(cvt, _settings(cvt, 2))


@pytest.mark.parametrize(
    ("name", "online_size", "prior", "joint_calls"),
    [
        ("mixformerv2-mbv3", 1, 0.0, True),
        ("mixformer-tiny", 1, 0.0, True),
        ("mixformer-tiny", 1, 0.1, True),  # the corner prior reaches the joint forward's head
        ("mixformer-tiny", 2, 0.0, False),
    ],
)
def test_reference_engine_runs_the_protocol_with_the_plain_paths_boxes(
    name: str, online_size: int, prior: float, joint_calls: bool
) -> None:
    torch.manual_seed(0)
    model = build_model(name).eval()
    cfg = _settings(model, online_size, prior)
    seq = generate_sequence(3, 8, 240, 320)
    calls = []
    hook = model.register_forward_hook(lambda *_: calls.append(1))  # model(...) = joint forward
    try:
        ref = Tracker(reference_engine(model, cfg), cfg, threads=0)
        boxes, scores = _track(ref, seq.frames, seq.boxes[0])
    finally:
        hook.remove()
    assert len(calls) == (len(seq.frames) - 1 if joint_calls else 0)
    engine = reference_engine(model, cfg)
    template = torch.zeros(1, 3, cfg.template_size, cfg.template_size)
    cache = engine.encode_templates(template, template[None])
    assert isinstance(cache, JointTemplates) == joint_calls
    plain_boxes, plain_scores = _track(
        Tracker(model, cfg, fast=False, threads=0), seq.frames, seq.boxes[0]
    )
    np.testing.assert_allclose(boxes, plain_boxes, atol=1e-3)
    np.testing.assert_allclose(scores, plain_scores, atol=1e-5)


def test_benchmark_compares_against_the_reference_protocol():
    model = build_model("mixformerv2-mbv3")
    cfg = _settings(model, 1)
    report = run_benchmark(
        model, dtype="fp32", backend="torch", frames=1, warmup=0, compare=True,
        tracker_config=cfg, progress=False,
    )  # fmt: skip
    ref, fast = report.paths
    assert ref.label == REFERENCE_LABEL and fast.label == "fast torch fp32"
    # the joint forward also runs the template tokens through every block
    assert ref.gmacs == pytest.approx(count_search_gmacs(model, 1, joint=True))
    assert ref.gmacs > report.gmacs and fast.gmacs is None
    assert "the joint forward" in report.format()
