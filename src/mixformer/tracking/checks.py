"""Validation of the frames and initial boxes given to the trackers (one-line errors)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import cv2
import numpy as np

from mixformer.geometry import Box, max_crop_side

__all__ = ["check_box", "check_image"]


def check_image(image: np.ndarray, color: Literal["rgb", "bgr"] = "rgb") -> np.ndarray:
    """Validate a frame and return it as ``(H, W, 3)`` uint8 RGB.

    Args:
        image: ``(H, W, 3)`` uint8 RGB (or BGR with ``color="bgr"``), or ``(H, W)`` /
            ``(H, W, 1)`` uint8 gray.
    Raises:
        ValueError: not a uint8 array, a channel layout other than those, or empty.
    """
    if not isinstance(image, np.ndarray):
        raise ValueError(f"image must be a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 (0-255), got dtype {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    elif image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"image must be HxWx3 (RGB) or HxW / HxWx1 (gray), got shape {image.shape}"
            + _layout_hint(image.shape)
        )
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"image is empty: shape {image.shape}")
    if color == "bgr":
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    elif color != "rgb":
        raise ValueError(f"color must be 'rgb' or 'bgr', got {color!r}")
    return image


def _layout_hint(shape: tuple[int, ...]) -> str:
    """What to do about an image array of an unsupported ``shape`` (empty when unsure)."""
    if len(shape) == 3 and shape[0] in (1, 3, 4) and shape[2] > 4:
        return " (channels first: transpose it to HxWxC, e.g. image.transpose(1, 2, 0))"
    if len(shape) == 3 and shape[2] == 4:
        return " (4 channels: drop the alpha channel first, e.g. image[:, :, :3])"
    if len(shape) == 4 and shape[0] == 1:
        return " (a batch of one: pass image[0])"
    return ""


def check_box(box: Sequence[float], height: int, width: int, factor: float | None = None) -> Box:
    """Validate an initial ``(x, y, w, h)`` box against an ``height x width`` image.

    Args:
        box: ``(x, y, w, h)`` in pixels.
        height / width: the image size.
        factor: the largest crop factor the box will be cropped with (the search factor); when
            given, a box whose crop exceeds :func:`~mixformer.geometry.max_crop_side` is refused.
    Raises:
        ValueError: wrong length, NaN/inf, zero or negative size, no overlap with the image, or
            (with ``factor``) far larger than the image.
    """
    try:
        vals = tuple(float(v) for v in box)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"box must be 4 numbers (x, y, w, h), got {box!r}") from exc
    if len(vals) != 4:
        raise ValueError(f"box must be 4 numbers (x, y, w, h), got {len(vals)}: {box!r}")
    if not all(math.isfinite(v) for v in vals):
        raise ValueError(f"box has NaN or infinite values: {vals}")
    x, y, w, h = vals
    if w <= 0 or h <= 0:
        raise ValueError(f"box must have positive width and height, got w={w}, h={h}")
    if x >= width or y >= height or x + w <= 0 or y + h <= 0:
        raise ValueError(f"box {vals} lies entirely outside the {width}x{height} image")
    if factor is not None:
        side, limit = math.sqrt(w * h) * factor, max_crop_side(height, width)
        if side > limit:
            raise ValueError(
                f"box {vals} is far larger than the {width}x{height} image: its search crop "
                f"would be {side:.0f} px wide (limit {limit})"
            )
    return (x, y, w, h)
