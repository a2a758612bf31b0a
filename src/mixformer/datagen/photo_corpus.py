"""Reading a corpus folder (made by :func:`mixformer.datagen.corpus.build_corpus`): its photos,
cut-outs and video frames, one split at a time."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from mixformer.datagen.corpus import load_manifest

__all__ = ["Corpus", "demo_photos"]


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
