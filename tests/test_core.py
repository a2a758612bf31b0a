"""The tracking core: shared engines, every backend for Tracker and MultiTracker, observations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import MICRO, micro_config
from mixformer import MultiTracker, Tracker, build_model
from mixformer.datagen.synthetic import generate_sequence
from mixformer.geometry import normalize_patch, sample_target
from mixformer.tracking.core import crop_window


@pytest.fixture(scope="module")
def model(micro_model):
    return micro_model


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return generate_sequence(3, num_frames=7, height=120, width=160).frames


config = micro_config


BOXES = [(20, 30, 30, 25), (80, 40, 25, 35)]
BACKENDS = {
    "plain": dict(fast=False),
    "fast": dict(),
    "onnxruntime": dict(backend="onnxruntime"),
}
# ONNX Runtime kernels run in a child process (see tests/conftest.py)
BACKEND_PARAMS = [
    pytest.param(name, marks=[pytest.mark.isolated] if name == "onnxruntime" else [])
    for name in BACKENDS
]


def _needs(backend: str) -> None:
    if backend == "onnxruntime":
        pytest.importorskip("onnxruntime")
        pytest.importorskip("onnx")


def test_fast_is_the_default_and_plain_stays_reachable(model):
    assert Tracker(model).engine.network is not model
    assert Tracker(model, fast=False).engine.network is model
    assert MultiTracker(model, fast=False).engine.network is model


def test_trackers_over_one_model_share_one_engine(model, frames):
    a, b = Tracker(model, config(), dtype="fp32"), Tracker(model, config(), dtype="fp32")
    mt = MultiTracker(model, config(), dtype="fp32")
    assert a.engine is b.engine is mt.engine
    assert Tracker(model, config(), dtype="bf16").engine is not a.engine  # keyed by dtype
    # interleaved use of the shared engine: each tracker keeps its own state
    a.init(frames[0], BOXES[0])
    b.init(frames[0], BOXES[1])
    alone = Tracker(model, config(), fast=False)
    alone.init(frames[0], BOXES[0])
    for f in frames[1:]:
        b.update(f)
        np.testing.assert_allclose(a.update(f).box, alone.update(f).box, atol=1e-3)


def test_changed_weights_get_a_new_engine():
    torch.manual_seed(1)
    model = build_model("mixformer-tiny", **MICRO)
    frames = generate_sequence(4, num_frames=4, height=120, width=160).frames
    old = Tracker(model, config(), dtype="fp32").engine
    torch.manual_seed(2)
    model.load_state_dict(build_model("mixformer-tiny", **MICRO).state_dict())
    fast = Tracker(model, config(), dtype="fp32")
    assert fast.engine is not old
    plain = Tracker(model, config(), fast=False)
    fast.init(frames[0], BOXES[0])
    plain.init(frames[0], BOXES[0])
    for f in frames[1:]:
        np.testing.assert_allclose(fast.update(f).box, plain.update(f).box, atol=1e-3)


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
def test_multi_tracker_matches_single_trackers_on_every_backend(model, frames, backend):
    """One frame loop for both: per-target boxes, scores and template growth agree."""
    _needs(backend)
    opts = BACKENDS[backend]
    cfg = config(update_interval=2, online_size=2, motion_prior=0.05)
    mt = MultiTracker(model, cfg, **opts)
    ids = [mt.add(frames[0], b) for b in BOXES]
    got = [mt.update(f) for f in frames[1:]]
    for tid, box in zip(ids, BOXES):
        single = Tracker(model, cfg, **opts)
        single.init(frames[0], box)
        for f, res in zip(frames[1:], got):
            ref = single.update(f)
            np.testing.assert_allclose(res[tid].box, ref.box, atol=1e-3)
            assert res[tid].score == pytest.approx(ref.score, abs=1e-4)
        assert mt.num_online_templates(tid) == single.num_online_templates == 2
    # torch engines batch both targets in one call per frame; ONNX graphs take one per call
    per_frame = 2 if backend == "onnxruntime" else 1
    assert mt.num_network_calls == per_frame * (len(frames) - 1)


@pytest.mark.parametrize("backend", ["plain", "fast"])
def test_observation_describes_the_step(model, frames, backend):
    cfg = config(update_interval=3, online_size=2, motion_prior=0.05)
    tracker = Tracker(model, cfg, **BACKENDS[backend])
    tracker.init(frames[0], BOXES[0])
    head = model.box_head
    for i, f in enumerate(frames[1:], start=1):
        prev = tracker.state
        res = tracker.update(f, observe=True)
        obs = res.observation
        assert obs.anchor == prev  # no velocity: the crop is centred on the last box
        patch, rf = sample_target(f, prev, cfg.search_factor, cfg.search_size)
        assert obs.resize_factor == rf
        torch.testing.assert_close(obs.search_input, normalize_patch(patch), rtol=0, atol=0)
        x, y, side, _ = obs.crop_window
        assert (x, y, side) == crop_window(prev, cfg.search_factor)[:3]
        assert side * rf == pytest.approx(cfg.search_size)
        # the heat maps are the head's: their soft-argmax (with the prior) is pred_boxes
        maps = obs.heatmaps
        f_side = model.config.corner_map_size
        assert maps.shape == (2, f_side, f_side) and obs.corner_prior.shape == maps.shape
        logits = torch.from_numpy(maps + obs.corner_prior).reshape(2, -1)
        p = torch.softmax(logits, dim=-1)
        cx, cy = (p @ head.coord_x).numpy(), (p @ head.coord_y).numpy()
        x0, y0, x1, y1 = np.array([cx[0], cy[0], cx[1], cy[1]]) / head.img_size
        expect = [(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0]
        np.testing.assert_allclose(obs.pred_boxes, expect, atol=1e-5)
        assert obs.score == res.score == pytest.approx(1 / (1 + np.exp(-obs.pred_score)))
        assert obs.templates_updated == (i % 3 == 0)
        assert obs.num_online == (1 if i <= 3 else 2)
        assert obs.network_seconds > 0 and obs.crop_seconds > 0
        assert (obs.template_seconds > 0) == obs.templates_updated
    assert tracker.update(frames[-1]).observation is None  # only when asked


@pytest.mark.isolated  # ONNX Runtime kernels (see tests/conftest.py)
def test_observation_on_onnxruntime_has_no_heat_maps(model, frames):
    _needs("onnxruntime")
    tracker = Tracker(model, config(), backend="onnxruntime")
    tracker.init(frames[0], BOXES[0])
    obs = tracker.update(frames[1], observe=True).observation
    assert obs.heatmaps is None and obs.pred_boxes.shape == (4,)


def test_multi_tracker_observations_per_target(model, frames):
    mt = MultiTracker(model, config())
    for b in BOXES:
        mt.add(frames[0], b)
    res = mt.update(frames[1], observe=True)
    for tid, r in res.items():
        assert r.observation.batch_size == 2
        assert r.observation.anchor == BOXES[tid]
        assert r.observation.heatmaps.shape[0] == 2
    a, b = (res[t].observation.search_input for t in (0, 1))
    assert not torch.equal(a, b)  # each target's own crop, not the reused buffer's last


def test_templates_property_and_engine_option(model, frames):
    """An :class:`Engine` of a prebuilt network runs in place of the model; ``templates`` are
    the inputs of the current cache."""
    from mixformer.tracking.engines import Engine, build_network

    engine = Engine(build_network(model, "fp32", "torch", True), model)
    tracker = Tracker(engine, config(update_interval=1, online_size=2))
    assert tracker.engine is engine and tracker.model is model
    tracker.init(frames[0], BOXES[0])
    template, online = tracker.templates
    assert template.shape == (1, 3, 64, 64) and online.shape == (1, 3, 64, 64)
    tracker.update(frames[1])
    assert tracker.templates[1].shape == (2, 3, 64, 64)


def test_decode_prediction_by_hand_for_every_output_form():
    """One box in numpy, several rows averaged, bf16 and autograd outputs: the same float32
    arithmetic (``box * search_size / rf``, then mapped back around the previous box)."""
    from mixformer.geometry import clip_box, map_box_back
    from mixformer.tracking.config import TrackerConfig
    from mixformer.tracking.decode import decode_prediction

    cfg = TrackerConfig(template_size=112, search_size=224)
    prev, rf, size = (100.0, 80.0, 40.0, 30.0), 1.37, (480, 640)
    box = torch.tensor([0.52, 0.47, 0.21, 0.16])

    def expected(b: torch.Tensor) -> tuple[float, ...]:
        pred = (b.float() * cfg.search_size / rf).tolist()
        return clip_box(map_box_back(pred, prev, cfg.search_size, rf), size[0], size[1], margin=10)

    logit = torch.tensor([0.3])
    one, score = decode_prediction(
        {"pred_boxes": box.reshape(1, 1, 4), "pred_scores": logit}, 0, prev, rf, cfg, size
    )
    assert one == expected(box) and score == pytest.approx(float(torch.sigmoid(logit)))
    rows = torch.stack([box, box + 0.02])[None]  # (1, 2, 4): the mean of the rows
    assert decode_prediction({"pred_boxes": rows}, 0, prev, rf, cfg, size)[0] == expected(
        rows[0].mean(0)
    )
    half = box.to(torch.bfloat16).reshape(1, 1, 4)
    assert decode_prediction({"pred_boxes": half}, 0, prev, rf, cfg, size)[0] == expected(
        half[0, 0]
    )
    grad = box.reshape(1, 1, 4).clone().requires_grad_(True)
    assert decode_prediction({"pred_boxes": grad}, 0, prev, rf, cfg, size)[0] == one
