"""Crop / map-back / clip cases worked out by hand from SPEC 2.3 and 2.6."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mixformer.geometry import (
    box_cxcywh_to_xyxy,
    box_xywh_to_xyxy,
    box_xyxy_to_cxcywh,
    box_xyxy_to_xywh,
    boxes_in_image,
    clip_box,
    crop_size,
    map_box_back,
    normalize_patch,
    sample_target,
)


def _column_image(h: int = 10, w: int = 10) -> np.ndarray:
    """Pixel value = 10 * (column + 1) in channel 0, 10 * (row + 1) in channel 1."""
    img = np.zeros((h, w, 3), np.uint8)
    img[:, :, 0] = (np.arange(w)[None, :] + 1) * 10
    img[:, :, 1] = (np.arange(h)[:, None] + 1) * 10
    return img


def test_crop_size_is_ceil_of_sqrt_area_times_factor():
    assert crop_size((10, 20, 30, 40), 2.0) == 70  # sqrt(1200) * 2 = 69.28
    assert crop_size((0, 0, 4, 4), 1.0) == 4
    with pytest.raises(ValueError, match="no area"):
        crop_size((0, 0, 0, 5), 2.0)


def test_origin_uses_bankers_rounding():
    img = _column_image(20, 20)
    # x + w/2 - sz/2 = 2.5 -> round-half-even gives 2; 3.5 -> 4.
    patch, _ = sample_target(img, (2.5, 5.0, 4.0, 4.0), 1.0, 4)
    assert list(patch[0, :, 0]) == [30, 40, 50, 60]  # columns 2..5
    patch, _ = sample_target(img, (3.5, 5.0, 4.0, 4.0), 1.0, 4)
    assert list(patch[0, :, 0]) == [50, 60, 70, 80]  # columns 4..7


def test_right_border_off_by_one_zeroes_last_column():
    img = _column_image(10, 10)
    # sz = 4, x1 = 6 -> x2 = 10 = W: x2_pad = 1, so image column 9 becomes padding.
    patch, rf = sample_target(img, (6.0, 3.0, 4.0, 4.0), 1.0, 4)
    assert rf == 1.0
    assert list(patch[0, :, 0]) == [70, 80, 90, 0]
    # one pixel further left the crop ends at column 8 < W - 1: nothing is padded.
    patch, _ = sample_target(img, (5.0, 3.0, 4.0, 4.0), 1.0, 4)
    assert list(patch[0, :, 0]) == [60, 70, 80, 90]


def test_bottom_border_off_by_one_zeroes_last_row():
    img = _column_image(10, 10)
    patch, _ = sample_target(img, (3.0, 6.0, 4.0, 4.0), 1.0, 4)
    assert list(patch[:, 0, 1]) == [70, 80, 90, 0]


def test_left_top_padding_and_mask():
    img = _column_image(10, 10)
    # sz = 4, x1 = -2, y1 = -1
    patch, rf, mask = sample_target(img, (-2.0, -1.0, 4.0, 4.0), 1.0, 4, return_mask=True)
    assert list(patch[1, :, 0]) == [0, 0, 10, 20]
    assert list(patch[:, 2, 1]) == [0, 10, 20, 30]
    expected = np.zeros((4, 4), bool)
    expected[:, :2] = True
    expected[0, :] = True
    assert (mask == expected).all()


def test_crop_entirely_outside_is_black():
    img = _column_image(10, 10)
    patch, _ = sample_target(img, (30.0, 30.0, 4.0, 4.0), 1.0, 8)
    assert patch.shape == (8, 8, 3) and not patch.any()


def test_resize_factor_and_output_size():
    img = np.full((100, 120, 3), 7, np.uint8)
    patch, rf = sample_target(img, (40, 40, 20, 20), 5.0, 320)
    assert patch.shape == (320, 320, 3)
    assert rf == pytest.approx(320 / 100)


def test_normalize_patch():
    patch = np.zeros((2, 2, 3), np.uint8)
    patch[..., 0] = 255
    t = normalize_patch(patch)
    assert t.shape == (1, 3, 2, 2) and t.dtype == torch.float32
    assert t[0, 0, 0, 0].item() == pytest.approx((1 - 0.485) / 0.229, abs=1e-5)
    assert t[0, 1, 0, 0].item() == pytest.approx(-0.456 / 0.224, abs=1e-5)


def test_map_box_back():
    prev = (100.0, 50.0, 20.0, 10.0)  # centre (110, 55)
    # rf = 2 with a 320 crop: half side 80; a prediction at the crop centre keeps the centre.
    assert map_box_back((80.0, 80.0, 20.0, 10.0), prev, 320, 2.0) == (100.0, 50.0, 20.0, 10.0)
    assert map_box_back((90.0, 70.0, 8.0, 6.0), prev, 320, 2.0) == (116.0, 42.0, 8.0, 6.0)


@pytest.mark.parametrize(
    "box,expected",
    [
        ((-5, -5, 20, 20), (0, 0, 15, 15)),
        ((95, 75, 20, 20), (90, 70, 10, 10)),
        ((50, 40, 2, 3), (50, 40, 10, 10)),
        ((150, 10, 20, 20), (90, 10, 10, 20)),
        ((20, 20, 30, 30), (20, 20, 30, 30)),
    ],
)
def test_clip_box_margin_10(box, expected):
    assert clip_box(box, height=80, width=100, margin=10) == expected


def test_box_conversions_round_trip():
    b = torch.tensor([[0.2, 0.3, 0.5, 0.9], [10.0, 20.0, 5.0, 7.0]])
    torch.testing.assert_close(box_xyxy_to_cxcywh(box_cxcywh_to_xyxy(b)), b)
    torch.testing.assert_close(box_xyxy_to_xywh(box_xywh_to_xyxy(b)), b)
    torch.testing.assert_close(
        box_cxcywh_to_xyxy(torch.tensor([2.0, 3.0, 4.0, 2.0])), torch.tensor([0.0, 2.0, 4.0, 4.0])
    )


@pytest.mark.parametrize("size", [1, 5, 9])
def test_clip_box_on_images_smaller_than_the_margin_stays_inside(size):
    for box in [(-3, -3, 20, 20), (2, 2, 1, 1), (50, 50, 4, 4), (0, 0, size, size)]:
        x, y, w, h = clip_box(box, height=size, width=size, margin=10)
        assert 0 <= x and 0 <= y and x + w <= size and y + h <= size, box
        assert w > 0 and h > 0
    # Only the short side is affected: a 5 px tall, 100 px wide image keeps the 10 px margin
    # along x.
    assert clip_box((95, -3, 20, 20), height=5, width=100, margin=10) == (90, 0, 10, 5)


def test_boxes_in_image_keep_the_part_inside() -> None:
    boxes = np.array(
        [
            [10, 20, 30, 40],  # inside: unchanged
            [-10, 5, 30, 10],  # past the left edge: x from 0, 20 px wide
            [90, 70, 30, 30],  # past the right and bottom edges of 100 x 80
            [150, 10, 20, 20],  # wholly outside: 1 px at the right edge
        ],
        float,
    )
    out = boxes_in_image(boxes, height=80, width=100)
    np.testing.assert_array_equal(
        out, [[10, 20, 30, 40], [0, 5, 20, 10], [90, 70, 10, 10], [99, 10, 1, 20]]
    )
    np.testing.assert_array_equal(boxes_in_image(boxes[0], 80, 100), boxes[:1])
