"""The pieces of a composited sequence, each drawn from the scene's one random stream: the
background (a photo under a moving camera, or a real video), the object and its motion, look-alike
distractors, occluders and the camera's effects (light, motion blur, JPEG quality, noise).

:func:`mixformer.datagen.composite.make_composite_scene` calls them in a fixed order, so a seed
always gives the same scene; a change to what one of them draws changes every later piece.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from mixformer.datagen.composite_config import CompositeConfig
from mixformer.datagen.layers import (
    Layer,
    apply_homography,
    cutout_layer,
    masked_layer,
    patch_homographies,
    random_path,
    smooth_curve,
    textured_cut,
)
from mixformer.datagen.photo_corpus import Corpus

__all__ = [
    "Target",
    "border_shift",
    "draw_background",
    "draw_camera_effects",
    "draw_cutout",
    "draw_distractor",
    "draw_occluder",
    "draw_target",
]


def draw_cutout(rng, corpus: Corpus, cfg: CompositeConfig) -> np.ndarray | None:
    """A random cut-out (RGBA) with probability ``cfg.cutout_prob``, else None. Draws nothing
    from ``rng`` when the config or the corpus has no cut-outs (old scenes stay the same)."""
    if cfg.cutout_prob <= 0 or not corpus.cutouts or rng.random() >= cfg.cutout_prob:
        return None
    return corpus.cutout(int(rng.integers(len(corpus.cutouts))))


def _photo_background(rng, img: np.ndarray, T: int, H: int, W: int, camera: float):
    """Callable ``i -> frame``: a moving camera over a photo (pan, zoom, roll)."""
    ih, iw = img.shape[:2]
    zoom0 = max(H / ih, W / iw) * rng.uniform(1.05, 1.6)  # frame pixels per photo pixel
    zoom = zoom0 * np.exp(smooth_curve(rng, T, 0.15 * camera))
    roll = smooth_curve(rng, T, 4.0 * camera)
    pan_x = smooth_curve(rng, T, 0.25 * camera, 0.7)
    pan_y = smooth_curve(rng, T, 0.2 * camera, 0.7)
    cx0, cy0 = iw / 2 + rng.uniform(-0.1, 0.1) * iw, ih / 2 + rng.uniform(-0.1, 0.1) * ih
    mats = []
    for i in range(T):
        z = zoom[i]
        cx = np.clip(cx0 + pan_x[i] * iw, W / (2 * z), iw - W / (2 * z))
        cy = np.clip(cy0 + pan_y[i] * ih, H / (2 * z), ih - H / (2 * z))
        M = cv2.getRotationMatrix2D((float(cx), float(cy)), float(roll[i]), float(z))
        M[:, 2] += [W / 2 - cx, H / 2 - cy]
        mats.append(M)

    def frame(i: int) -> np.ndarray:
        return cv2.warpAffine(
            img, mats[i], (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
        )

    return frame


def _video_background(rng, corpus: Corpus, T: int, H: int, W: int):
    v = int(rng.integers(len(corpus.videos)))
    n = corpus.videos[v][1]
    stride = int(rng.integers(1, 3)) if n > 2 * T else 1
    start = int(rng.integers(0, max(n - stride * (T - 1), 1)))
    flip = bool(rng.random() < 0.5)

    def frame(i: int) -> np.ndarray:
        f = corpus.video_frame(v, min(start + stride * i, n - 1))
        fh, fw = f.shape[:2]
        s = max(H / fh, W / fw)
        f = cv2.resize(
            f,
            (max(W, round(fw * s)), max(H, round(fh * s))),
            interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR,
        )
        y0, x0 = (f.shape[0] - H) // 2, (f.shape[1] - W) // 2
        f = f[y0 : y0 + H, x0 : x0 + W]
        return f[:, ::-1] if flip else f

    return frame


@dataclass
class Target:
    """The tracked object as drawn: its layer and the motion distractors and occluders follow."""

    layer: Layer
    patch: np.ndarray  # (h, w, 3) uint8, the cut before masking
    cutout: bool  # a photographed object with its real outline
    base: float  # size in frame pixels
    scale: np.ndarray  # (T,) patch-to-frame scale
    aspect: np.ndarray  # (T,) aspect-ratio factor
    rot: np.ndarray  # (T,) degrees
    persp: np.ndarray  # (T, 8) corner offsets
    centre: np.ndarray  # (T, 2) frame pixels, after the frame-0 shift
    gain: np.ndarray  # (T,) brightness


def draw_background(rng, corpus: Corpus, cfg: CompositeConfig, T: int, H: int, W: int):
    """Callable ``i -> frame``: a video of the corpus or a moving camera over one of its photos."""
    if corpus.videos and rng.random() < cfg.video_prob:
        return _video_background(rng, corpus, T, H, W)
    img = corpus.image(int(rng.integers(len(corpus.images))))
    return _photo_background(rng, img, T, H, W, cfg.camera)


def draw_target(rng, corpus: Corpus, cfg: CompositeConfig, T: int, H: int, W: int) -> Target:
    """The object: a cut from a photo, about ``side`` px in the source, ``base`` px in the frame,
    moved so that frame 0 shows all of it inside the image (or, with ``cfg.border_prob``, part
    of it past one edge)."""
    src = corpus.image(int(rng.integers(len(corpus.images))))
    base = rng.uniform(*cfg.size) * min(H, W)
    aspect0 = float(np.exp(rng.uniform(-0.7, 0.7)))
    patch = textured_cut(rng, src, int(rng.uniform(0.6, 1.4) * max(base, 24)), aspect0)
    rgba = draw_cutout(rng, corpus, cfg)
    if rgba is not None:
        patch = np.ascontiguousarray(rgba[:, :, :3])
    ph, pw = patch.shape[:2]
    scale = base / np.sqrt(ph * pw) * np.exp(smooth_curve(rng, T, cfg.scale_amp))
    aspect = np.exp(smooth_curve(rng, T, cfg.aspect_amp))
    rot = smooth_curve(rng, T, cfg.rotation) + (rng.uniform(-1, 1) * cfg.rotation * 0.3)
    persp = np.stack([smooth_curve(rng, T, cfg.perspective) for _ in range(8)], 1)
    abrupt = int(rng.integers(1, 4)) if rng.random() < cfg.abrupt_prob else 0
    centre = random_path(rng, T, W, H, cfg.speed * base, abrupt)
    gain = 1.0 + smooth_curve(rng, T, cfg.illumination * 0.5)
    Hs = patch_homographies(
        centre, scale * np.sqrt(aspect), scale / np.sqrt(aspect), rot, persp, pw, ph
    )
    if rgba is None:
        layer = masked_layer(rng, patch, cfg.rect_prob, Hs, gain, np.ones(T, bool))
    else:
        layer = cutout_layer(rgba, Hs, gain, np.ones(T, bool))
    # Frame 0 must show the whole object: shift every frame so frame 0 is inside with a margin.
    pts0 = apply_homography(Hs[0], layer.contour)
    (x1, y1), (x2, y2) = pts0.min(0), pts0.max(0)
    dx = max(2 - x1, 0) + min(W - 2 - x2, 0)
    dy = max(2 - y1, 0) + min(H - 2 - y2, 0)
    # (no draw at all when border_prob is 0, so the benchmark variants' scenes never change)
    if cfg.border_prob > 0 and rng.random() < cfg.border_prob:
        bx, by = border_shift(rng, (x1 + dx, y1 + dy, x2 + dx, y2 + dy), W, H)
        dx, dy = dx + bx, dy + by
    layer.H = np.array([[1, 0, dx], [0, 1, dy], [0, 0, 1.0]]) @ layer.H
    centre = centre + [dx, dy]
    return Target(layer, patch, rgba is not None, base, scale, aspect, rot, persp, centre, gain)


def border_shift(rng, extent: tuple[float, ...], W: int, H: int) -> tuple[float, float]:
    """``(dx, dy)`` that moves 10-45 % of ``extent`` ``(x1, y1, x2, y2)`` (frame 0, inside the
    ``W x H`` image) past one image edge chosen at random."""
    x1, y1, x2, y2 = extent
    cut = rng.uniform(0.1, 0.45)
    side = int(rng.integers(4))
    if side == 0:
        return -x1 - cut * (x2 - x1), 0.0
    if side == 1:
        return W + cut * (x2 - x1) - x2, 0.0
    if side == 2:
        return 0.0, -y1 - cut * (y2 - y1)
    return 0.0, H + cut * (y2 - y1) - y2


def draw_distractor(rng, corpus: Corpus, target: Target, T: int) -> Layer:
    """A tinted, rescaled copy of the object crossing its path (drawn behind it); for a cut-out
    object, half the time another cut-out of about the same size instead."""
    tint = np.clip(rng.uniform(0.75, 1.25, 3), 0, 2).astype(np.float32)
    d_patch = np.clip(target.patch.astype(np.float32) * tint, 0, 255).astype(np.uint8)
    s = rng.uniform(0.75, 1.25)
    t0 = rng.uniform(0.2, 0.8) * T
    off = rng.normal(0, 1, 2)
    off = off / (np.linalg.norm(off) + 1e-9)
    sweep = (np.arange(T) - t0) / (T * rng.uniform(0.15, 0.4))
    miss = rng.uniform(0.4, 1.2) * target.base * np.array([-off[1], off[0]])
    rel = sweep[:, None] * off * 2.5 * target.base + miss
    d_rot = target.rot + rng.uniform(-20, 20)
    ph, pw = target.patch.shape[:2]
    sq = np.sqrt(target.aspect)
    Hd = patch_homographies(
        target.centre + rel,
        s * target.scale * sq,
        s * target.scale / sq,
        d_rot,
        target.persp,
        pw,
        ph,
    )
    dgain = target.gain * rng.uniform(0.8, 1.2)
    layer = target.layer
    if target.cutout and rng.random() < 0.5:
        other = corpus.cutout(int(rng.integers(len(corpus.cutouts))))
        oh, ow = other.shape[:2]
        k = np.sqrt(ph * pw / (oh * ow))  # the same size in the frame as the object
        Hd = patch_homographies(
            target.centre + rel, s * k * target.scale, s * k * target.scale, d_rot, 0.0, ow, oh
        )
        return cutout_layer(other, Hd, dgain, np.ones(T, bool))
    return Layer(d_patch, layer.alpha, layer.contour, Hd, dgain, np.ones(T, bool))


def draw_occluder(
    rng, corpus: Corpus, cfg: CompositeConfig, target: Target, first: bool, T: int
) -> Layer:
    """A patch of another photo sweeping over the object after frame 0; the ``first`` one may be
    a full occluder (solid, covering the whole object)."""
    base = target.base
    full = first and rng.random() < cfg.full_occlusion_prob
    side = base * (rng.uniform(1.7, 2.5) if full else rng.uniform(0.5, 1.1))
    o_patch = textured_cut(
        rng,
        corpus.image(int(rng.integers(len(corpus.images)))),
        int(max(side, 16)),
        float(np.exp(rng.uniform(-0.4, 0.4))),
    )
    rgba = None if full else draw_cutout(rng, corpus, cfg)
    if rgba is not None:
        o_patch = np.ascontiguousarray(rgba[:, :, :3])
    oh, ow = o_patch.shape[:2]
    t0 = rng.uniform(0.25, 0.8) * T
    dur = T * rng.uniform(0.08, 0.25)
    off = rng.normal(0, 1, 2)
    off = off / (np.linalg.norm(off) + 1e-9)
    sweep = np.clip((np.arange(T) - t0) / dur, -1.5, 1.5)
    miss = 0.0 if full else rng.uniform(-0.5, 0.5) * base
    rel = sweep[:, None] * off * 1.5 * (side + base) + miss * np.array([-off[1], off[0]])
    active = np.abs(np.arange(T) - t0) < 1.5 * dur
    active[0] = False
    o_rot = rng.uniform(-30, 30)
    o_scale = side / np.sqrt(oh * ow)
    Ho = patch_homographies(target.centre + rel, o_scale * 1.0, o_scale, o_rot, np.zeros(8), ow, oh)
    if rgba is not None:
        return cutout_layer(rgba, Ho, np.ones(T), active)
    layer = masked_layer(rng, o_patch, 0.5 if full else 0.3, Ho, np.ones(T), active)
    if full:  # a full occluder is solid: an ellipse or rectangle covering the object
        layer.alpha = np.ones_like(layer.alpha)
        layer.contour = np.array([[0, 0], [ow, 0], [ow, oh], [0, oh]], np.float64)
    return layer


def draw_camera_effects(rng, cfg: CompositeConfig, centre: np.ndarray, T: int):
    """Per-frame global gain (with an optional abrupt light change), motion blur ``(k, angle)``
    following the object, JPEG quality, and the sensor-noise level."""
    gain = 1.0 + smooth_curve(rng, T, cfg.illumination)
    if cfg.illumination >= 0.25 and rng.random() < 0.5:  # an abrupt light change
        t = int(rng.integers(T // 3, T))
        gain[t:] *= rng.uniform(0.6, 1.4)
    blur = np.zeros((T, 2))
    if rng.random() < cfg.blur_prob:
        vel = np.diff(centre, axis=0, prepend=centre[:1])
        for i in range(1, T):
            speed = float(np.linalg.norm(vel[i]))
            k = int(min(2 * round(speed * rng.uniform(0.4, 0.9)) + 1, 15))
            blur[i] = [k, np.arctan2(vel[i, 1], vel[i, 0])]
    jpeg = rng.integers(cfg.jpeg[0], cfg.jpeg[1] + 1, T)
    noise = float(rng.uniform(0, cfg.noise))
    return gain, blur, jpeg, noise
