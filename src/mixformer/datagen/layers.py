"""Drawing helpers of the composite generator: random masks and paths, patch homographies and
the :class:`Layer` (a masked patch with one homography per frame) that
:mod:`mixformer.datagen.composite` blends into frames.

Coordinates follow OpenCV: pixel centres at integers; points are ``(N, 2)`` float64 ``(x, y)``;
homographies are ``(3, 3)`` float64 maps from patch pixels to frame pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

__all__ = [
    "Layer",
    "apply_homography",
    "cutout_layer",
    "mask_contour",
    "masked_layer",
    "patch_homographies",
    "patch_homography",
    "random_mask",
    "random_path",
    "smooth_curve",
    "textured_cut",
]


def smooth_curve(rng: np.random.Generator, T: int, amp: float, cycles: float = 1.0) -> np.ndarray:
    """``(T,)`` smooth random curve in about ``[-amp, amp]`` starting at 0."""
    t = np.linspace(0, 1, T)
    f1, f2 = rng.uniform(0.3, 1.0) * cycles, rng.uniform(1.0, 2.5) * cycles
    p1, p2 = rng.uniform(0, 2 * np.pi, 2)
    c = 0.7 * np.sin(2 * np.pi * f1 * t + p1) + 0.3 * np.sin(2 * np.pi * f2 * t + p2)
    return amp * (c - c[0])


def random_mask(rng: np.random.Generator, h: int, w: int, rect_prob: float) -> np.ndarray:
    """``(h, w)`` uint8 mask (0/255) touching all four borders of the patch."""
    kind = "rect" if rng.random() < rect_prob else rng.choice(["ellipse", "polygon", "blob"])
    m = np.zeros((h, w), np.uint8)
    if kind == "rect":
        m[:] = 255
    elif kind == "ellipse":
        cv2.ellipse(
            m, (w // 2, h // 2), (max(w // 2 - 1, 1), max(h // 2 - 1, 1)), 0, 0, 360, 255, -1
        )
    elif kind == "polygon":
        n = int(rng.integers(5, 11))
        ang = np.sort(rng.uniform(0, 2 * np.pi, n))
        rad = rng.uniform(0.55, 1.0, n)
        pts = np.stack([np.cos(ang) * rad, np.sin(ang) * rad], 1)
        pts = (pts - pts.min(0)) / np.maximum(pts.max(0) - pts.min(0), 1e-6)
        pts = np.round(pts * [w - 1, h - 1]).astype(np.int32)
        cv2.fillPoly(m, [pts], 255)
    else:
        g = rng.random((5, 5)).astype(np.float32)
        g = cv2.resize(g, (w, h), interpolation=cv2.INTER_CUBIC)
        yy, xx = np.mgrid[0:h, 0:w]
        r = ((xx - (w - 1) / 2) / (w / 2)) ** 2 + ((yy - (h - 1) / 2) / (h / 2)) ** 2
        m[(1.0 - r + 0.5 * (g - 0.5)) > 0.25] = 255
    ys, xs = np.nonzero(m)
    if len(xs) < 16:
        m[:] = 255
        return m
    crop = m[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    return cv2.resize(crop, (w, h), interpolation=cv2.INTER_NEAREST)


def mask_contour(mask: np.ndarray) -> np.ndarray:
    """``(N, 2)`` float64 outline of the mask's largest region (OpenCV coordinates: pixel
    centres at integers), moved half a pixel outwards to the border pixels' outer edges."""
    cs, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    c = max(cs, key=cv2.contourArea).reshape(-1, 2).astype(np.float64)
    return c + 0.5 * np.sign(c - c.mean(0))


def textured_cut(rng: np.random.Generator, img: np.ndarray, side: int, aspect: float) -> np.ndarray:
    """A ``(h, w, 3)`` patch of ``img`` with about ``side`` px and aspect ``w/h``."""
    H, W = img.shape[:2]
    w = int(np.clip(side * np.sqrt(aspect), 12, W - 2))
    h = int(np.clip(side / np.sqrt(aspect), 12, H - 2))
    best, best_energy = None, -1.0
    for _ in range(3):  # prefer textured cuts: flat sky or wall makes a featureless object
        x = int(rng.integers(0, W - w + 1))
        y = int(rng.integers(0, H - h + 1))
        cut = img[y : y + h, x : x + w]
        energy = float(cut[::2, ::2].std())
        if energy > best_energy:
            best, best_energy = cut, energy
    return best.copy()


def patch_homography(
    cx: float,
    cy: float,
    sx: float,
    sy: float,
    rot_deg: float,
    persp: np.ndarray,
    w: int,
    h: int,
) -> np.ndarray:
    """3x3 map from patch pixels to frame pixels: perspective, scale, rotation, translation."""
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    dst = src + persp.reshape(4, 2).astype(np.float32) * np.float32([w, h])
    P = cv2.getPerspectiveTransform(src, dst).astype(np.float64)
    C = np.array([[1, 0, -w / 2], [0, 1, -h / 2], [0, 0, 1.0]])
    S = np.diag([sx, sy, 1.0])
    a = np.deg2rad(rot_deg)
    R = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1.0]])
    T = np.array([[1, 0, cx], [0, 1, cy], [0, 0, 1.0]])
    return T @ R @ S @ C @ P


def apply_homography(Hm: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """``(N, 2)`` points ``pts`` mapped by the ``(3, 3)`` homography ``Hm``."""
    q = np.c_[pts, np.ones(len(pts))] @ Hm.T
    return q[:, :2] / q[:, 2:3]


@dataclass
class Layer:
    """A masked patch with one homography per frame (object, distractor or occluder)."""

    patch: np.ndarray  # (h, w, 3) uint8
    alpha: np.ndarray  # (h, w) float32 in [0, 1], slightly feathered
    contour: np.ndarray  # (N, 2) patch coordinates
    H: np.ndarray  # (T, 3, 3)
    gain: np.ndarray  # (T,) brightness factor of this layer
    active: np.ndarray  # (T,) bool: drawn in that frame

    def draw(self, frame: np.ndarray, i: int, cover: np.ndarray | None = None) -> None:
        """Blend the layer into ``frame`` (float32, in place); add its alpha to ``cover``."""
        if not self.active[i]:
            return
        Hf, Wf = frame.shape[:2]
        pts = apply_homography(self.H[i], self.contour)
        x1, y1 = np.floor(pts.min(0)).astype(int) - 2
        x2, y2 = np.ceil(pts.max(0)).astype(int) + 2
        x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, Wf), min(y2, Hf)
        if x2 <= x1 or y2 <= y1:
            return
        M = np.array([[1, 0, -x1], [0, 1, -y1], [0, 0, 1.0]]) @ self.H[i]
        size = (x2 - x1, y2 - y1)
        p = cv2.warpPerspective(
            self.patch, M, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
        a = cv2.warpPerspective(self.alpha, M, size, flags=cv2.INTER_LINEAR)[..., None]
        roi = frame[y1:y2, x1:x2]
        roi *= 1 - a
        roi += a * (p.astype(np.float32) * self.gain[i])
        if cover is not None:
            c = cover[y1:y2, x1:x2]
            np.maximum(c, a[..., 0], out=c)


def masked_layer(
    rng: np.random.Generator,
    patch: np.ndarray,
    rect_prob: float,
    H: np.ndarray,
    gain: np.ndarray,
    active: np.ndarray,
) -> Layer:
    """A layer of ``patch`` under a :func:`random_mask` (a rectangle with ``rect_prob``),
    feathered by a pixel; ``H``, ``gain``, ``active`` as in :class:`Layer`."""
    h, w = patch.shape[:2]
    m = random_mask(rng, h, w, rect_prob)
    alpha = (
        cv2.GaussianBlur(m.astype(np.float32) / 255, (3, 3), 0.6)
        if min(h, w) > 8
        else (m.astype(np.float32) / 255)
    )
    alpha = np.where(m > 0, np.maximum(alpha, 0.5), np.minimum(alpha, 0.49)).astype(np.float32)
    return Layer(patch, alpha, mask_contour(m), H, gain, active)


def cutout_layer(rgba: np.ndarray, H: np.ndarray, gain: np.ndarray, active: np.ndarray) -> Layer:
    """A layer from a cut-out's real alpha; its outline is the convex hull of all its opaque
    parts (an object in several pieces, like a pair of cherries, gets one box)."""
    alpha = rgba[:, :, 3].astype(np.float32) / 255
    pts = cv2.findNonZero((alpha > 0.5).astype(np.uint8))
    hull = cv2.convexHull(pts).reshape(-1, 2).astype(np.float64)
    hull = hull + 0.5 * np.sign(hull - hull.mean(0))
    return Layer(np.ascontiguousarray(rgba[:, :, :3]), alpha, hull, H, gain, active)


def random_path(
    rng: np.random.Generator, T: int, W: int, H: int, speed_px: float, abrupt: int
) -> np.ndarray:
    """``(T, 2)`` object centre: a smoothed random walk with momentum, bounced off the borders,
    plus ``abrupt`` sudden jumps."""
    pos = np.zeros((T, 2))
    pos[0] = [rng.uniform(0.3, 0.7) * W, rng.uniform(0.3, 0.7) * H]
    v = rng.normal(0, 1, 2)
    v = v / (np.linalg.norm(v) + 1e-9) * speed_px * rng.uniform(0.3, 1.2)
    jumps = (
        set(rng.choice(np.arange(3, T), size=min(abrupt, max(T - 3, 0)), replace=False).tolist())
        if T > 4
        else set()
    )
    lo, hi = np.array([0.08 * W, 0.08 * H]), np.array([0.92 * W, 0.92 * H])
    for i in range(1, T):
        v = 0.9 * v + rng.normal(0, 0.35 * speed_px, 2)
        n = np.linalg.norm(v)
        if n > 2.5 * speed_px:
            v *= 2.5 * speed_px / n
        p = pos[i - 1] + v
        if i in jumps:
            p = p + rng.choice([-1, 1], 2) * rng.uniform(6, 12, 2) * speed_px
        for d in range(2):
            if p[d] < lo[d]:
                p[d], v[d] = 2 * lo[d] - p[d], abs(v[d])
            elif p[d] > hi[d]:
                p[d], v[d] = 2 * hi[d] - p[d], -abs(v[d])
        pos[i] = np.clip(p, lo, hi)
    return pos


def patch_homographies(
    centre: np.ndarray,
    sx: np.ndarray | float,
    sy: np.ndarray | float,
    rot: np.ndarray | float,
    persp: np.ndarray,
    w: int,
    h: int,
) -> np.ndarray:
    """``(T, 3, 3)``: :func:`patch_homography` per frame; ``sx``/``sy``/``rot`` are per frame or
    constant, ``persp`` is ``(T, 8)`` or ``(8,)``."""
    T = len(centre)
    sx, sy, rot = (np.broadcast_to(np.asarray(a, np.float64), (T,)) for a in (sx, sy, rot))
    persp = np.broadcast_to(persp, (T, 8))
    return np.stack(
        [
            patch_homography(centre[i, 0], centre[i, 1], sx[i], sy[i], rot[i], persp[i], w, h)
            for i in range(T)
        ]
    )
