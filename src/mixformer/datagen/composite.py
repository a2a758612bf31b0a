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

import logging
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from mixformer.data.io import format_boxes
from mixformer.datagen.composite_config import COMPOSITE_VARIANTS, CompositeConfig
from mixformer.datagen.composite_draw import (
    draw_background,
    draw_camera_effects,
    draw_distractor,
    draw_occluder,
    draw_target,
)
from mixformer.datagen.layers import apply_homography
from mixformer.datagen.photo_corpus import Corpus, demo_photos
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
    background = draw_background(rng, corpus, cfg, T, height, width)
    target = draw_target(rng, corpus, cfg, T, height, width)
    below = []
    if rng.random() < cfg.distractor_prob:
        below = [draw_distractor(rng, corpus, target, T) for _ in range(int(rng.integers(1, 3)))]
    above = []
    if rng.random() < cfg.occluder_prob:
        n_occ = int(rng.integers(1, 3))
        above = [draw_occluder(rng, corpus, cfg, target, k == 0, T) for k in range(n_occ)]
    gain, blur, jpeg, noise = draw_camera_effects(rng, cfg, target.centre, T)
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
