"""The default model on real photographs: same frame in, same box out.

A tracker that cannot re-find its template in the template's own frame cannot track. Given the
first frame again, the shipped default model must return the initial box within 5 % of the box's
size (centre and each side), on real photos (``mixformer/data/photos``: fruits of the OpenCV
samples) at two scales, with its default settings and its default precision.
"""

from __future__ import annotations

from importlib import resources

import cv2
import numpy as np
import pytest
import torch

from mixformer import Tracker, TrackerConfig, build_model
from mixformer.models.config import DEFAULT_MODEL, get_config
from mixformer.models.factory import default_weights_path

# (x, y, w, h) in fruits.jpg (512x480), read off the photo: the lime, the lemon half, the kiwi
# and the orange slice. The lime and the lemon run off the photo's right edge, and there the
# shipped model's box moves by up to 63 % (lime: onto the lemon half below it) and 26 % (lemon;
# 14 % at 0.4x) of the box. Neither the edge nor the look-alike alone explains the lime (stop 37:
# 70 % with the photo extended past the edge, 27 % with the lemon painted over); training on
# composites whose objects start cut by an image edge (recipe mbv3-border-stage1, not shipped)
# brought the lemon to 10 % / 4 % but not the lime (docs/default-model.md). Strict xfails, so a
# model that fixes them shows.
_BORDER = pytest.mark.xfail(strict=True, reason="cut by the image border (known gap)")
FRUITS = [
    pytest.param((350, 125, 162, 170), id="lime", marks=_BORDER),
    pytest.param((322, 248, 190, 232), id="lemon", marks=_BORDER),
    pytest.param((0, 278, 118, 182), id="kiwi"),
    pytest.param((78, 45, 262, 425), id="orange"),
]


def _photo() -> np.ndarray:
    ref = resources.files("mixformer") / "data" / "photos" / "fruits.jpg"
    with resources.as_file(ref) as path:
        return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def model():
    assert default_weights_path(DEFAULT_MODEL) is not None, "the default model ships weights"
    return build_model(DEFAULT_MODEL, weights="default")


@pytest.mark.parametrize("scale", [1.0, 0.4])
@pytest.mark.parametrize("box", FRUITS)
def test_same_frame_same_box(model, box: tuple[int, int, int, int], scale: float) -> None:
    frame = _photo()
    if scale != 1.0:
        frame = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    x, y, w, h = (v * scale for v in box)
    tracker = Tracker(model)
    tracker.init(frame, (x, y, w, h))
    px, py, pw, ph = tracker.update(frame).box
    dev = (
        abs((px + pw / 2) - (x + w / 2)) / w,
        abs((py + ph / 2) - (y + h / 2)) / h,
        abs(pw - w) / w,
        abs(ph - h) / h,
    )
    assert max(dev) <= 0.05 + 1e-9, dev  # max_scale_change 1.05 allows exactly 5 %


def test_shipped_weights_carry_the_presets_tracker_settings(model) -> None:
    """The weights file stores its model config, tracker settings included, and a checkpoint's
    settings win over the preset's: the shipped file must hold the preset's current ones."""
    stored = torch.load(default_weights_path(DEFAULT_MODEL), weights_only=True)["model_config"]
    assert stored["tracking"] == get_config(DEFAULT_MODEL).to_dict()["tracking"]
    config = Tracker(model).config
    assert config == TrackerConfig.preset("default", model=DEFAULT_MODEL)
    assert type(config.update_interval) is int
