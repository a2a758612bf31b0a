"""Readers for tracking benchmarks on disk (SPEC 4.2): each yields :class:`Sequence` objects.

Every reader validates its whole folder before returning, so a malformed benchmark (missing
frames, ground truth shorter or longer than the frames, an unparsable row) fails with an error
naming the file and line before any tracking starts.

Layouts (``root`` is what ``mixformer evaluate --root`` receives):

========== ===================================================================================
lasot      ``<class>/<class-idx>/img/%08d.jpg``, ``groundtruth.txt``, ``full_occlusion.txt``,
           ``out_of_view.txt``; the 280 test sequences of ``eval_sequence_lists.json``
got10k_val ``[val/]list.txt``, ``<seq>/*.jpg``, ``groundtruth.txt``, ``absence.label``,
           ``cover.label``
got10k_test ``[test/]list.txt``, ``<seq>/*.jpg``, ``groundtruth.txt`` (first row only)
trackingnet ``[TEST/]frames/<seq>/<i>.jpg`` and ``[TEST/]anno/<seq>.txt`` (first row only)
otb, uav,  tables of ``eval_sequence_lists.json``: frame ``path``, ``startFrame``..``endFrame``
nfs        with ``nz`` digits, ``anno_path`` (OTB drops ``initOmit`` leading frames and rows)
tnl2k      ``<seq>/imgs/*`` (or ``img/``) and ``<seq>/groundtruth.txt``
vot        ``[sequences/]list.txt``, ``<seq>/color/*.jpg`` (or frames directly),
           ``groundtruth.txt`` with 4 values or 8 polygon corners per row (NaN: target absent)
generic    ``[list.txt]``, ``<seq>/[img/]*.jpg``, ``groundtruth.txt``, optional ``absence.label``
========== ===================================================================================
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from mixformer.data.frames import IMAGE_SUFFIXES
from mixformer.data.io import polygon_to_xywh, read_boxes, read_labels, read_rows
from mixformer.data.sequence import Sequence

log = logging.getLogger(__name__)


@cache
def sequence_lists() -> dict[str, Any]:
    """The reference's hard-coded sequence tables (package data ``eval_sequence_lists.json``).

    Returns:
        ``{"lasot": [names], "otb" | "uav" | "nfs": [{"name", "path", "startFrame", "endFrame",
        "nz", "ext", "anno_path", ...}]}``.
    """
    text = resources.files("mixformer.data").joinpath("splits/eval_sequence_lists.json").read_text()
    return json.loads(text)


# --------------------------------------------------------------------------- helpers


def _natural_key(p: Path) -> tuple:
    """Numbers first in numeric order (``2.jpg`` before ``10.jpg``), then other names."""
    return (0, int(p.stem), "") if p.stem.isdigit() else (1, 0, p.stem)


def _frame_dir_error(path: Path) -> ValueError:
    return ValueError(f"{path}: a directory named like a frame; frames must be image files")


def _image_files(folder: Path, sort: str = "natural") -> list[Path]:
    if not folder.is_dir():
        raise ValueError(f"frame folder not found: {folder}")
    files = []
    for p in folder.iterdir():
        if p.suffix.lower() in IMAGE_SUFFIXES:
            if p.is_dir():
                raise _frame_dir_error(p)
            if p.is_file():
                files.append(p)
    if not files:
        raise ValueError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    if sort == "int":
        bad = [p.name for p in files if not p.stem.isdigit()]
        if bad:
            raise ValueError(f"{folder}: frame file names must be integers, found {bad[0]!r}")
        return sorted(files, key=lambda p: int(p.stem))
    if sort == "name":
        return sorted(files)
    return sorted(files, key=_natural_key)


def _frame_names(folder: Path) -> set[str]:
    """Names of the files in ``folder``; a directory named like a frame is an error."""
    names = set()
    for p in folder.iterdir():
        if p.is_dir():
            if p.suffix.lower() in IMAGE_SUFFIXES:
                raise _frame_dir_error(p)
        else:
            names.add(p.name)
    return names


def _check_length(gt: np.ndarray, frames: list[Path], gt_path: Path, folder: Path) -> None:
    n, m = len(gt), len(frames)
    if n > m:
        raise ValueError(
            f"{gt_path}:{m + 1}: ground truth has {n} rows but {folder} has only {m} frames"
        )
    if n < m:
        raise ValueError(
            f"{gt_path}:{n + 1}: ground truth ends after {n} rows but {folder} has {m} frames"
        )


def _check_init_box(gt: np.ndarray, gt_path: Path) -> None:
    if len(gt) == 0:
        raise ValueError(f"{gt_path}: empty ground-truth file")
    x, y, w, h = gt[0]
    if not np.isfinite(gt[0]).all() or w <= 0 or h <= 0:
        raise ValueError(
            f"{gt_path}:1: the first box must be finite with w, h > 0 (the tracker starts from "
            f"it), got {gt[0].tolist()}"
        )


def _check_flags(flags: np.ndarray, n: int, path: Path) -> None:
    if len(flags) != n:
        raise ValueError(f"{path}: {len(flags)} labels for {n} frames")


def _read_list(path: Path) -> list[str]:
    names: dict[str, int] = {}
    for i, line in enumerate(path.read_text().splitlines(), start=1):
        name = line.strip()
        if not name:
            continue
        if "/" in name or "\\" in name or name in (".", ".."):
            raise ValueError(f"{path}:{i}: invalid sequence name {name!r}")
        if name in names:
            raise ValueError(f"{path}:{i}: duplicate sequence {name} (first on line {names[name]})")
        names[name] = i
    if not names:
        raise ValueError(f"{path}: empty sequence list")
    return list(names)


def _listed_folders(root: Path, list_file: Path | None) -> list[tuple[str, Path]]:
    """``(name, folder)`` of the sequences of ``root``: from ``list.txt`` or every subfolder."""
    if list_file is not None and list_file.is_file():
        out = []
        lines = list_file.read_text().splitlines()
        for name in _read_list(list_file):
            folder = root / name
            if not folder.is_dir():
                line = next(i for i, s in enumerate(lines, 1) if s.strip() == name)
                raise ValueError(f"{list_file}:{line}: sequence folder not found: {folder}")
            out.append((name, folder))
        return out
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    out = [(p.name, p) for p in folders if (p / "groundtruth.txt").is_file()]
    if not out:
        raise ValueError(f"{root}: no sequence folders with a groundtruth.txt (and no list.txt)")
    return out


def _require_root(root: Path) -> Path:
    root = Path(root).expanduser()
    if not root.is_dir():
        raise ValueError(f"benchmark root not found or not a folder: {root}")
    return root


def _select(items: list, names: Iterable[str] | None, key: Callable[[Any], str], what: str) -> list:
    if names is None:
        return items
    wanted = list(names)
    dup = next((n for i, n in enumerate(wanted) if n in wanted[:i]), None)
    if dup is not None:
        raise ValueError(f"{what}: duplicate sequence {dup} in the selection")
    by_name = {key(x): x for x in items}
    missing = [n for n in wanted if n not in by_name]
    if missing:
        raise ValueError(f"{what}: unknown sequence(s) {', '.join(missing[:5])}")
    return [by_name[n] for n in wanted]


# --------------------------------------------------------------------------- readers


def read_lasot(root: str | Path, sequences: Iterable[str] | None = None) -> list[Sequence]:
    """LaSOT test set: ``root/<class>/<class-idx>/img/%08d.jpg`` (frames ``1..N``, N = GT rows).

    Visibility is ``~(full_occlusion | out_of_view)``.
    """
    root = _require_root(root)
    names = _select(sequence_lists()["lasot"], sequences, str, "lasot")
    out = []
    for name in names:
        folder = root / name.rsplit("-", 1)[0] / name
        gt_path = folder / "groundtruth.txt"
        if not gt_path.is_file() and (folder / "groundtruth_rect.txt").is_file():
            gt_path = folder / "groundtruth_rect.txt"  # the OTB layout
        gt = read_boxes(gt_path)
        _check_init_box(gt, gt_path)
        img = folder / "img"
        if not img.is_dir():
            raise ValueError(f"LaSOT {name}: frame folder not found: {img}")
        present = _frame_names(img)
        frames = [img / f"{i:08d}.jpg" for i in range(1, len(gt) + 1)]
        for i, f in enumerate(frames, start=1):
            if f.name not in present:
                raise ValueError(
                    f"{gt_path}:{i}: frame {f} is missing (ground truth has {len(gt)} rows)"
                )
        extra = sum(1 for p in present if p.endswith(".jpg")) - len(frames)
        if extra > 0:
            raise ValueError(
                f"{gt_path}:{len(gt) + 1}: ground truth ends after {len(gt)} rows but {img} has "
                f"{len(gt) + extra} frames"
            )
        occ_path, oov_path = folder / "full_occlusion.txt", folder / "out_of_view.txt"
        occ, oov = read_labels(occ_path) != 0, read_labels(oov_path) != 0
        _check_flags(occ, len(gt), occ_path)
        _check_flags(oov, len(gt), oov_path)
        out.append(
            Sequence(name, frames, gt, ~(occ | oov), "lasot", object_class=name.rsplit("-", 1)[0])
        )
    return out


def _got10k_split_root(root: Path, split: str) -> Path:
    if (root / split / "list.txt").is_file():
        return root / split
    if (root / "list.txt").is_file():
        return root
    raise ValueError(f"GOT-10k {split}: no list.txt in {root / split} or {root}")


def _read_got10k(root: str | Path, split: str, sequences: Iterable[str] | None) -> list[Sequence]:
    base = _got10k_split_root(_require_root(root), split)
    items = _select(_listed_folders(base, base / "list.txt"), sequences, lambda x: x[0], split)
    out = []
    for name, folder in items:
        frames = _image_files(folder, sort="int")
        gt_path = folder / "groundtruth.txt"
        if not gt_path.is_file() and (folder / "groundtruth_rect.txt").is_file():
            gt_path = folder / "groundtruth_rect.txt"  # the OTB layout
        gt = read_boxes(gt_path)
        _check_init_box(gt, gt_path)
        visible = None
        if split == "test":
            if len(gt) != 1:
                _check_length(gt, frames, gt_path, folder)
            gt = np.concatenate([gt[:1], np.full((len(frames) - 1, 4), np.nan)])
        else:
            _check_length(gt, frames, gt_path, folder)
            cover, absence = folder / "cover.label", folder / "absence.label"
            if cover.is_file():
                c = read_labels(cover)
                _check_flags(c, len(frames), cover)
                visible = c > 0
            elif absence.is_file():
                a = read_labels(absence, allowed=(0, 1))
                _check_flags(a, len(frames), absence)
                visible = a == 0
        out.append(Sequence(name, frames, gt, visible, f"got10k_{split}"))
    return out


def read_got10k_val(root: str | Path, sequences: Iterable[str] | None = None) -> list[Sequence]:
    """GOT-10k validation split (visibility from ``cover.label``, else ``absence.label``)."""
    return _read_got10k(root, "val", sequences)


def read_got10k_test(root: str | Path, sequences: Iterable[str] | None = None) -> list[Sequence]:
    """GOT-10k test split: only the first box is known (rows ``1..T-1`` are NaN)."""
    return _read_got10k(root, "test", sequences)


def read_trackingnet(root: str | Path, sequences: Iterable[str] | None = None) -> list[Sequence]:
    """TrackingNet TEST: ``frames/<seq>/<i>.jpg``, ``anno/<seq>.txt`` (first row, or all rows)."""
    root = _require_root(root)
    base = root / "TEST" if (root / "TEST" / "anno").is_dir() else root
    anno = base / "anno"
    if not anno.is_dir():
        raise ValueError(f"TrackingNet: annotation folder not found: {root / 'TEST' / 'anno'}")
    names = sorted(p.stem for p in anno.glob("*.txt"))
    if not names:
        raise ValueError(f"TrackingNet: no <seq>.txt files in {anno}")
    out = []
    for name in _select(names, sequences, str, "trackingnet"):
        folder = base / "frames" / name
        frames = _image_files(folder, sort="int")
        gt_path = anno / f"{name}.txt"
        gt = read_boxes(gt_path)
        _check_init_box(gt, gt_path)
        if len(gt) != 1:
            _check_length(gt, frames, gt_path, folder)
        else:
            gt = np.concatenate([gt, np.full((len(frames) - 1, 4), np.nan)])
        out.append(Sequence(name, frames, gt, None, "trackingnet"))
    return out


def _read_table(
    root: str | Path, key: str, sequences: Iterable[str] | None, allow_nan: bool
) -> list[Sequence]:
    root = _require_root(root)
    out = []
    for e in _select(sequence_lists()[key], sequences, lambda x: x["name"], key):
        omit = int(e.get("initOmit", 0))
        nums = range(int(e["startFrame"]) + omit, int(e["endFrame"]) + 1)
        folder = root / e["path"]
        frames = [folder / f"{i:0{e['nz']}d}.{e['ext']}" for i in nums]
        gt_path = root / e["anno_path"]
        gt = read_boxes(gt_path)[omit:]
        if not allow_nan and np.isnan(gt).any():
            line = int(np.isnan(gt).any(axis=1).argmax()) + omit + 1
            raise ValueError(f"{gt_path}:{line}: NaN box")
        _check_init_box(gt, gt_path)
        if len(gt) != len(frames):
            n, m = len(gt), len(frames)
            raise ValueError(
                f"{gt_path}:{min(n, m) + omit + 1}: ground truth has {n} rows (after dropping "
                f"{omit}) but {key} {e['name']} has {m} frames ({nums.start}..{nums.stop - 1})"
            )
        if not folder.is_dir():
            raise ValueError(f"{key} {e['name']}: frame folder not found: {folder}")
        present = _frame_names(folder)
        for i, f in enumerate(frames):
            if f.name not in present:
                raise ValueError(f"{gt_path}:{i + omit + 1}: frame {f} is missing")
        out.append(Sequence(e["name"], frames, gt, None, key, e.get("object_class", "")))
    return out


def read_otb(root: str | Path, sequences: Iterable[str] | None = None) -> list[Sequence]:
    """OTB100 (the reference's 100-entry table, including start offsets and ``initOmit``)."""
    return _read_table(root, "otb", sequences, allow_nan=False)


def read_uav(root: str | Path, sequences: Iterable[str] | None = None) -> list[Sequence]:
    """UAV123 (123 entries incl. sub-sequences; NaN ground-truth rows mark absent targets)."""
    return _read_table(root, "uav", sequences, allow_nan=True)


def read_nfs(root: str | Path, sequences: Iterable[str] | None = None) -> list[Sequence]:
    """NfS-30 (100 entries; ``sequences/<name>/%05d.jpg``, ``anno/nfs_<name>.txt``)."""
    return _read_table(root, "nfs", sequences, allow_nan=False)


def _frames_in(folder: Path, subdirs: tuple[str, ...], sort: str = "natural") -> tuple[Path, list]:
    for sub in subdirs:
        if (folder / sub).is_dir():
            return folder / sub, _image_files(folder / sub, sort)
    return folder, _image_files(folder, sort)


def read_tnl2k(root: str | Path, sequences: Iterable[str] | None = None) -> list[Sequence]:
    """TNL2K test set: ``<seq>/imgs/*`` (sorted by name) and ``<seq>/groundtruth.txt``.

    The reference has no TNL2K test loader; this follows its training loader. Every frame
    counts as visible; boxes with zero size are invalid frames in the metrics.
    """
    root = _require_root(root)
    items = _select(_listed_folders(root, root / "list.txt"), sequences, lambda x: x[0], "tnl2k")
    out = []
    for name, folder in items:
        img_dir, frames = _frames_in(folder, ("imgs", "img"), sort="natural")
        gt_path = folder / "groundtruth.txt"
        if not gt_path.is_file() and (folder / "groundtruth_rect.txt").is_file():
            gt_path = folder / "groundtruth_rect.txt"  # the OTB layout
        gt = read_boxes(gt_path)
        _check_init_box(gt, gt_path)
        _check_length(gt, frames, gt_path, img_dir)
        out.append(Sequence(name, frames, gt, None, "tnl2k"))
    return out


def read_vot(root: str | Path, sequences: Iterable[str] | None = None) -> list[Sequence]:
    """A VOT-style folder: ``list.txt``, ``<seq>/color/*`` (or frames), ``groundtruth.txt``.

    Rows may hold ``x, y, w, h`` or 8 polygon corners (turned into the enclosing box). NaN rows
    (VOT-LT: target absent) make the frame invisible. Mask annotations are not supported.
    """
    root = _require_root(root)
    if not (root / "list.txt").is_file() and (root / "sequences" / "list.txt").is_file():
        root = root / "sequences"  # a VOT toolkit workspace
    items = _select(_listed_folders(root, root / "list.txt"), sequences, lambda x: x[0], "vot")
    out = []
    for name, folder in items:
        img_dir, frames = _frames_in(folder, ("color", "img"))
        gt_path = folder / "groundtruth.txt"
        first = gt_path.read_text().lstrip()[:1] if gt_path.is_file() else ""
        if first == "m":
            raise ValueError(f"{gt_path}:1: mask annotations (VOT2020+) are not supported")
        rows = read_rows(gt_path, widths=(4, 8))
        gt = np.stack([r if len(r) == 4 else polygon_to_xywh(r)[0] for r in rows])
        _check_init_box(gt, gt_path)
        _check_length(gt, frames, gt_path, img_dir)
        visible = ~np.isnan(gt).any(axis=1)
        out.append(Sequence(name, frames, gt, visible, "vot"))
    return out


def read_generic(root: str | Path, sequences: Iterable[str] | None = None) -> list[Sequence]:
    """The generic layout: ``[list.txt]``, ``<seq>/[img/]*``, ``<seq>/groundtruth.txt``.

    The OTB layout (``groundtruth_rect.txt`` instead) is read too, so any folder of OTB-style
    sequences (``mixformer data bench`` writes one) can be evaluated without a table.

    ``groundtruth.txt`` holds ``x,y,w,h`` rows (comma, tab or space separated), one per frame.
    An optional ``absence.label`` (one 0/1 per frame, 1 = target absent) gives visibility.
    ``mixformer synth`` writes this layout.
    """
    root = _require_root(root)
    items = _select(_listed_folders(root, root / "list.txt"), sequences, lambda x: x[0], "generic")
    out = []
    for name, folder in items:
        img_dir, frames = _frames_in(folder, ("img",))
        gt_path = folder / "groundtruth.txt"
        if not gt_path.is_file() and (folder / "groundtruth_rect.txt").is_file():
            gt_path = folder / "groundtruth_rect.txt"  # the OTB layout
        gt = read_boxes(gt_path)
        _check_init_box(gt, gt_path)
        _check_length(gt, frames, gt_path, img_dir)
        visible = None
        if (folder / "absence.label").is_file():
            a = read_labels(folder / "absence.label", allowed=(0, 1))
            _check_flags(a, len(frames), folder / "absence.label")
            visible = a == 0
        out.append(Sequence(name, frames, gt, visible, "generic"))
    return out


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class Benchmark:
    """How to read, track and score one benchmark.

    Attributes:
        name: dataset key (``--dataset``).
        reader: ``reader(root, sequences=None) -> list[Sequence]``.
        tracker_preset: :meth:`mixformer.TrackerConfig.preset` benchmark name.
        result_subdir: subfolder of the results directory for the result files (SPEC 4.1).
        metric: ``"ope"`` (success / precision), ``"got10k"`` (AO / SR, plus OPE) or ``"server"``
            (no public ground truth: pack and submit).
        strict_length: a result shorter than the ground truth is an error (LaSOT).
        exclude_invalid: score only the frames with a valid box (sparse labels: NaN rows are
            unlabelled frames, not misses).
    """

    name: str
    reader: Callable[..., list[Sequence]]
    tracker_preset: str
    result_subdir: str = ""
    metric: str = "ope"
    strict_length: bool = False
    exclude_invalid: bool = False


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark("lasot", read_lasot, "lasot", strict_length=True),
        Benchmark("got10k_val", read_got10k_val, "got10k_val", "got10k", metric="got10k"),
        Benchmark("got10k_test", read_got10k_test, "got10k_test", "got10k", metric="server"),
        Benchmark("trackingnet", read_trackingnet, "trackingnet", "trackingnet", "server"),
        Benchmark("otb", read_otb, "otb"),
        Benchmark("uav", read_uav, "uav"),
        Benchmark("nfs", read_nfs, "nfs"),
        Benchmark("tnl2k", read_tnl2k, "tnl2k"),
        Benchmark("vot", read_vot, "vot20"),
        Benchmark("generic", read_generic, "default"),
        # `mixformer data realvideo`: real footage labelled every 5th frame (generic layout).
        Benchmark("realvideo", read_generic, "default", exclude_invalid=True),
    )
}


def get_benchmark(name: str) -> Benchmark:
    """The :class:`Benchmark` called ``name`` (case-insensitive).

    Raises:
        KeyError: unknown name (the message lists the valid ones).
    """
    key = name.lower().replace("-", "_")
    if key not in BENCHMARKS:
        raise KeyError(f"unknown dataset {name!r}; choose from {', '.join(BENCHMARKS)}")
    return BENCHMARKS[key]


def load_benchmark(
    name: str, root: str | Path, sequences: Iterable[str] | None = None
) -> list[Sequence]:
    """Read and validate every sequence of a benchmark.

    Args:
        name: dataset key, see :data:`BENCHMARKS`.
        root: the benchmark's folder.
        sequences: optional subset of sequence names (in that order).

    Returns:
        The sequences, each with ``(T, 4)`` float64 ``(x, y, w, h)`` ground truth.

    Raises:
        KeyError: unknown dataset.
        ValueError: a malformed folder; the message names the file and line.
    """
    seqs = get_benchmark(name).reader(root, sequences)
    log.info("%s: %d sequences, %d frames", name, len(seqs), sum(len(s) for s in seqs))
    return seqs
