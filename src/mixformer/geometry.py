"""Pure geometry helpers shared by training and tracking (SPEC 2.3, 2.6, 3.5).

Box formats used in this package:

* ``xywh``: ``(x1, y1, w, h)``, top-left corner and size, in pixels of the full image.
* ``xyxy``: ``(x1, y1, x2, y2)``.
* ``cxcywh``: ``(cx, cy, w, h)``.

"Normalised" boxes are divided by the side of the square crop (values roughly in ``[0, 1]``).
The torch converters work on the last dimension of any ``(..., 4)`` tensor.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np
import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Box = tuple[float, float, float, float]


def box_cxcywh_to_xyxy(b: torch.Tensor) -> torch.Tensor:
    """``(..., 4)`` cxcywh -> xyxy (same units)."""
    cx, cy, w, h = b.unbind(-1)
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)


def box_xyxy_to_cxcywh(b: torch.Tensor) -> torch.Tensor:
    """``(..., 4)`` xyxy -> cxcywh (width/height may come out negative; not clamped)."""
    x0, y0, x1, y1 = b.unbind(-1)
    return torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], dim=-1)


def box_xywh_to_xyxy(b: torch.Tensor) -> torch.Tensor:
    """``(..., 4)`` xywh -> xyxy (same units)."""
    x, y, w, h = b.unbind(-1)
    return torch.stack([x, y, x + w, y + h], dim=-1)


def box_xyxy_to_xywh(b: torch.Tensor) -> torch.Tensor:
    """``(..., 4)`` xyxy -> xywh (same units)."""
    x0, y0, x1, y1 = b.unbind(-1)
    return torch.stack([x0, y0, x1 - x0, y1 - y0], dim=-1)


def crop_size(box: Sequence[float], factor: float) -> int:
    """Side of the square crop around ``box`` (xywh): ``ceil(sqrt(w*h) * factor)``.

    Raises:
        ValueError: if the crop would be smaller than one pixel (empty box).
    """
    _, _, w, h = (float(v) for v in box)
    area = w * h
    if not math.isfinite(area) or area <= 0:
        raise ValueError(f"box {tuple(box)} has no area: width and height must be > 0")
    sz = math.ceil(math.sqrt(area) * factor)
    if sz < 1:
        raise ValueError(f"box {tuple(box)} gives an empty crop (factor {factor})")
    return sz


def max_crop_side(height: int, width: int) -> int:
    """Largest crop side :func:`sample_target` accepts for a ``height x width`` image.

    Eight times the image's longer side (at least 4096 px): a box inside the image needs at most
    ``factor`` (5) times it, while a runaway box (``1e7 x 1e7`` px) would make the zero-padded
    crop allocate petabytes.
    """
    return max(4096, 8 * max(int(height), int(width)))


def sample_target(
    image: np.ndarray,
    box: Sequence[float],
    factor: float,
    output_size: int,
    return_mask: bool = False,
) -> tuple[np.ndarray, float] | tuple[np.ndarray, float, np.ndarray]:
    """Square crop of ``factor * sqrt(w*h)`` pixels centred on ``box``, resized to ``output_size``.

    Reproduces the reference exactly (SPEC 2.3): banker's rounding of the origin, zero padding,
    the right/bottom off-by-one (the last image column/row is padding once the crop reaches it)
    and OpenCV bilinear resizing of the uint8 crop.

    Args:
        image: ``(H, W, 3)`` uint8 image (any channel order; it is not changed).
        box: ``(x, y, w, h)`` in image pixels (floats).
        factor: crop side relative to ``sqrt(w*h)``.
        output_size: side of the returned square patch in pixels.
        return_mask: also return the padding mask.
    Returns:
        ``(patch (S, S, 3) uint8, resize_factor)`` with ``resize_factor = S / crop_sz``; with
        ``return_mask`` also ``mask (S, S) bool``, True on padding.
    Raises:
        ValueError: an empty box, or a crop wider than :func:`max_crop_side` of the image.
    """
    x, y, w, h = (float(v) for v in box)
    sz = crop_size(box, factor)
    limit = max_crop_side(*image.shape[:2])
    if sz > limit:
        raise ValueError(
            f"box {tuple(box)} is far too large for the {image.shape[1]}x{image.shape[0]} image: "
            f"its crop would be {sz} px wide (limit {limit})"
        )
    x1 = int(round(x + 0.5 * w - sz * 0.5))
    y1 = int(round(y + 0.5 * h - sz * 0.5))
    x2, y2 = x1 + sz, y1 + sz
    img_h, img_w = image.shape[:2]
    x1_pad, y1_pad = max(0, -x1), max(0, -y1)
    x2_pad, y2_pad = max(x2 - img_w + 1, 0), max(y2 - img_h + 1, 0)

    if x1_pad == 0 and y1_pad == 0 and x2_pad == 0 and y2_pad == 0:
        crop = image[y1:y2, x1:x2]
    else:
        crop = np.zeros((sz, sz) + image.shape[2:], dtype=image.dtype)
        r0, r1 = y1 + y1_pad, y2 - y2_pad
        c0, c1 = x1 + x1_pad, x2 - x2_pad
        if r1 > r0 and c1 > c0:
            crop[y1_pad : y1_pad + r1 - r0, x1_pad : x1_pad + c1 - c0] = image[r0:r1, c0:c1]
    resize_factor = output_size / sz
    patch = cv2.resize(crop, (output_size, output_size))
    if not return_mask:
        return patch, resize_factor
    mask = np.ones((sz, sz), dtype=np.float32)
    mask[y1_pad : sz - y2_pad, x1_pad : sz - x2_pad] = 0
    mask = cv2.resize(mask, (output_size, output_size)).astype(bool)
    return patch, resize_factor, mask


def normalize_patch(patch: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 RGB patch ``(S, S, 3)`` -> ImageNet-normalised float32 ``(1, 3, S, S)`` (SPEC 2.4)."""
    t = torch.from_numpy(np.ascontiguousarray(patch)).to(device)
    t = t.permute(2, 0, 1)[None].float() / 255.0
    mean = torch.tensor(IMAGENET_MEAN, device=t.device).reshape(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=t.device).reshape(1, 3, 1, 1)
    return (t - mean) / std


def map_box_back(pred: Sequence[float], prev: Sequence[float], search_size: int, rf: float) -> Box:
    """Map a crop-relative box back to image pixels (SPEC 2.6 step 6).

    Args:
        pred: ``(cx, cy, w, h)`` in image-scale pixels relative to the search crop
            (``normalised box * search_size / rf``).
        prev: previous state ``(x, y, w, h)``; its *unrounded* centre anchors the crop.
        search_size: search crop side in pixels.
        rf: resize factor of the search crop.
    Returns:
        ``(x, y, w, h)`` in image pixels.
    """
    cx_prev = prev[0] + 0.5 * prev[2]
    cy_prev = prev[1] + 0.5 * prev[3]
    cx, cy, w, h = pred
    half = 0.5 * search_size / rf
    cx_real = cx + (cx_prev - half)
    cy_real = cy + (cy_prev - half)
    return (cx_real - 0.5 * w, cy_real - 0.5 * h, w, h)


def clip_box(box: Sequence[float], height: int, width: int, margin: int = 10) -> Box:
    """Clip an xywh box so at least ``margin`` pixels stay inside the image (SPEC 2.6 step 7).

    On an image narrower (or lower) than ``margin`` the margin along that side is the image's
    size, so the box stays inside the image (the reference's rule would put it mostly outside);
    images of at least ``margin`` pixels are clipped exactly as the reference does.
    """
    x1, y1, w, h = box
    mx, my = min(margin, width), min(margin, height)
    x2, y2 = x1 + w, y1 + h
    x1 = min(max(0, x1), width - mx)
    x2 = min(max(mx, x2), width)
    y1 = min(max(0, y1), height - my)
    y2 = min(max(my, y2), height)
    w = max(mx, x2 - x1)
    h = max(my, y2 - y1)
    return (float(x1), float(y1), float(w), float(h))


def boxes_in_image(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """The part of each ``(T, 4)`` xywh box inside a ``height x width`` image, as a labeller
    draws an object cut by the image's edge (at least 1 px wide and high, at the nearest edge
    for a box wholly outside).

    Returns:
        ``(T, 4)`` float64 xywh boxes.
    """
    b = xywh_rows(boxes, "boxes")
    x1 = np.clip(b[:, 0], 0, width - 1)
    y1 = np.clip(b[:, 1], 0, height - 1)
    x2 = np.maximum(np.clip(b[:, 0] + b[:, 2], 0, width), x1 + 1)
    y2 = np.maximum(np.clip(b[:, 1] + b[:, 3], 0, height), y1 + 1)
    return np.stack([x1, y1, x2 - x1, y2 - y1], 1)


def xywh_rows(a: np.ndarray, what: str) -> np.ndarray:
    """``(T, 4)`` float64 boxes (one ``(4,)`` box becomes ``(1, 4)``)."""
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 1 and a.shape[0] == 4:
        a = a[None]
    if a.ndim != 2 or a.shape[1] != 4:
        raise ValueError(f"{what} must be (T, 4) x,y,w,h boxes, got shape {a.shape}")
    return a


def iou(pred_xywh: np.ndarray, gt_xywh: np.ndarray) -> np.ndarray:
    """Intersection over union of matching rows (continuous ``[x, x + w]`` overlap).

    Args:
        pred_xywh: ``(T, 4)`` (or one ``(4,)``) ``(x, y, w, h)`` pixel boxes.
        gt_xywh: the same shape.

    Returns:
        ``(T,)`` float64 in ``[0, 1]``; 0 where the union is empty; NaN where a box has NaN.
    Raises:
        ValueError: not ``(T, 4)`` boxes, or the two differ in length.
    """
    p, g = xywh_rows(pred_xywh, "pred"), xywh_rows(gt_xywh, "gt")
    if p.shape != g.shape:
        raise ValueError(f"pred {p.shape} and gt {g.shape} differ in length")
    iw = np.minimum(p[:, 0] + p[:, 2], g[:, 0] + g[:, 2]) - np.maximum(p[:, 0], g[:, 0])
    ih = np.minimum(p[:, 1] + p[:, 3], g[:, 1] + g[:, 3]) - np.maximum(p[:, 1], g[:, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    union = p[:, 2] * p[:, 3] + g[:, 2] * g[:, 3] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    out[np.isnan(union)] = np.nan
    return out
