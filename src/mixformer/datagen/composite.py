"""Tracking sequences composited from real photographs and real video frames.

An object cut from a real photo (a random crop with an irregular mask: ellipse, polygon, blob or
rectangle) moves over a real background: a photo seen by a moving camera (pan, zoom, roll) or
consecutive frames of a real video. Per frame the object is scaled, stretched, rotated in plane
and seen in perspective (one homography per frame), lit differently, blurred along its motion,
sometimes jumps (abrupt motion), passes behind occluders cut from other photos (partial and
full occlusion) and is crossed by look-alike distractors (tinted, rescaled copies of itself,
drawn *behind* it). Frames are JPEG-compressed and noisy.

Ground truth: ``boxes[i]`` is the tight ``(x, y, w, h)`` box of the whole object's mask after
the frame's homography (the transformed mask contour), so it stays the object's box while the
object is occluded or partly outside the image; distractors and occluders never change it.
``visible[i]`` is False when less than :data:`VISIBLE_FRACTION` of the object's mask is seen.

Everything about a sequence is drawn once by :func:`make_composite_scene` from a seed;
:meth:`CompositeScene.render` draws any frame on demand (the same pixels every call), which is
what training needs (3 frames per sample). :func:`write_composite_benchmark` writes held-out
benchmarks in the OTB layout.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from mixformer.data.io import format_boxes
from mixformer.datagen.corpus import load_manifest
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
from mixformer.utils import atomic_write_text

log = logging.getLogger(__name__)

__all__ = [
    "COMPOSITE_VARIANTS",
    "CompositeConfig",
    "CompositeScene",
    "Corpus",
    "demo_photos",
    "make_composite_scene",
    "write_composite_benchmark",
]

VISIBLE_FRACTION = 0.5


@dataclass(frozen=True)
class CompositeConfig:
    """How hard a composited sequence is (each field a probability or an amplitude).

    Attributes:
        name: variant name.
        video_prob: probability that the background is a real video (else a photo + camera).
        rect_prob: probability of a rectangular object mask (else irregular).
        size: ``(lo, hi)`` object side ``sqrt(w*h)`` as a fraction of the shorter frame side.
        scale_amp / aspect_amp: amplitude of the log scale / log aspect change over a sequence.
        rotation: amplitude of in-plane rotation in degrees.
        perspective: amplitude of the corner displacement (fraction of the object side).
        speed: typical object speed in object sides per frame.
        camera: amplitude of the camera's pan / zoom / roll.
        abrupt_prob: probability per sequence of abrupt jumps (1-3 of them).
        blur_prob: probability per sequence of motion blur.
        occluder_prob: probability per sequence of occluders crossing the object.
        full_occlusion_prob: probability that an occluder covers the whole object.
        distractor_prob: probability per sequence of look-alike distractors (1-2).
        cutout_prob: probability that the object (and each partial occluder) is a
            photographed object with its real outline (a corpus ``cutout``) instead of a
            random-shaped cut from a photo; used only when the corpus has cut-outs. With a
            cut-out object, half the look-alikes are other cut-outs instead of tinted copies.
        border_prob: probability that frame 0 shows the object cut by an image edge (10-45 %
            of its extent outside, on a random side), its path then running along that edge, as
            objects at the border of a photo are (the boxes stay the whole object's; training
            clips them to the image, as a labeller would).
        illumination: amplitude of the brightness change (gain), abrupt changes when ``hard``.
        jpeg: ``(lo, hi)`` JPEG quality.
        noise: maximum Gaussian noise sigma (grey levels).
    """

    name: str
    video_prob: float = 0.3
    rect_prob: float = 0.35
    size: tuple[float, float] = (0.12, 0.3)
    scale_amp: float = 0.25
    aspect_amp: float = 0.1
    rotation: float = 10.0
    perspective: float = 0.05
    speed: float = 0.06
    camera: float = 0.5
    abrupt_prob: float = 0.0
    blur_prob: float = 0.1
    occluder_prob: float = 0.2
    full_occlusion_prob: float = 0.0
    distractor_prob: float = 0.15
    cutout_prob: float = 0.0
    border_prob: float = 0.0
    illumination: float = 0.1
    jpeg: tuple[int, int] = (75, 95)
    noise: float = 3.0


#: The variants: ``plain`` and ``hard`` held-out benchmarks, ``train`` (covers both and more).
COMPOSITE_VARIANTS: dict[str, CompositeConfig] = {
    "plain": CompositeConfig("plain"),
    "hard": CompositeConfig(
        "hard",
        video_prob=0.5,
        size=(0.1, 0.28),
        scale_amp=0.45,
        aspect_amp=0.25,
        rotation=45.0,
        perspective=0.2,
        speed=0.09,
        camera=1.0,
        abrupt_prob=0.6,
        blur_prob=0.7,
        occluder_prob=0.8,
        full_occlusion_prob=0.6,
        distractor_prob=0.8,
        illumination=0.3,
        jpeg=(35, 85),
        noise=8.0,
    ),
    "train": CompositeConfig(
        "train",
        video_prob=0.4,
        rect_prob=0.5,
        size=(0.08, 0.32),
        scale_amp=0.4,
        aspect_amp=0.2,
        rotation=35.0,
        perspective=0.15,
        speed=0.08,
        camera=0.8,
        abrupt_prob=0.35,
        blur_prob=0.45,
        occluder_prob=0.55,
        full_occlusion_prob=0.35,
        distractor_prob=0.55,
        cutout_prob=0.5,
        illumination=0.25,
        jpeg=(35, 95),
        noise=8.0,
    ),
}
#: ``train`` with a quarter of the objects cut by an image edge in frame 0 (``border_prob``).
COMPOSITE_VARIANTS["train-border"] = dataclasses.replace(
    COMPOSITE_VARIANTS["train"], name="train-border", border_prob=0.25
)
#: ``train`` with objects up to 0.55 of the shorter frame side (``train``: 0.32), so that search
#: crops of large objects, mostly padding outside the frame, are seen in training.
COMPOSITE_VARIANTS["train-large"] = dataclasses.replace(
    COMPOSITE_VARIANTS["train"], name="train-large", size=(0.08, 0.55)
)


def demo_photos() -> Path:
    """The folder of the two real photos shipped with the package (a corpus with a manifest;
    every entry in split ``val``), from which ``mixformer demo`` composites its video."""
    from importlib import resources

    return Path(str(resources.files("mixformer") / "data" / "photos"))


class Corpus:
    """The images and videos of one split of a corpus built by :func:`mixformer.datagen.corpus.
    build_corpus`, read lazily (photos are cached once read).

    Args:
        root: the corpus folder (with ``manifest.json``).
        split: ``train``, ``val``, ``test`` or ``all``.

    Raises:
        ValueError: no manifest, or the split has no photo.
    """

    def __init__(self, root: str | Path, split: str = "train") -> None:
        self.root = Path(root)
        entries = load_manifest(self.root)["entries"]
        if split != "all":
            entries = [e for e in entries if e["split"] == split]
        self.split = split
        self.images = sorted(e["path"] for e in entries if e["kind"] == "image")
        self.videos = sorted((e["path"], int(e["frames"])) for e in entries if e["kind"] == "video")
        self.cutouts = sorted(e["path"] for e in entries if e["kind"] == "cutout")
        if not self.images:
            raise ValueError(f"{self.root}: the {split!r} split has no photo")
        self._read = lru_cache(maxsize=256)(self._read_uncached)
        self._read_cutout = lru_cache(maxsize=512)(self._read_cutout_uncached)

    def _read_uncached(self, rel: str) -> np.ndarray:
        img = cv2.imread(str(self.root / rel), cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"{self.root / rel}: cannot read image")
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)

    def image(self, k: int) -> np.ndarray:
        """Photo ``k`` as ``(H, W, 3)`` uint8 RGB."""
        return self._read(self.images[k])

    def cutout(self, k: int) -> np.ndarray:
        """Cut-out ``k`` as ``(h, w, 4)`` uint8 RGBA (alpha: the object's real outline)."""
        return self._read_cutout(self.cutouts[k])

    def _read_cutout_uncached(self, rel: str) -> np.ndarray:
        img = cv2.imread(str(self.root / rel), cv2.IMREAD_UNCHANGED)
        if img is None or img.ndim != 3 or img.shape[2] != 4:
            raise ValueError(f"{self.root / rel}: cannot read a cut-out with an alpha channel")
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)

    def video_frame(self, v: int, i: int) -> np.ndarray:
        """Frame ``i`` (0-based) of video ``v`` as ``(H, W, 3)`` uint8 RGB (not cached)."""
        return self._read_uncached(f"{self.videos[v][0]}/{i + 1:05d}.jpg")


def _draw_cutout(rng, corpus: Corpus, cfg: CompositeConfig) -> np.ndarray | None:
    """A random cut-out (RGBA) with probability ``cfg.cutout_prob``, else None. Draws nothing
    from ``rng`` when the config or the corpus has no cut-outs (old scenes stay the same)."""
    if cfg.cutout_prob <= 0 or not corpus.cutouts or rng.random() >= cfg.cutout_prob:
        return None
    return corpus.cutout(int(rng.integers(len(corpus.cutouts))))


class CompositeScene:
    """A composited sequence whose frames are rendered on demand.

    Attributes:
        name: sequence name.
        boxes: ``(T, 4)`` float64 ``(x, y, w, h)`` tight boxes of the whole object.
        visible: ``(T,)`` bool, False when less than half of the object's mask is seen.
        visible_fraction: ``(T,)`` float64, the fraction of the object's mask that is seen.
    """

    def __init__(
        self, name, size, background, target, below, above, gain, blur, jpeg, noise, noise_seed
    ) -> None:
        self.name = name
        self._size = size
        self._background = background  # callable i -> (H, W, 3) uint8
        self._target, self._below, self._above = target, below, above
        self._gain, self._blur, self._jpeg, self._noise = gain, blur, jpeg, noise
        self._noise_seed = noise_seed
        T = len(target.H)
        Hf, Wf = size
        boxes = np.zeros((T, 4))
        frac = np.zeros(T)
        for i in range(T):
            # The object's pixels as the warp draws them (alpha > 0.5), on a window around
            # its outline that may extend beyond the image: the box is their exact extent.
            pts = apply_homography(target.H[i], target.contour)
            x0, y0 = np.floor(pts.min(0)).astype(int) - 2
            x3, y3 = np.ceil(pts.max(0)).astype(int) + 3
            M = np.array([[1, 0, -x0], [0, 1, -y0], [0, 0, 1.0]]) @ target.H[i]
            a = cv2.warpPerspective(target.alpha, M, (int(x3 - x0), int(y3 - y0))) > 0.5
            ys, xs = np.nonzero(a)
            if len(xs) == 0:  # degenerate (tiny) object: the outline's extent
                (x1, y1), (x2, y2) = pts.min(0) + 0.5, pts.max(0) + 0.5
                boxes[i] = [x1, y1, x2 - x1, y2 - y1]
                continue
            boxes[i] = [
                x0 + xs.min(),
                y0 + ys.min(),
                xs.max() + 1 - xs.min(),
                ys.max() + 1 - ys.min(),
            ]
            # Visible fraction: object pixels inside the image and not under an occluder.
            seen = np.zeros_like(a, dtype=np.uint8)
            seen[max(-y0, 0) : Hf - y0, max(-x0, 0) : Wf - x0] = 1
            seen &= a
            for occ in above:
                if occ.active[i]:
                    q = apply_homography(occ.H[i], occ.contour) + 0.5 - [x0, y0]
                    cv2.fillPoly(seen, [np.round(q).astype(np.int32)], 0)
            frac[i] = float(seen.sum()) / len(xs)
        self.boxes = boxes
        self.visible_fraction = frac
        self.visible = frac >= VISIBLE_FRACTION

    def __len__(self) -> int:
        return len(self.boxes)

    def distractor_boxes(self, i: int) -> np.ndarray:
        """``(K, 4)`` float64 xywh boxes of the look-alike distractors drawn in frame ``i``
        (extent of their outlines; they may leave the image)."""
        out = []
        for layer in self._below:
            if layer.active[i]:
                pts = apply_homography(layer.H[i], layer.contour) + 0.5
                (x1, y1), (x2, y2) = pts.min(0), pts.max(0)
                out.append([x1, y1, x2 - x1, y2 - y1])
        return np.asarray(out, dtype=np.float64).reshape(-1, 4)

    def render(self, i: int, with_alpha: bool = False):
        """Frame ``i`` as ``(H, W, 3)`` uint8 RGB (the same pixels every call).

        With ``with_alpha`` also returns the object's ``(H, W)`` float32 alpha in the frame
        before occluders (for tests)."""
        if not 0 <= i < len(self):
            raise IndexError(f"frame {i} out of range for {len(self)} frames")
        frame = self._background(i).astype(np.float32)
        for layer in self._below:
            layer.draw(frame, i)
        alpha = np.zeros(frame.shape[:2], np.float32) if with_alpha else None
        self._target.draw(frame, i, alpha)
        for layer in self._above:
            layer.draw(frame, i)
        frame *= self._gain[i]
        k, ang = int(self._blur[i][0]), float(self._blur[i][1])
        if k >= 3:
            kern = np.zeros((k, k), np.float32)
            c = (k - 1) / 2
            dx, dy = np.cos(ang) * c, np.sin(ang) * c
            cv2.line(kern, (round(c - dx), round(c - dy)), (round(c + dx), round(c + dy)), 1.0, 1)
            frame = cv2.filter2D(frame, -1, kern / kern.sum())
        if self._noise > 0:
            g = np.random.default_rng([self._noise_seed, i])
            frame += g.normal(0, self._noise, frame.shape[:2] + (1,)).astype(np.float32)
        out = np.clip(frame, 0, 255).astype(np.uint8)
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(self._jpeg[i])])
        out = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)  # channel order is kept as is
        return (out, alpha) if with_alpha else out


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
class _Target:
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


def _draw_background(rng, corpus: Corpus, cfg: CompositeConfig, T: int, H: int, W: int):
    """Callable ``i -> frame``: a video of the corpus or a moving camera over one of its photos."""
    if corpus.videos and rng.random() < cfg.video_prob:
        return _video_background(rng, corpus, T, H, W)
    img = corpus.image(int(rng.integers(len(corpus.images))))
    return _photo_background(rng, img, T, H, W, cfg.camera)


def _draw_target(rng, corpus: Corpus, cfg: CompositeConfig, T: int, H: int, W: int) -> _Target:
    """The object: a cut from a photo, about ``side`` px in the source, ``base`` px in the frame,
    moved so that frame 0 shows all of it inside the image (or, with ``cfg.border_prob``, part
    of it past one edge)."""
    src = corpus.image(int(rng.integers(len(corpus.images))))
    base = rng.uniform(*cfg.size) * min(H, W)
    aspect0 = float(np.exp(rng.uniform(-0.7, 0.7)))
    patch = textured_cut(rng, src, int(rng.uniform(0.6, 1.4) * max(base, 24)), aspect0)
    rgba = _draw_cutout(rng, corpus, cfg)
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
        bx, by = _border_shift(rng, (x1 + dx, y1 + dy, x2 + dx, y2 + dy), W, H)
        dx, dy = dx + bx, dy + by
    layer.H = np.array([[1, 0, dx], [0, 1, dy], [0, 0, 1.0]]) @ layer.H
    centre = centre + [dx, dy]
    return _Target(layer, patch, rgba is not None, base, scale, aspect, rot, persp, centre, gain)


def _border_shift(rng, extent: tuple[float, ...], W: int, H: int) -> tuple[float, float]:
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


def _draw_distractor(rng, corpus: Corpus, target: _Target, T: int) -> Layer:
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


def _draw_occluder(
    rng, corpus: Corpus, cfg: CompositeConfig, target: _Target, first: bool, T: int
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
    rgba = None if full else _draw_cutout(rng, corpus, cfg)
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


def _draw_camera_effects(rng, cfg: CompositeConfig, centre: np.ndarray, T: int):
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


def make_composite_scene(
    corpus: Corpus,
    seed: int | np.random.Generator,
    config: CompositeConfig | str = "train",
    num_frames: int = 100,
    height: int = 288,
    width: int = 384,
    name: str = "composite",
    omit: tuple[str, ...] = (),
) -> CompositeScene:
    """Draw one composited sequence (frames are rendered by :meth:`CompositeScene.render`).

    Args:
        corpus: the photos and videos to draw from (one split).
        seed: integer seed or a ``numpy.random.Generator`` (advanced in place).
        config: a :class:`CompositeConfig` or a name of :data:`COMPOSITE_VARIANTS`.
        num_frames: ``T >= 2``.
        height / width: frame size ``H x W`` (>= 64).
        name: the sequence name.
        omit: layers drawn (the random stream is the same) but left out of the scene:
            ``"distractors"``, ``"occluders"``; for ablations and tests.

    Frame 0 shows the whole object unoccluded, inside the image (with ``border_prob``, past an
    edge in part). The pieces are drawn in a fixed order from one random stream (background,
    object, distractors, occluders, camera effects), so a seed always gives the same scene.
    """
    if isinstance(config, str):
        if config not in COMPOSITE_VARIANTS:
            raise ValueError(f"unknown composite variant {config!r}: {sorted(COMPOSITE_VARIANTS)}")
        config = COMPOSITE_VARIANTS[config]
    if num_frames < 2 or height < 64 or width < 64:
        raise ValueError(f"need >= 2 frames of at least 64x64, got {num_frames} x {height}x{width}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    cfg, T = config, num_frames
    background = _draw_background(rng, corpus, cfg, T, height, width)
    target = _draw_target(rng, corpus, cfg, T, height, width)
    below = []
    if rng.random() < cfg.distractor_prob:
        below = [_draw_distractor(rng, corpus, target, T) for _ in range(int(rng.integers(1, 3)))]
    above = []
    if rng.random() < cfg.occluder_prob:
        n_occ = int(rng.integers(1, 3))
        above = [_draw_occluder(rng, corpus, cfg, target, k == 0, T) for k in range(n_occ)]
    gain, blur, jpeg, noise = _draw_camera_effects(rng, cfg, target.centre, T)
    unknown = set(omit) - {"distractors", "occluders"}
    if unknown:
        raise ValueError(f"omit: unknown layers {sorted(unknown)}")
    below = [] if "distractors" in omit else below
    above = [] if "occluders" in omit else above
    return CompositeScene(
        name,
        (height, width),
        background,
        target.layer,
        below,
        above,
        gain,
        blur,
        jpeg,
        noise,
        int(rng.integers(2**31)),
    )


def write_composite_benchmark(
    corpus_root: str | Path,
    out: str | Path,
    variant: str = "plain",
    split: str = "test",
    num_sequences: int = 30,
    num_frames: int = 100,
    seed: int = 2024,
    height: int = 288,
    width: int = 384,
    progress: bool = True,
) -> list[Path]:
    """Write a held-out benchmark of composited sequences in the OTB layout.

    ``out/<name>/img/0001.jpg ...`` and ``out/<name>/groundtruth_rect.txt`` (comma ``x,y,w,h``,
    two decimals), plus ``out/list.txt``; ``mixformer evaluate --dataset generic --root OUT``
    runs it. Sequence ``k`` is named ``<variant>-KKK`` and drawn from seed ``(seed, k)``.

    Args:
        corpus_root: a corpus built by ``mixformer data corpus``.
        out: output folder.
        variant: ``plain`` or ``hard`` (or ``train``).
        split: the corpus split the images come from (``test``: never used in training).
        num_sequences / num_frames / seed / height / width: benchmark size and seed.
        progress: show a progress bar.
    """
    corpus = Corpus(corpus_root, split)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    folders = []
    for k in tqdm(range(num_sequences), desc=f"bench {variant}", unit="seq", disable=not progress):
        name = f"{variant}-{k:03d}"
        scene = make_composite_scene(
            corpus, np.random.default_rng([seed, k]), variant, num_frames, height, width, name
        )
        folder = out / name
        (folder / "img").mkdir(parents=True, exist_ok=True)
        for i in range(len(scene)):
            path = folder / "img" / f"{i + 1:04d}.jpg"
            if not cv2.imwrite(
                str(path),
                cv2.cvtColor(scene.render(i), cv2.COLOR_RGB2BGR),
                [cv2.IMWRITE_JPEG_QUALITY, 95],
            ):
                raise OSError(f"cannot write {path}")
        atomic_write_text(
            folder / "groundtruth_rect.txt",
            format_boxes(np.round(scene.boxes, 2), ",", integer=False),
        )
        folders.append(folder)
    atomic_write_text(out / "list.txt", "".join(f.name + "\n" for f in folders))
    log.info("wrote %d %s sequences to %s", len(folders), variant, out)
    return folders
