"""Training datasets: sequences of frames with boxes and visibility, read lazily (SPEC 3.3).

Every dataset exposes the same small interface (:class:`TrainDataset`): the number of
sequences, one sequence's annotation (boxes and visibility), and the decoded frames for a list
of frame ids. Frames are uint8 RGB ``(H, W, 3)``; boxes are float64 ``(x, y, w, h)`` pixels.

Readers: LaSOT (train split), GOT-10k (train-full / VOT-train / VOT-val splits), TrackingNet
(``TRAIN_0..11``), COCO 2017 (each non-crowd instance a one-frame sequence), the generic layout
(``root/<seq>/img/*.jpg`` + ``groundtruth.txt``), the on-the-fly synthetic generator and the
on-the-fly composites of real photos and video frames (:class:`CompositeTrainDataset`).
"""

from __future__ import annotations

import json
import logging
from abc import ABC, abstractmethod
from collections import OrderedDict
from importlib import resources
from pathlib import Path

import cv2
import numpy as np

from mixformer.data.frames import check_image_pixels, jpeg_truncated
from mixformer.data.io import read_boxes, read_flags
from mixformer.datagen.composite import (
    CompositeConfig,
    CompositeScene,
    Corpus,
    make_composite_scene,
)
from mixformer.datagen.synthetic import SyntheticScene, make_scene
from mixformer.geometry import boxes_in_image

log = logging.getLogger(__name__)

__all__ = [
    "CorruptImageError",
    "TrainDataset",
    "SyntheticTrainDataset",
    "CompositeTrainDataset",
    "LasotTrain",
    "Got10kTrain",
    "TrackingNetTrain",
    "Coco17Train",
    "GenericTrain",
    "build_dataset",
    "read_split",
]


class CorruptImageError(ValueError):
    """A frame file is missing or cannot be decoded; the sampler skips the sample."""


def read_split(name: str) -> list[str]:
    """Lines of a split file shipped in ``mixformer/data/splits`` (e.g. ``lasot_train_split``)."""
    res = resources.files("mixformer.data") / "splits" / f"{name}.txt"
    return [ln.strip() for ln in res.read_text().splitlines() if ln.strip()]


def _decode(path: Path) -> np.ndarray:
    try:
        check_image_pixels(path)
    except ValueError as exc:
        raise CorruptImageError(str(exc)) from None
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise CorruptImageError(f"cannot read image {path}")
    if jpeg_truncated(path):
        raise CorruptImageError(f"truncated JPEG (no end-of-image marker): {path}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _require_root(root: str | Path | None, what: str) -> Path:
    if not root:
        raise ValueError(f"{what}: no data root given (set data_roots.{what} in the config)")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise ValueError(f"{what}: dataset root {path} does not exist or is not a folder")
    return path


class TrainDataset(ABC):
    """A set of annotated sequences for training.

    Attributes:
        name: dataset name (as in the config).
        is_video: False for image datasets (COCO): all frames of a "sequence" are one image.
    """

    name: str = "dataset"
    is_video: bool = True

    @abstractmethod
    def __len__(self) -> int:
        """Number of sequences."""

    @abstractmethod
    def annotation(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """``(boxes (T, 4) float64 xywh, visible (T,) bool)`` of sequence ``index``."""

    def distractor_boxes(self, index: int, frame: int) -> np.ndarray:
        """``(K, 4)`` float64 xywh boxes of look-alike distractors in one frame (hard negatives
        for the score module); datasets that do not know any return ``(0, 4)``."""
        return np.zeros((0, 4))

    @abstractmethod
    def frames(self, index: int, ids: list[int]) -> list[np.ndarray]:
        """Decoded ``(H, W, 3)`` uint8 RGB frames ``ids`` of sequence ``index``.

        Raises:
            CorruptImageError: a frame file is missing or unreadable.
        """

    def _check_nonempty(self, root: Path) -> None:
        if len(self) == 0:
            raise ValueError(f"{self.name}: no usable sequences found under {root}")


class SyntheticTrainDataset(TrainDataset):
    """Sequences of :func:`mixformer.datagen.synthetic.generate_sequence`, drawn on demand.

    Sequence ``k`` is generated from the seed ``(seed, k)``; a few recent ones are cached.

    Args:
        num_sequences: size of the dataset.
        num_frames: frames per sequence.
        height / width: frame size.
        seed: base seed (use different seeds for training, validation and testing).
        cache: number of generated sequences kept in memory.
    """

    is_video = True

    def __init__(
        self,
        num_sequences: int = 2000,
        num_frames: int = 60,
        height: int = 240,
        width: int = 320,
        seed: int = 1,
        cache: int = 8,
        name: str = "synthetic",
    ) -> None:
        if num_sequences < 1:
            raise ValueError(f"{name}: num_sequences must be >= 1, got {num_sequences}")
        self.name = name
        self.num_sequences = num_sequences
        self.num_frames = num_frames
        self.size = (height, width)
        self.seed = seed
        self._cache: OrderedDict[int, SyntheticScene] = OrderedDict()
        self._cache_size = cache

    def __len__(self) -> int:
        return self.num_sequences

    def sequence(self, index: int) -> SyntheticScene:
        """The scene of sequence ``index`` (cached; frames are rendered when read)."""
        seq = self._cache.get(index)
        if seq is None:
            seq = self._make_scene(np.random.default_rng([self.seed, index]), index)
            self._cache[index] = seq
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(index)
        return seq

    def _make_scene(self, rng: np.random.Generator, index: int) -> SyntheticScene:
        return make_scene(rng, self.num_frames, *self.size, name=f"synth-{index:05d}")

    def annotation(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        seq = self.sequence(index)
        return seq.boxes, seq.visible

    def frames(self, index: int, ids: list[int]) -> list[np.ndarray]:
        seq = self.sequence(index)
        return [seq.render(i) for i in ids]


class CompositeTrainDataset(SyntheticTrainDataset):
    """Sequences of :func:`mixformer.datagen.composite.make_composite_scene` drawn on demand from
    one split of a real-image corpus (``mixformer data corpus``).

    Sequence ``k`` is drawn from the seed ``(seed, k)``; a few recent scenes are cached and only
    the frames a sample uses are rendered.

    Args:
        root: the corpus folder.
        split: corpus split (``train`` for training, ``val`` for validation).
        num_sequences / num_frames / height / width / seed: as for the synthetic dataset.
        variant: a :data:`mixformer.datagen.composite.COMPOSITE_VARIANTS` name or a
            :class:`~mixformer.datagen.composite.CompositeConfig`.
        cache: number of scenes kept in memory.
    """

    is_video = True

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        num_sequences: int = 2000,
        num_frames: int = 60,
        height: int = 240,
        width: int = 320,
        seed: int = 1,
        variant: str | CompositeConfig = "train",
        cache: int = 8,
        name: str = "composite",
    ) -> None:
        super().__init__(num_sequences, num_frames, height, width, seed, cache, name)
        self.corpus = Corpus(root, split)
        self.variant = variant

    def _make_scene(self, rng: np.random.Generator, index: int) -> CompositeScene:
        return make_composite_scene(
            self.corpus, rng, self.variant, self.num_frames, *self.size, name=f"comp-{index:05d}"
        )

    def annotation(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The scene's boxes clipped to the image (an object past an edge is labelled by its
        part inside, as in real datasets), and its visibility."""
        seq = self.sequence(index)
        return boxes_in_image(seq.boxes, *self.size), seq.visible

    def distractor_boxes(self, index: int, frame: int) -> np.ndarray:
        return self.sequence(index).distractor_boxes(frame)


class _FolderSequences(TrainDataset):
    """Shared code of the video readers: per-sequence frame paths + lazily read annotations."""

    def __init__(self) -> None:
        self._seqs: list[tuple[str, Path]] = []
        self._anno: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self._seqs)

    def annotation(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if index not in self._anno:
            self._anno[index] = self._read_annotation(index)
        return self._anno[index]

    @abstractmethod
    def _read_annotation(self, index: int) -> tuple[np.ndarray, np.ndarray]: ...

    @abstractmethod
    def _frame_path(self, index: int, frame_id: int) -> Path: ...

    def frames(self, index: int, ids: list[int]) -> list[np.ndarray]:
        return [_decode(self._frame_path(index, i)) for i in ids]

    def _add_annotated_folders(self, names: list[str]) -> None:
        """Register ``root/<name>`` for every name whose folder has a ``groundtruth.txt``."""
        for n in names:
            if (self.root / n / "groundtruth.txt").is_file():
                self._seqs.append((n, self.root / n))
        self._check_nonempty(self.root)


def _positive_size(boxes: np.ndarray) -> np.ndarray:
    return (boxes[:, 2] > 0) & (boxes[:, 3] > 0)


def _sequence_names(root: Path) -> list[str]:
    """Names listed in ``root/list.txt`` when it exists, else every sub-folder (sorted)."""
    list_file = root / "list.txt"
    if list_file.is_file():
        return [n.strip() for n in list_file.read_text().splitlines() if n.strip()]
    return sorted(p.name for p in root.iterdir() if p.is_dir())


def _boxes_and_absence(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """``groundtruth.txt`` boxes ``(T, 4)`` xywh and visibility ``(T,)`` (positive size, not
    flagged in ``absence.label`` when that file exists)."""
    boxes = read_boxes(folder / "groundtruth.txt")
    vis = _positive_size(boxes)
    if (folder / "absence.label").is_file():
        vis &= ~read_flags(folder / "absence.label").astype(bool)[: len(boxes)]
    return boxes, vis


class LasotTrain(_FolderSequences):
    """LaSOT training split: ``root/<class>/<class-idx>/{img, groundtruth.txt, ...}``.

    Visible: ``~full_occlusion & ~out_of_view & w > 0 & h > 0``.
    """

    name = "lasot"

    def __init__(self, root: str | Path, sequences: list[str] | None = None) -> None:
        super().__init__()
        self.root = _require_root(root, "lasot")
        names = sequences if sequences is not None else read_split("lasot_train_split")
        for n in names:
            folder = self.root / n.rsplit("-", 1)[0] / n
            if (folder / "groundtruth.txt").is_file():
                self._seqs.append((n, folder))
        if self._seqs and len(self._seqs) < len(names):
            log.warning(
                "lasot: %d of %d split sequences missing", len(names) - len(self._seqs), len(names)
            )
        self._check_nonempty(self.root)

    def _read_annotation(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        folder = self._seqs[index][1]
        boxes = read_boxes(folder / "groundtruth.txt")
        vis = _positive_size(boxes)
        for flag in ("full_occlusion.txt", "out_of_view.txt"):
            if (folder / flag).is_file():
                vis &= ~read_flags(folder / flag).astype(bool)[: len(boxes)]
        return boxes, vis

    def _frame_path(self, index: int, frame_id: int) -> Path:
        return self._seqs[index][1] / "img" / f"{frame_id + 1:08d}.jpg"


class Got10kTrain(_FolderSequences):
    """GOT-10k training set ``root/<seq>/{00000001.jpg, groundtruth.txt, absence.label, ...}``.

    Args:
        root: the ``got10k/train`` folder (holding ``list.txt``).
        split: ``train_full``, ``vot_train`` or ``vot_val`` (row indices into ``list.txt``).

    Visible: ``~absence & (cover > 0) & w > 0 & h > 0``.
    """

    def __init__(self, root: str | Path, split: str = "vot_train") -> None:
        super().__init__()
        splits = {"train_full", "vot_train", "vot_val", "train", "val"}
        if split not in splits:
            raise ValueError(f"got10k: unknown split {split!r} (one of {sorted(splits)})")
        self.name = f"got10k_{split.replace('_', '')}"
        self.root = _require_root(root, "got10k")
        all_names = _sequence_names(self.root)
        rows = [int(r) for r in read_split(f"got10k_{split}_split")]
        self._add_annotated_folders([all_names[r] for r in rows if r < len(all_names)])

    def _read_annotation(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        folder = self._seqs[index][1]
        boxes, vis = _boxes_and_absence(folder)
        if (folder / "cover.label").is_file():
            cover = np.loadtxt(folder / "cover.label", dtype=np.int64, ndmin=1)[: len(boxes)]
            vis &= cover > 0
        return boxes, vis

    def _frame_path(self, index: int, frame_id: int) -> Path:
        return self._seqs[index][1] / f"{frame_id + 1:08d}.jpg"


class TrackingNetTrain(_FolderSequences):
    """TrackingNet ``root/TRAIN_k/{anno/<vid>.txt, frames/<vid>/<i>.jpg}`` (``i`` from 0)."""

    name = "trackingnet"

    def __init__(self, root: str | Path, chunks: tuple[int, ...] = tuple(range(12))) -> None:
        super().__init__()
        self.root = _require_root(root, "trackingnet")
        for k in chunks:
            anno_dir = self.root / f"TRAIN_{k}" / "anno"
            if not anno_dir.is_dir():
                continue
            for a in sorted(anno_dir.glob("*.txt")):
                self._seqs.append((a.stem, self.root / f"TRAIN_{k}"))
        self._check_nonempty(self.root)

    def _read_annotation(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        name, chunk = self._seqs[index]
        boxes = read_boxes(chunk / "anno" / f"{name}.txt")
        return boxes, _positive_size(boxes)

    def _frame_path(self, index: int, frame_id: int) -> Path:
        name, chunk = self._seqs[index]
        return chunk / "frames" / name / f"{frame_id}.jpg"


class GenericTrain(_FolderSequences):
    """The generic layout ``root/<seq>/img/*.jpg`` + ``groundtruth.txt`` (+ ``absence.label``).

    Sequences are listed in ``root/list.txt`` when present, else every sub-folder.
    """

    name = "generic"

    def __init__(self, root: str | Path) -> None:
        super().__init__()
        self.root = _require_root(root, "generic")
        self._files: dict[int, list[Path]] = {}
        self._add_annotated_folders(_sequence_names(self.root))

    def _read_annotation(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        return _boxes_and_absence(self._seqs[index][1])

    def _frame_path(self, index: int, frame_id: int) -> Path:
        if index not in self._files:
            folder = self._seqs[index][1]
            img = folder / "img" if (folder / "img").is_dir() else folder
            self._files[index] = sorted(
                p for p in img.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")
            )
        files = self._files[index]
        if frame_id >= len(files):
            raise CorruptImageError(f"{self._seqs[index][1]}: frame {frame_id} missing")
        return files[frame_id]


class Coco17Train(TrainDataset):
    """COCO 2017: every non-crowd instance of ``instances_train2017.json`` is a one-frame sequence.

    All frames of such a sequence are the same image (SPEC 3.3). The ``w, h > 50`` visibility
    rule is not enforced for image datasets (SPEC 5, quirk 23).
    """

    name = "coco17"
    is_video = False

    def __init__(self, root: str | Path) -> None:
        self.root = _require_root(root, "coco")
        ann_file = self.root / "annotations" / "instances_train2017.json"
        if not ann_file.is_file():
            raise ValueError(f"coco17: {ann_file} not found")
        data = json.loads(ann_file.read_text())
        files = {img["id"]: img["file_name"] for img in data.get("images", [])}
        self._items = [
            (files[a["image_id"]], np.asarray(a["bbox"], dtype=np.float64))
            for a in data.get("annotations", [])
            if not a.get("iscrowd", 0) and a.get("image_id") in files
        ]
        if not self._items:
            raise ValueError(f"coco17: no usable annotations in {ann_file}")

    def __len__(self) -> int:
        return len(self._items)

    def annotation(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        box = self._items[index][1][None]
        return box, np.ones(1, dtype=bool)

    def frames(self, index: int, ids: list[int]) -> list[np.ndarray]:
        img = _decode(self.root / "train2017" / self._items[index][0])
        return [img for _ in ids]


def _root(roots: dict[str, str], name: str, family: str) -> str | None:
    return roots.get(name) or roots.get(family)


def build_dataset(
    name: str,
    roots: dict[str, str],
    synthetic: dict[str, int] | None = None,
    composite: dict | None = None,
) -> TrainDataset:
    """Construct the dataset called ``name`` in a training config.

    Args:
        name: one of ``synthetic``, ``lasot``, ``got10k_vottrain``, ``got10k_votval``,
            ``got10k_train_full``, ``trackingnet``, ``coco17``, ``generic``.
        roots: dataset name or family (``lasot``, ``got10k``, ``trackingnet``, ``coco``,
            ``generic``) -> folder.
        synthetic: keyword arguments of :class:`SyntheticTrainDataset`.
        composite: keyword arguments of :class:`CompositeTrainDataset` (``composite`` reads
            the corpus split ``train``, ``composite_val`` the split ``val``; the corpus folder
            is ``roots["corpus"]``).
    Raises:
        ValueError: unknown name, missing root, or no usable sequences.
    """
    if name == "synthetic":
        return SyntheticTrainDataset(**(synthetic or {}))
    if name in ("composite", "composite_val"):
        split = "val" if name == "composite_val" else "train"
        return CompositeTrainDataset(
            _require_root(roots.get("corpus"), "corpus"), split, name=name, **(composite or {})
        )
    if name == "lasot":
        return LasotTrain(_root(roots, name, "lasot"))
    if name.startswith("got10k_"):
        split = {
            "got10k_vottrain": "vot_train",
            "got10k_votval": "vot_val",
            "got10k_train_full": "train_full",
        }.get(name)
        if split is None:
            raise ValueError(f"unknown GOT-10k dataset {name!r}")
        return Got10kTrain(_root(roots, name, "got10k"), split)
    if name == "trackingnet":
        return TrackingNetTrain(_root(roots, name, "trackingnet"))
    if name == "coco17":
        return Coco17Train(_root(roots, name, "coco"))
    if name == "generic":
        return GenericTrain(_root(roots, name, "generic"))
    raise ValueError(f"unknown training dataset {name!r}")
