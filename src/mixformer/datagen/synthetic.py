"""Procedural tracking sequences: deterministic, fast, realistic enough to train and test on.

A textured target moves smoothly over a textured, slowly panning background, changes scale and
aspect ratio, passes behind occluding bars, may leave the view and come back, and is accompanied
by distractors built from the same colour palette. The ground truth is always the full target box
(also while it is hidden or partly outside the image); ``visible`` is False when less than half of
the target can be seen.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from mixformer.data.io import format_boxes
from mixformer.utils import atomic_write_text

log = logging.getLogger(__name__)

#: A target counts as visible when at least this fraction of its box area is seen.
VISIBLE_FRACTION = 0.5


@dataclass
class SyntheticSequence:
    """A generated sequence held in memory.

    Attributes:
        name: sequence name.
        frames: ``T`` frames, each ``(H, W, 3)`` uint8 RGB.
        boxes: ``(T, 4)`` float64 ``(x, y, w, h)`` pixel boxes of the whole target (integers
            stored as floats; may extend beyond the image).
        visible: ``(T,)`` bool, False when the target is mostly occluded or out of view.
    """

    name: str
    frames: list[np.ndarray]
    boxes: np.ndarray
    visible: np.ndarray

    def __len__(self) -> int:
        return len(self.frames)


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """``(h, w, 3)`` float32 colour noise in [0, 1] with about ``cells`` blobs per side."""
    small = rng.random((cells, max(2, cells * w // max(h, 1)), 3), dtype=np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 1)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    base = rng.random(3, dtype=np.float32) * 0.6 + 0.2
    tex = 0.55 * _smooth_noise(rng, h, w, int(rng.integers(3, 7)))
    tex += 0.30 * _smooth_noise(rng, h, w, int(rng.integers(12, 30)))
    tex += 0.15 * rng.random((h, w, 1), dtype=np.float32)
    img = 0.5 * base + 0.5 * tex
    return (img.clip(0, 1) * 255).astype(np.uint8)


def _pattern(rng: np.random.Generator, palette: np.ndarray, size: int = 48) -> np.ndarray:
    """A ``(size, size, 3)`` uint8 patch: a coloured grid with a dark frame and a stripe."""
    n = int(rng.integers(3, 5))
    grid = palette[rng.integers(0, len(palette), (n, n))]
    patch = cv2.resize(grid, (size, size), interpolation=cv2.INTER_NEAREST)
    b = max(2, size // 12)
    patch[:b], patch[-b:], patch[:, :b], patch[:, -b:] = 30, 30, 30, 30
    c = int(rng.integers(b, size - 2 * b))
    patch[c : c + b, :] = palette[int(rng.integers(0, len(palette)))]
    return patch


def _trajectory(
    rng: np.random.Generator, t: np.ndarray, extent: int, size: np.ndarray, leave: bool
) -> np.ndarray:
    """Centre coordinate along one axis for a box of per-frame ``size``.

    A sum of slow sinusoids plus a smoothed random walk keeps the box inside ``[0, extent]``;
    with ``leave`` the centre makes one excursion beyond the nearest border (the box leaves the
    view) and comes back, never in the first 30 % of the sequence.
    """
    T = len(t)
    room = np.maximum(extent - size, 0) / 2
    phase = 2 * np.pi * t
    s = 0.7 * np.sin(rng.uniform(0.3, 1.2) * phase + rng.uniform(0, 2 * np.pi))
    s += 0.3 * np.sin(rng.uniform(1.0, 2.5) * phase + rng.uniform(0, 2 * np.pi))
    k = min(5, T)
    walk = np.convolve(np.cumsum(rng.normal(0, 0.05, T)), np.ones(k) / k, mode="same")
    c = extent / 2 + 0.95 * room * np.clip(s + walk, -1, 1)
    if leave and T >= 10:
        mid = int(rng.integers(int(0.4 * T), int(0.85 * T)))
        half = max(2, int(rng.uniform(0.06, 0.12) * T))
        idx = np.arange(T)
        window = np.where(np.abs(idx - mid) < half, np.cos(0.5 * np.pi * (idx - mid) / half), 0)
        side = 1.0 if c[mid] >= extent / 2 else -1.0
        beyond = extent / 2 + side * (extent / 2 + rng.uniform(0.6, 1.0) * size)
        c = c + window**2 * (beyond - c)
    return c


def _paste(canvas: np.ndarray, patch: np.ndarray, x: int, y: int) -> tuple[int, int, int, int]:
    """Copy ``patch`` with its top-left at ``(x, y)``; returns the clipped ``x1, y1, x2, y2``."""
    H, W = canvas.shape[:2]
    h, w = patch.shape[:2]
    x1, y1, x2, y2 = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
    if x2 > x1 and y2 > y1:
        canvas[y1:y2, x1:x2] = patch[y1 - y : y2 - y, x1 - x : x2 - x]
    return x1, y1, x2, y2


@dataclass(frozen=True)
class _Occluder:
    vertical: bool
    thick: int
    pos: np.ndarray  # (T,) int, top/left edge per frame (far off screen when absent)
    bar: np.ndarray  # (H, thick, 3) or (thick, W, 3) uint8

    def span(self, i: int, size: tuple[int, int]) -> tuple[int, int, int]:
        """``(p, a, b)``: the bar's edge in frame ``i`` and its in-image extent ``[a, b)``
        along the axis it moves on (``b <= a`` when it is off screen)."""
        p = int(self.pos[i])
        return p, max(p, 0), min(p + self.thick, size[1] if self.vertical else size[0])


class SyntheticScene:
    """The drawn-once parts of a synthetic sequence; frames are rendered on demand.

    :func:`generate_sequence` renders every frame; training reads only the few frames it
    samples (:meth:`render`), which is what makes on-the-fly synthetic training data cheap.
    Use :func:`make_scene` to build one.

    Attributes:
        name: sequence name.
        boxes: ``(T, 4)`` float64 ``(x, y, w, h)`` pixel boxes of the whole target.
        visible: ``(T,)`` bool, False when less than half of the target can be seen.
    """

    def __init__(
        self,
        name: str,
        size: tuple[int, int],
        background: np.ndarray,
        pan: np.ndarray,
        target: np.ndarray,
        boxes: np.ndarray,
        distractors: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
        occluders: list[_Occluder],
        gain: np.ndarray,
        noise: np.ndarray,
    ) -> None:
        self.name = name
        self._size = size
        self._bg, self._pan, self._target = background, pan, target
        self.boxes = boxes.astype(np.float64)  # integers stored as floats
        self._distractors, self._occluders = distractors, occluders
        self._gain, self._noise = gain, noise
        self._noise_cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.visible = np.array([self._visible(i) for i in range(len(boxes))], dtype=bool)

    def __len__(self) -> int:
        return len(self.boxes)

    def _visible(self, i: int) -> bool:
        """Whether at least :data:`VISIBLE_FRACTION` of the target is seen in frame ``i``."""
        H, W = self._size
        x, y, w, h = (int(v) for v in self.boxes[i])
        seen_x = np.zeros(W, dtype=bool)
        seen_y = np.zeros(H, dtype=bool)
        seen_x[max(x, 0) : max(min(x + w, W), 0)] = True
        seen_y[max(y, 0) : max(min(y + h, H), 0)] = True
        for occ in self._occluders:
            _, a, b = occ.span(i, self._size)
            if b > a:
                (seen_x if occ.vertical else seen_y)[a:b] = False
        return bool(seen_x.sum() * seen_y.sum() >= VISIBLE_FRACTION * w * h)

    def _noise_pair(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        pair = self._noise_cache.get(k)
        if pair is None:
            n = self._noise[k]
            pair = (
                np.repeat(n.clip(0, 255), 3, axis=2).astype(np.uint8),
                np.repeat((-n).clip(0, 255), 3, axis=2).astype(np.uint8),
            )
            self._noise_cache[k] = pair
        return pair

    def render(self, i: int) -> np.ndarray:
        """Frame ``i`` as ``(H, W, 3)`` uint8 RGB (the same pixels every call)."""
        if not 0 <= i < len(self):
            raise IndexError(f"frame {i} out of range for {len(self)} frames")
        H, W = self._size
        px, py = (int(v) for v in self._pan[i])
        frame = self._bg[py : py + H, px : px + W].copy()
        for patch, dx, dy in self._distractors:
            _paste(frame, patch, int(dx[i]), int(dy[i]))
        x, y, w, h = (int(v) for v in self.boxes[i])
        _paste(frame, cv2.resize(self._target, (w, h), interpolation=cv2.INTER_LINEAR), x, y)
        for occ in self._occluders:
            p, a, b = occ.span(i, self._size)
            if b > a:
                if occ.vertical:
                    frame[:, a:b] = occ.bar[:, a - p : b - p]
                else:
                    frame[a:b] = occ.bar[a - p : b - p]
        frame = cv2.convertScaleAbs(frame, alpha=float(self._gain[i]))
        up, down = self._noise_pair(i % len(self._noise))
        return cv2.subtract(cv2.add(frame, up), down)

    def sequence(self) -> SyntheticSequence:
        """Every frame rendered: the :class:`SyntheticSequence`."""
        frames = [self.render(i) for i in range(len(self))]
        return SyntheticSequence(self.name, frames, self.boxes.copy(), self.visible.copy())


def make_scene(
    seed: int | np.random.Generator,
    num_frames: int = 100,
    height: int = 240,
    width: int = 320,
    name: str = "synthetic",
) -> SyntheticScene:
    """Draw a sequence's scene without rendering its frames (arguments of
    :func:`generate_sequence`, which renders exactly these frames)."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if height < 32 or width < 32:
        raise ValueError(f"frames must be at least 32x32, got {height}x{width}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    T, H, W = num_frames, height, width
    t = np.linspace(0.0, 1.0, T) if T > 1 else np.zeros(1)

    pan = int(0.15 * max(H, W)) + 1
    bg = _background(rng, H + 2 * pan, W + 2 * pan)
    pan_x = np.round(pan + pan * 0.9 * np.sin(2 * np.pi * rng.uniform(0.2, 0.8) * t)).astype(int)
    pan_y = np.round(pan + pan * 0.5 * np.sin(2 * np.pi * rng.uniform(0.2, 0.8) * t)).astype(int)

    palette = (rng.random((6, 3)) * 220 + 20).astype(np.uint8)
    target = _pattern(rng, palette)

    # Target size: a base size with slow scale and aspect-ratio changes.
    base = rng.uniform(0.12, 0.25) * min(H, W)
    scale = np.exp(rng.uniform(0.15, 0.4) * np.sin(2 * np.pi * rng.uniform(0.3, 1.0) * t))
    aspect0 = rng.uniform(0.6, 1.6)
    aspect = aspect0 * np.exp(0.25 * np.sin(2 * np.pi * rng.uniform(0.3, 1.0) * t + 1.0))
    aspect = aspect / aspect[0] * aspect0
    bw = np.maximum(np.round(base * scale * np.sqrt(aspect)), 6).astype(int)
    bh = np.maximum(np.round(base * scale / np.sqrt(aspect)), 6).astype(int)
    leave_axis = int(rng.integers(0, 2)) if rng.random() < 0.4 else -1
    cx = _trajectory(rng, t, W, bw, leave_axis == 0)
    cy = _trajectory(rng, t, H, bh, leave_axis == 1)
    bx = np.round(cx - bw / 2).astype(int)
    by = np.round(cy - bh / 2).astype(int)
    # Frame 0 must show the whole target.
    bx[0] = int(np.clip(bx[0], 1, W - bw[0] - 1))
    by[0] = int(np.clip(by[0], 1, H - bh[0] - 1))

    # Distractors: same palette, different layout, their own paths.
    distractors = []
    for _ in range(int(rng.integers(1, 4))):
        s = rng.uniform(0.7, 1.2)
        dw, dh = max(int(bw[0] * s), 6), max(int(bh[0] * s), 6)
        dx = _trajectory(rng, t, W, dw, False) - dw / 2
        dy = _trajectory(rng, t, H, dh, False) - dh / 2
        patch = cv2.resize(_pattern(rng, palette), (dw, dh), interpolation=cv2.INTER_LINEAR)
        distractors.append((patch, np.round(dx).astype(int), np.round(dy).astype(int)))

    # Occluders: bars that sweep once across the view, entering after frame 0.
    occluders = []
    for _ in range(int(rng.integers(1, 3))):
        vertical = rng.random() < 0.5
        thick = max(2, int(rng.uniform(0.4, 0.9) * (bw[0] if vertical else bh[0])))
        extent = W if vertical else H
        t0, dur = rng.uniform(0.05, 0.6), rng.uniform(0.3, 0.6)
        u = np.clip((t - t0) / dur, 0.0, 1.0)
        u = np.where((t > t0) & (t < t0 + dur), u, -1.0)  # -1: off screen
        if rng.random() < 0.5:
            u = np.where(u >= 0, 1.0 - u, u)
        pos = np.where(u >= 0, np.round(-thick + u * (extent + thick)), -10 * thick - extent)
        color = (rng.random(3) * 200 + 30).astype(np.uint8)
        tex = _smooth_noise(rng, H if vertical else thick, thick if vertical else W, 4) * 60
        bar = np.clip(color[None, None, :].astype(np.float32) + tex - 30, 0, 255).astype(np.uint8)
        occluders.append(_Occluder(vertical, thick, pos.astype(int), bar))

    gain = 1.0 + 0.15 * np.sin(2 * np.pi * rng.uniform(0.5, 2.0) * t + rng.uniform(0, 6))
    noise = rng.normal(0, 5, (4, H, W, 1)).round()
    return SyntheticScene(
        name,
        (H, W),
        bg,
        np.stack([pan_x, pan_y], axis=1),
        target,
        np.stack([bx, by, bw, bh], axis=1),
        distractors,
        occluders,
        gain,
        noise,
    )


def generate_sequence(
    seed: int | np.random.Generator,
    num_frames: int = 100,
    height: int = 240,
    width: int = 320,
    name: str = "synthetic",
) -> SyntheticSequence:
    """Generate one sequence; the same seed always gives the same frames and boxes.

    Args:
        seed: integer seed or a ``numpy.random.Generator`` (advanced in place).
        num_frames: number of frames ``T >= 1``.
        height: frame height ``H`` in pixels (>= 32).
        width: frame width ``W`` in pixels (>= 32).
        name: the sequence name.

    Returns:
        A :class:`SyntheticSequence`; frame 0 always shows the whole target unoccluded.

    Example:
        >>> seq = generate_sequence(0, num_frames=10, height=96, width=128)
        >>> seq.frames[0].shape, seq.boxes.shape
        ((96, 128, 3), (10, 4))
    """
    return make_scene(seed, num_frames, height, width, name).sequence()


def write_sequence(seq: SyntheticSequence, folder: str | Path, jpeg_quality: int = 95) -> Path:
    """Write ``seq`` in the generic layout.

    Creates ``folder/img/00000001.jpg ...``, ``folder/groundtruth.txt`` (comma ``x,y,w,h``)
    and ``folder/absence.label`` (one ``0``/``1`` per frame, 1 = target not visible; the GOT-10k
    convention). The annotation files are written atomically, last.

    Returns:
        ``folder``.
    """
    folder = Path(folder)
    img_dir = folder / "img"
    img_dir.mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]
    for i, frame in enumerate(seq.frames, start=1):
        path = img_dir / f"{i:08d}.jpg"
        if not cv2.imwrite(str(path), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), params):
            raise OSError(f"cannot write {path}")
    atomic_write_text(folder / "absence.label", "".join(f"{int(not v)}\n" for v in seq.visible))
    atomic_write_text(folder / "groundtruth.txt", format_boxes(seq.boxes, ",", integer=True))
    return folder


def write_benchmark(
    root: str | Path,
    num_sequences: int,
    num_frames: int,
    seed: int,
    height: int = 240,
    width: int = 320,
    progress: bool = True,
) -> list[Path]:
    """Write a synthetic benchmark in the generic layout under ``root``.

    Sequence ``k`` is named ``synth-KKKK`` and generated from seed ``(seed, k)``, so a benchmark
    with more sequences extends a smaller one with the same seed. ``root/list.txt`` lists the
    sequence names, one per line.

    Args:
        root: output folder (created).
        num_sequences: number of sequences (>= 1).
        num_frames: frames per sequence (>= 1).
        seed: base seed.
        height: frame height in pixels.
        width: frame width in pixels.
        progress: show a tqdm progress bar.

    Returns:
        The sequence folders.
    """
    if num_sequences < 1:
        raise ValueError(f"num_sequences must be >= 1, got {num_sequences}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    folders = []
    for k in tqdm(range(num_sequences), desc="synth", unit="seq", disable=not progress):
        name = f"synth-{k:04d}"
        rng = np.random.default_rng([seed, k])
        seq = generate_sequence(rng, num_frames, height, width, name=name)
        folders.append(write_sequence(seq, root / name))
    atomic_write_text(root / "list.txt", "".join(f.name + "\n" for f in folders))
    log.info("wrote %d synthetic sequences to %s", len(folders), root)
    return folders
