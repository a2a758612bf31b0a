"""The corner-map motion prior (TrackerConfig.motion_prior): head maths, engines, trackers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import MICRO
from mixformer import Tracker, TrackerConfig, build_model
from mixformer.datagen.synthetic import generate_sequence
from mixformer.models.fuse import fuse_model as make_fast
from mixformer.models.heads import corner_prior

CFG = TrackerConfig(template_size=64, search_size=128, update_interval=2, online_size=2)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("mixformer-tiny", **MICRO)


def test_corner_prior_by_hand():
    coord_x = torch.tensor([0.0, 8.0, 0.0, 8.0])
    coord_y = torch.tensor([0.0, 0.0, 8.0, 8.0])
    corners = torch.tensor([[0.0, 0.0, 8.0, 8.0]])
    p = corner_prior(corners, coord_x, coord_y, sigma=4.0)
    assert p.shape == (1, 2, 4) and p.dtype == torch.float32
    # top-left expected at (0, 0): distances^2 0, 64, 64, 128 over 2 * 16
    torch.testing.assert_close(p[0, 0], torch.tensor([0.0, -2.0, -2.0, -4.0]))
    torch.testing.assert_close(p[0, 1], torch.tensor([-4.0, -2.0, -2.0, 0.0]))


@pytest.mark.parametrize("fast", [False, True])
def test_head_prior_pulls_corners(model, fast):
    engine = make_fast(model) if fast else model
    g = torch.Generator().manual_seed(2)
    z, x = torch.randn(1, 3, 64, 64, generator=g), torch.randn(1, 3, 128, 128, generator=g)
    head = model.box_head
    with torch.inference_mode():
        cache = engine.encode_templates(z, z[:, None])
        free = engine.track(x, cache)["pred_boxes"]
        flat = corner_prior(
            torch.tensor([[30.0, 40.0, 90.0, 100.0]]), head.coord_x, head.coord_y, 1e6
        )
        same = engine.track(x, cache, corner_prior=flat)["pred_boxes"]
        # a sharp prior on grid cells puts the soft-argmax on them
        cells = torch.tensor(
            [[head.coord_x[17], head.coord_y[17], head.coord_x[50], head.coord_y[50]]]
        )
        sharp = corner_prior(cells, head.coord_x, head.coord_y, 0.5)
        pinned = engine.track(x, cache, corner_prior=sharp)["pred_boxes"]
    torch.testing.assert_close(same, free, atol=1e-5, rtol=0)
    x0, y0, x1, y1 = cells[0] / 128
    expect = torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0])
    torch.testing.assert_close(pinned[0, 0], expect, atol=1e-4, rtol=0)


def _track(model, cfg, frames, box, **kw):
    t = Tracker(model, cfg, **kw)
    t.init(frames[0], box)
    return np.array([t.update(f).box for f in frames[1:]])


def test_tracker_prior_plain_equals_fast_and_changes_boxes(model):
    seq = generate_sequence(4, num_frames=6, height=120, width=160)
    box = tuple(seq.boxes[0])
    cfg = CFG.replace(motion_prior=0.05)
    plain = _track(model, cfg, seq.frames, box, fast=False)
    fast = _track(model, cfg, seq.frames, box, fast=True, dtype="fp32")
    np.testing.assert_allclose(fast, plain, atol=1e-3)
    off = _track(model, CFG, seq.frames, box)
    assert np.abs(off - plain).max() > 1.0
    # the prior holds the untrained network's box near where it started
    assert np.abs(plain - box).mean() < np.abs(off - box).mean()


def test_prior_settings_and_presets(model):
    assert TrackerConfig.preset("default", model="mixformer-tiny").motion_prior > 0
    for name in ("mixformer-22k", "mixformer-1k", "mixformer-large"):
        assert TrackerConfig.preset("lasot", model=name).motion_prior == 0.0
    with pytest.raises(ValueError, match="motion_prior"):
        TrackerConfig(motion_prior=-0.1)
