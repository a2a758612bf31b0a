"""A small hand-labelled benchmark of real camera footage, built offline from Debian packages.

The synthetic and composited benchmarks are made by our own generators; this one is not: a few
real video clips that Debian packages ship (example and demo data), with the target box
labelled by hand on every 5th frame. The labels live in the package
(``mixformer/data/labels/realvideo.json``); :func:`build_realvideo` fetches the packages with
``apt-get download`` (or takes the ``.deb`` files you already have, as ``mixformer data
corpus`` does), unpacks them with ``dpkg -x`` without installing anything, decodes the clips
with OpenCV and writes::

    OUT/list.txt                          the sequence names
    OUT/<name>/img/0001.jpg ...           frames (at most 640 px wide)
    OUT/<name>/groundtruth_rect.txt       x,y,w,h per frame; nan,nan,nan,nan where unlabelled
    OUT/copyright/<package>               each package's copyright file
    OUT/manifest.json                     the labels' metadata plus the versions used

Only every ``label_step``-th frame (1, 6, 11, ...) has a box; the other rows, and labelled frames
where the target is absent or fully occluded, are NaN. Score it with ``--dataset realvideo``
(``mixformer evaluate`` / ``mixformer report``), which counts only the frames with a box:
``--dataset generic`` reads the same folder but counts every NaN row as a miss.

Labels file: ``{"sequences": [...]}``, one entry per target with ``name``, ``package``,
``version`` (the one labelled), ``clip`` (path inside the package: a video file, or a printf
pattern of numbered images such as ``.../image%04d.pgm``), ``copyright`` (path of the
package's copyright file), ``first_frame`` / ``last_frame`` (0-based decoded frame indices,
inclusive), ``frame_step`` (every how many decoded frames one is kept), ``width`` / ``height``
(the stored frame size; frames are resized to it), ``source_size`` ``[w, h]``, ``scale``
(``width / source width``), ``target``, ``category``, ``label_step`` and ``boxes``:
``{"<1-based frame>": [x, y, w, h] or null}`` (null: labelled, target not visible).
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from mixformer.datagen.corpus import _atomic_imwrite, _fetch, _unpack, _version
from mixformer.utils import atomic_write_text

log = logging.getLogger(__name__)

__all__ = ["build_realvideo", "load_labels", "sequence_boxes"]

_FIELDS = (
    "name",
    "package",
    "version",
    "clip",
    "first_frame",
    "last_frame",
    "frame_step",
    "width",
    "height",
    "target",
    "category",
    "label_step",
    "boxes",
)


def load_labels(path: str | Path | None = None) -> list[dict]:
    """The sequences of the labels file (default: the one shipped with the package).

    Raises:
        ValueError: malformed file (a missing field, a box that is not 4 numbers, frame 1
            without a box, a frame number outside the sequence).
    """
    if path is None:
        text = resources.files("mixformer.data").joinpath("labels/realvideo.json").read_text()
        where = "mixformer/data/labels/realvideo.json"
    else:
        text, where = Path(path).read_text(), str(path)
    try:
        seqs = json.loads(text)["sequences"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"{where}: malformed labels file ({exc})") from None
    names = set()
    for s in seqs:
        missing = [f for f in _FIELDS if f not in s]
        if missing:
            raise ValueError(f"{where}: {s.get('name', '?')}: missing {', '.join(missing)}")
        if s["name"] in names:
            raise ValueError(f"{where}: duplicate sequence name {s['name']}")
        names.add(s["name"])
        sequence_boxes(s)  # validates the boxes
    return seqs


def _length(seq: dict) -> int:
    return len(range(seq["first_frame"], seq["last_frame"] + 1, seq["frame_step"]))


def sequence_boxes(seq: dict) -> np.ndarray:
    """``(T, 4)`` float64 ground truth of one labels entry: NaN rows where there is no box.

    Raises:
        ValueError: frame 1 has no box, a frame number outside ``1..T``, a malformed box.
    """
    n = _length(seq)
    gt = np.full((n, 4), np.nan)
    for key, box in seq["boxes"].items():
        i = int(key)
        if not 1 <= i <= n:
            raise ValueError(f"{seq['name']}: frame {i} outside 1..{n}")
        if box is None:
            continue
        b = np.asarray(box, dtype=np.float64)
        if b.shape != (4,) or not np.isfinite(b).all() or b[2] <= 0 or b[3] <= 0:
            raise ValueError(f"{seq['name']}: frame {i}: bad box {box}")
        gt[i - 1] = b
    if not np.isfinite(gt[0]).all():
        raise ValueError(f"{seq['name']}: frame 1 must have a box (it starts the tracker)")
    return gt


def _format_gt(gt: np.ndarray) -> str:
    rows = []
    for b in gt:
        if np.isnan(b).any():
            rows.append("nan,nan,nan,nan")
        else:
            rows.append(",".join(f"{v:g}" for v in b))
    return "".join(r + "\n" for r in rows)


def _pattern_start(pattern: Path) -> int | None:
    """The first index of a printf pattern of numbered images (``image%04d.pgm``): 0 or 1, or
    None where neither file exists."""
    return next((k for k in (0, 1) if Path(str(pattern) % k).is_file()), None)


def _clip_exists(clip: Path) -> bool:
    return _pattern_start(clip) is not None if "%" in clip.name else clip.is_file()


def _read_frames(path: Path, seq: dict) -> Iterator[np.ndarray]:
    """The clip's decoded BGR frames in order: a video file (OpenCV), or the numbered images of
    a printf pattern (``clip`` ending e.g. in ``image%04d.pgm``; grey images become BGR)."""
    if "%" in path.name:
        k = _pattern_start(path) or 0
        while (frame_path := Path(str(path) % k)).is_file():
            image = cv2.imread(str(frame_path), cv2.IMREAD_COLOR)
            if image is None:
                raise ValueError(f"{seq['package']}: cannot read {frame_path.name}")
            yield image
            k += 1
        return
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ValueError(f"{seq['package']}: cannot open {seq['clip']} with OpenCV")
    try:
        while True:
            ok, frame = cap.read()
            if not ok or frame is None:
                return
            yield frame
    finally:
        cap.release()


def _decode(path: Path, seq: dict, out_dir: Path) -> None:
    """Write the sequence's frames of ``path`` as ``out_dir/0001.jpg ...``."""
    keep = range(seq["first_frame"], seq["last_frame"] + 1, seq["frame_step"])
    size = (int(seq["width"]), int(seq["height"]))
    n = decoded = 0
    for i, frame in enumerate(_read_frames(path, seq)):
        if i > seq["last_frame"]:
            break
        decoded = i + 1
        if i in keep:
            if (frame.shape[1], frame.shape[0]) != size:
                frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
            n += 1
            _atomic_imwrite(out_dir / f"{n:04d}.jpg", frame, 92)
    if n != len(keep):
        raise ValueError(
            f"{seq['package']}: {seq['clip']} has only {decoded} decodable frames, "
            f"sequence {seq['name']} needs frames {seq['first_frame']}..{seq['last_frame']}"
        )


def build_realvideo(
    out: str | Path,
    deb_dir: str | Path | None = None,
    labels: str | Path | None = None,
    progress: bool = True,
) -> list[str]:
    """Write the benchmark under ``out`` (see the module docstring for the layout).

    Args:
        out: output folder (created; sequences already there are overwritten).
        deb_dir: folder of ``.deb`` files; missing ones are fetched into it with
            ``apt-get download`` (default: ``out/debs``).
        labels: labels file (default: the shipped one).
        progress: show a tqdm bar over the packages.

    Returns:
        The sequence names, in the order of ``list.txt``.

    Raises:
        ValueError: a package cannot be fetched or unpacked, a clip is missing from it or too
            short, or the labels are malformed.
    """
    seqs = load_labels(labels)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    deb_dir = Path(deb_dir) if deb_dir is not None else out / "debs"
    deb_dir.mkdir(parents=True, exist_ok=True)
    by_package: dict[str, list[dict]] = {}
    for s in seqs:
        by_package.setdefault(s["package"], []).append(s)
    versions: dict[str, str] = {}
    # delay: a failure at once (no apt-get) stays one line, without an empty bar before it
    bar = tqdm(by_package.items(), desc="realvideo", unit="pkg", disable=not progress, delay=1)
    for package, items in bar:
        deb = _fetch(package, deb_dir)
        versions[package] = version = _version(deb)
        labelled = {s["version"] for s in items}
        if version not in labelled:
            log.warning(
                "%s: labelled on version %s, using %s (frames may differ)",
                package,
                ", ".join(sorted(labelled)),
                version,
            )
        with tempfile.TemporaryDirectory(prefix="mixformer-realvideo-") as tmp:
            root = Path(tmp)
            _unpack(deb, root)
            cp = root / items[0].get("copyright", f"usr/share/doc/{package}/copyright")
            text = cp.read_text(errors="replace") if cp.is_file() else "(no copyright file)\n"
            atomic_write_text(out / "copyright" / package, text)
            for s in items:
                clip = root / s["clip"]
                if not _clip_exists(clip):
                    raise ValueError(f"{package} {version}: clip {s['clip']} not in the package")
                folder = out / s["name"]
                _decode(clip, s, folder / "img")
                atomic_write_text(folder / "groundtruth_rect.txt", _format_gt(sequence_boxes(s)))
                log.info("%s: %d frames from %s", s["name"], _length(s), s["clip"])
    names = [s["name"] for s in seqs]
    atomic_write_text(out / "list.txt", "".join(n + "\n" for n in names))
    meta = [
        {k: v for k, v in s.items() if k != "boxes"}
        | {
            "used_version": versions[s["package"]],
            "frames": _length(s),
            "labelled_frames": sum(b is not None for b in s["boxes"].values()),
        }
        for s in seqs
    ]
    atomic_write_text(out / "manifest.json", json.dumps({"sequences": meta}, indent=1) + "\n")
    n_frames = sum(_length(s) for s in seqs)
    log.info("realvideo %s: %d sequences, %d frames", out, len(seqs), n_frames)
    return names
