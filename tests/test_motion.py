"""Velocity and size smoothing (TrackerConfig.velocity / size_update, tracking/motion.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import MICRO
from mixformer import Tracker, TrackerConfig, build_model
from mixformer.datagen.synthetic import generate_sequence
from mixformer.tracking.motion import MotionState

CFG = TrackerConfig(template_size=64, search_size=128, update_interval=2, online_size=2)
SIZE = (240, 320)


def test_defaults_leave_boxes_untouched():
    m = MotionState()
    prev, new = (10.0, 20.0, 30.0, 40.0), (13.5, 18.25, 36.0, 33.0)
    assert m.observe(prev, new, CFG, SIZE) == new
    assert m.anchor(new, CFG, SIZE) == new
    assert (m.vx, m.vy) == (0.0, 0.0)


def test_velocity_is_a_moving_average_of_centre_steps():
    cfg = CFG.replace(velocity=0.5)
    m = MotionState()
    box = (50.0, 150.0, 20.0, 10.0)
    for _ in range(30):  # constant motion of (+4, -2) px per frame
        new = (box[0] + 4, box[1] - 2, box[2], box[3])
        box = m.observe(box, new, cfg, SIZE)
    assert m.vx == pytest.approx(4.0, abs=1e-6) and m.vy == pytest.approx(-2.0, abs=1e-6)
    assert m.anchor(box, cfg, SIZE) == pytest.approx((box[0] + 4, box[1] - 2, 20.0, 10.0))
    # one step of a fresh state: half the displacement
    m2 = MotionState()
    m2.observe((0.0, 0.0, 10.0, 10.0), (6.0, 2.0, 10.0, 10.0), cfg, SIZE)
    assert (m2.vx, m2.vy) == pytest.approx((3.0, 1.0))
    # the anchor is clipped like a tracker box: at least 10 px stay in the image
    far = MotionState(vx=500.0, vy=0.0).anchor((300.0, 100.0, 20.0, 20.0), cfg, SIZE)
    assert far[0] == pytest.approx(310.0)


def test_size_update_keeps_the_centre_and_damps_the_size_change():
    cfg = CFG.replace(size_update=0.5)
    prev, new = (100.0, 100.0, 40.0, 20.0), (110.0, 90.0, 60.0, 10.0)
    box = MotionState().observe(prev, new, cfg, SIZE)
    assert box[2:] == pytest.approx((50.0, 15.0))
    assert (box[0] + box[2] / 2, box[1] + box[3] / 2) == pytest.approx((140.0, 95.0))


def test_settings_are_validated_and_only_tiny_uses_them():
    tiny = TrackerConfig.preset("default", model="mixformer-tiny")
    assert tiny.velocity > 0 and tiny.size_update < 1
    for name in ("mixformer-22k", "mixformer-1k", "mixformer-large", "mixformer-got"):
        ref = TrackerConfig.preset("lasot", model=name)
        assert (ref.velocity, ref.size_update, ref.motion_prior) == (0.0, 1.0, 0.0)
    for bad in ({"velocity": -0.1}, {"velocity": 1.5}, {"size_update": 0.0}, {"size_update": 2}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            TrackerConfig(**bad)


def test_tracker_follows_the_anchor():
    """With velocity on, the search crop moves ahead of the box; plain and fast paths agree."""
    torch.manual_seed(0)
    model = build_model("mixformer-tiny", **MICRO)
    seq = generate_sequence(5, num_frames=6, height=120, width=160)
    box = tuple(seq.boxes[0])
    cfg = CFG.replace(velocity=0.5, size_update=0.5)

    def run(c, fast):
        t = Tracker(model, c, fast=fast, dtype="fp32")
        t.init(seq.frames[0], box)
        return np.array([t.update(f).box for f in seq.frames[1:]])

    plain, fast = run(cfg, False), run(cfg, True)
    np.testing.assert_allclose(fast, plain, atol=1e-3)
    off = run(CFG, False)
    assert np.abs(off - plain).max() > 1.0
    # size_update 0.5 halves every frame's size change
    sizes = np.vstack([np.array(box)[None, 2:], plain[:, 2:]])
    steps_on = np.abs(np.diff(np.log(sizes), axis=0)).mean()
    sizes_off = np.vstack([np.array(box)[None, 2:], off[:, 2:]])
    assert steps_on < np.abs(np.diff(np.log(sizes_off), axis=0)).mean()


def test_max_scale_change_bounds_each_side_per_frame() -> None:
    from mixformer.tracking.motion import MotionState

    cfg = TrackerConfig(max_scale_change=1.05)
    prev = (100.0, 100.0, 20.0, 40.0)
    grown = MotionState().observe(prev, (50.0, 50.0, 200.0, 20.0), cfg, (480, 640))
    assert abs(grown[2] - 21.0) < 1e-9 and abs(grown[3] - 40.0 / 1.05) < 1e-9
    cx, cy = grown[0] + grown[2] / 2, grown[1] + grown[3] / 2
    assert abs(cx - 150.0) < 1e-9 and abs(cy - 60.0) < 1e-9  # the network's centre is kept
    same = MotionState().observe(prev, (101.0, 99.0, 20.5, 39.5), cfg, (480, 640))
    assert same == (101.0, 99.0, 20.5, 39.5) or np.allclose(same, (101.0, 99.0, 20.5, 39.5))
    off = MotionState().observe(prev, (50.0, 50.0, 200.0, 20.0), TrackerConfig(), (480, 640))
    assert tuple(off) == (50.0, 50.0, 200.0, 20.0)
    with pytest.raises(ValueError, match="max_scale_change"):
        TrackerConfig(max_scale_change=0.9)
