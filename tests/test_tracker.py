"""Tracker behaviour: the online-template rule driven by scripted scores, and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from mixformer import Tracker, TrackerConfig, build_model
from mixformer.geometry import IMAGENET_MEAN, IMAGENET_STD
from mixformer.models import ModelConfig, TemplateCache


class ScriptedModel(nn.Module):
    """Stands in for the network: replays scores and records which frames the templates show.

    Every frame ``t`` is a constant image of value ``10 * t``, so a template crop's centre pixel
    tells which frame it was cut from.
    """

    def __init__(self, scores: list[float]) -> None:
        super().__init__()
        self.config = ModelConfig()
        self.scores = list(scores)
        self.encoded: list[list[int]] = []
        self.template_frames: list[int] = []

    @staticmethod
    def _frame_of(t: torch.Tensor) -> int:
        v = (t[0, 64, 64].item() * IMAGENET_STD[0] + IMAGENET_MEAN[0]) * 255
        return int(round(v / 10))

    def encode_templates(self, template: torch.Tensor, online: torch.Tensor) -> TemplateCache:
        self.template_frames.append(self._frame_of(template[0]))
        self.encoded.append([self._frame_of(o) for o in online.reshape(-1, 3, 128, 128)])
        return TemplateCache(kv=[], template_feat=torch.zeros(1), num_online=online.shape[-4])

    def track(
        self, search: torch.Tensor, cache: TemplateCache, corner_prior: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        assert corner_prior is None  # motion_prior is off in these settings
        p = self.scores.pop(0)
        logit = math.log(p / (1 - p))
        return {
            "pred_boxes": torch.tensor([[[0.5, 0.5, 0.1, 0.1]]]),
            "pred_scores": torch.tensor([logit]),
        }


def _run(scores, **cfg) -> tuple[ScriptedModel, list[float]]:
    model = ScriptedModel(scores)
    tracker = Tracker(model, TrackerConfig(**cfg), fast=False)
    frame = lambda t: np.full((200, 200, 3), 10 * t, np.uint8)  # noqa: E731
    tracker.init(frame(0), (90, 90, 20, 20))
    got = [tracker.update(frame(t)).score for t in range(1, len(scores) + 1)]
    assert model.template_frames == [0] * len(model.template_frames)
    return model, got


def test_append_then_round_robin_replacement():
    scores = [0.6, 0.7, 0.4, 0.3, 0.9, 0.8, 0.55, 0.6, 0.6, 0.6]
    model, got = _run(scores, update_interval=2, online_size=3)
    np.testing.assert_allclose(got, scores, atol=1e-6)
    assert model.encoded == [
        [0],  # init
        [0, 2],  # frame 2: best of frames 1-2 appended
        [0, 2, 0],  # frame 4: nothing above 0.5 -> the first-frame template
        [5, 2, 0],  # frame 6: full, slot 0 replaced first (0.8 < 0.9 keeps frame 5)
        [5, 8, 0],  # frame 8: slot 1
        [5, 8, 9],  # frame 10: slot 2 (0.6 is not > 0.6: strict)
    ]


def test_decay_and_strict_threshold():
    scores = [0.9, 0.6, 0.52, 0.5, 0.45, 0.2, 0.95, 0.1, 0.1]
    model, _ = _run(scores, update_interval=3, online_size=2, max_score_decay=0.5)
    # frame 2: best decays 0.9 -> 0.45 < 0.6; frame 3: 0.6 -> 0.3 < 0.52; 0.5 is not > 0.5.
    assert model.encoded == [[0], [0, 3], [0, 3], [0, 7]]


def test_single_online_template_is_replaced():
    model, _ = _run([0.8, 0.6, 0.3, 0.3], update_interval=2, online_size=1)
    assert model.encoded == [[0], [1], [0]]


def test_tracker_settings_presets():
    lasot = TrackerConfig.preset("lasot", model="mixformer-22k")
    assert (lasot.search_factor, lasot.update_interval, lasot.online_size) == (4.55, 200, 2)
    got = TrackerConfig.preset("got10k_test", model="mixformer-22k")
    assert (got.update_interval, got.online_size, got.max_score_decay) == (10, 2, 0.98)
    nfs = TrackerConfig.preset("nfs", model="mixformer-1k")
    assert (nfs.update_interval, nfs.online_size, nfs.search_factor) == (200, 3, 5.0)
    large_uav = TrackerConfig.preset("uav", model="mixformer-large")
    assert (large_uav.update_interval, large_uav.online_size) == (25, 3)
    with pytest.raises(KeyError, match="lasot"):
        TrackerConfig.preset("lasott")
    with pytest.raises(KeyError, match="update_interval"):
        TrackerConfig().replace(update_intervall=3)


def test_preset_got10k_trained_selects_the_baseline_got_schedule():
    """The reference's GOT-10k-only network (a mixformer-22k) has schedules of its own."""
    got = TrackerConfig.preset("got10k_test", model="mixformer-22k", got10k_trained=True)
    assert (got.update_interval, got.online_size) == (25, 3)
    vot = TrackerConfig.preset("vot20", model="mixformer-22k", got10k_trained=True)
    assert (vot.update_interval, vot.online_size) == (10, 3)
    model = build_model("mixformer-tiny")
    assert TrackerConfig.for_model(model, "got10k_test", got10k_trained=True).online_size == 3
    assert TrackerConfig.for_model(model, "got10k_test").online_size == 2


def test_unknown_preset_lists_the_valid_names():
    with pytest.raises(KeyError, match="valid presets: default, lasot, got10k_test"):
        TrackerConfig.preset("nosuch")


def test_default_config_is_the_models_own_preset():
    """``Tracker(model)`` keeps the model's tuned settings (mixformer-tiny's motion prior)."""
    from mixformer import MultiTracker

    model = build_model("mixformer-tiny")
    expected = TrackerConfig.for_model(model)
    assert expected.motion_prior > 0 and expected.search_size == model.config.search_size
    assert Tracker(model).config == expected
    assert MultiTracker(model).config == expected
    small = dict(depth=(1, 1, 1), dim_embed=(16, 32, 64), num_heads=(1, 1, 1))
    plain = build_model("mixformer-22k", **small)
    assert Tracker(plain).config == TrackerConfig.preset("default", model="mixformer-22k")


@pytest.fixture(scope="module")
def tracker() -> Tracker:
    torch.manual_seed(0)
    return Tracker(build_model("mixformer-tiny"))


def test_update_before_init_raises():
    t = Tracker(build_model("mixformer-tiny"))
    with pytest.raises(RuntimeError, match="init"):
        t.update(np.zeros((50, 50, 3), np.uint8))


@pytest.mark.parametrize(
    "box,msg",
    [
        ((10, 10, 0, 5), "positive width"),
        ((10, 10, -3, 5), "positive width"),
        ((float("nan"), 10, 5, 5), "NaN"),
        ((500, 10, 5, 5), "outside"),
        ((-20, -20, 10, 10), "outside"),
        ((1, 2, 3), "4 numbers"),
    ],
)
def test_bad_boxes(tracker, box, msg):
    with pytest.raises(ValueError, match=msg):
        tracker.init(np.zeros((100, 100, 3), np.uint8), box)


@pytest.mark.parametrize(
    "image,msg",
    [
        (np.zeros((50, 50, 3), np.float32), "uint8"),
        (np.zeros((50, 50, 4), np.uint8), "4 channels"),
        (np.zeros((3, 50, 60), np.uint8), r"channels first.*transpose\(1, 2, 0\)"),
        (np.zeros((1, 50, 60, 3), np.uint8), r"batch of one"),
        ([[0, 1]], "numpy"),
    ],
)
def test_bad_images(tracker, image, msg):
    with pytest.raises(ValueError, match=msg) as info:
        tracker.init(image, (10, 10, 5, 5))
    assert "alpha" not in str(info.value) or image.shape[-1] == 4


def test_single_channel_image_is_gray(tracker):
    rng = np.random.default_rng(1)
    gray = rng.integers(0, 255, (60, 80), dtype=np.uint8)
    a = tracker.init(gray[:, :, None], (20, 20, 16, 12))
    b = tracker.update(gray[:, :, None])
    tracker.init(gray, (20, 20, 16, 12))
    assert a.box == (20.0, 20.0, 16.0, 12.0) and tracker.update(gray).box == b.box


def test_huge_box_is_refused_before_any_crop(tracker, monkeypatch):
    """A 1e7 px box would make the zero-padded crop allocate petabytes."""
    import mixformer.tracking.core as tracker_mod

    def no_crop(*args, **kwargs):
        raise AssertionError("cropped before checking the box")

    monkeypatch.setattr(tracker_mod, "sample_target", no_crop)
    with pytest.raises(ValueError, match="far larger than the 640x480 image"):
        tracker.init(np.zeros((480, 640, 3), np.uint8), (0, 0, 1e7, 1e7))


def test_sample_target_bounds_the_crop():
    from mixformer.geometry import max_crop_side, sample_target

    image = np.zeros((48, 64, 3), np.uint8)
    assert max_crop_side(48, 64) == 4096
    patch, _ = sample_target(image, (0, 0, 600, 600), 5.0, 32)  # 3000 px: allowed
    assert patch.shape == (32, 32, 3)
    with pytest.raises(ValueError, match="limit 4096"):
        sample_target(image, (0, 0, 1e4, 1e4), 5.0, 32)


def test_grayscale_bgr_border_and_size_change(tracker):
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 255, (60, 80), dtype=np.uint8)
    res = tracker.init(gray, (70, 50, 8, 8))  # touches the bottom-right corner
    assert res.box == (70.0, 50.0, 8.0, 8.0) and res.frame_index == 0
    out = tracker.update(gray)
    x, y, w, h = out.box
    assert 0 <= x <= 70 and 0 <= y <= 50 and w >= 10 and h >= 10 and 0 <= out.score <= 1
    with pytest.raises(ValueError, match="frame size changed"):
        tracker.update(np.zeros((61, 80), np.uint8))
    bgr = Tracker(tracker.model, color="bgr")
    img = rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)
    bgr.init(img, (10, 10, 20, 20))
    rgb = Tracker(tracker.model)
    rgb.init(img[:, :, ::-1].copy(), (10, 10, 20, 20))
    assert bgr.update(img).box == rgb.update(img[:, :, ::-1].copy()).box


def test_crop_sizes_must_match_model():
    with pytest.raises(ValueError, match="match"):
        Tracker(build_model("mixformer-tiny"), TrackerConfig(search_size=256))


@pytest.mark.parametrize("size", [1, 5])
def test_boxes_stay_inside_tiny_images(tracker, size):
    rng = np.random.default_rng(size)
    frames = [rng.integers(0, 255, (size, size, 3), dtype=np.uint8) for _ in range(4)]
    tracker.init(frames[0], (0, 0, size, size))
    for frame in frames[1:]:
        x, y, w, h = tracker.update(frame).box
        assert 0 <= x and 0 <= y and x + w <= size and y + h <= size
        assert w > 0 and h > 0
