"""The corpus builder on a fixture .deb built in the test (no network, no apt)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from mixformer.datagen import corpus as corpus_mod
from mixformer.datagen.corpus import CorpusSource, build_corpus, load_manifest, split_of

pytestmark = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")

PKG = "mixformer-fixture-photos"
SOURCE = CorpusSource(PKG, (f"usr/share/backgrounds/{PKG}/*",), ("*logo*",))


def _texture(seed: int, h: int, w: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def _build_deb(tmp: Path) -> Path:
    root = tmp / "pkgroot"
    bg = root / "usr/share/backgrounds" / PKG
    bg.mkdir(parents=True)
    # Two resolution variants of one wallpaper, another photo, an icon, a logo, a text file.
    cv2.imwrite(str(bg / "lake-1920x1080.jpg"), _texture(1, 1080, 1920))
    cv2.imwrite(str(bg / "lake-1280x720.jpg"), _texture(1, 720, 1280))
    cv2.imwrite(str(bg / "street.png"), _texture(2, 400, 300))
    cv2.imwrite(str(bg / "icon.png"), _texture(3, 48, 48))
    cv2.imwrite(str(bg / "company-logo.png"), _texture(4, 400, 400))
    (bg / "README.txt").write_text("not an image\n")
    writer = cv2.VideoWriter(str(bg / "walk.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
    for i in range(6):
        writer.write(np.roll(_texture(5, 240, 320), 8 * i, axis=1))
    writer.release()
    # An MPEG-1 program stream (.mpg), as Kivy's cityCC0.mpg of the default sources
    writer = cv2.VideoWriter(str(bg / "pan.mpg"), cv2.VideoWriter_fourcc(*"PIM1"), 25, (320, 240))
    for i in range(5):
        writer.write(np.roll(_texture(6, 240, 320), 8 * i, axis=0))
    writer.release()
    doc = root / "usr/share/doc" / PKG
    doc.mkdir(parents=True)
    (doc / "copyright").write_text("Files: *\nLicense: CC0-1.0\n")
    return _pack_deb(root, PKG, "1.2-3", "fixture photos", tmp / "debs")


def _pack_deb(root: Path, pkg: str, version: str, description: str, debs: Path) -> Path:
    """Build ``root`` into ``debs/<pkg>_<version>_all.deb`` with dpkg-deb; returns ``debs``."""
    (root / "DEBIAN").mkdir()
    (root / "DEBIAN/control").write_text(
        f"Package: {pkg}\nVersion: {version}\nArchitecture: all\n"
        f"Maintainer: test <t@example.org>\nDescription: {description}\n"
    )
    debs.mkdir(exist_ok=True)
    deb = debs / f"{pkg}_{version}_all.deb"
    subprocess.run(
        ["dpkg-deb", "--build", "--root-owner-group", str(root), str(deb)],
        check=True,
        capture_output=True,
    )
    return debs


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("corpus")
    debs = _build_deb(tmp)
    out = tmp / "corpus"
    manifest = build_corpus(
        out, (SOURCE,), deb_dir=debs, max_side=256, video_side=160, progress=False
    )
    return tmp, debs, out, manifest


def test_builder_takes_photos_and_video_with_provenance(built):
    _, _, out, manifest = built
    entries = manifest["entries"]
    images = [e for e in entries if e["kind"] == "image"]
    videos = [e for e in entries if e["kind"] == "video"]
    # The two lake variants are one source image (the larger is kept); icon and logo skipped.
    assert sorted(Path(e["source"]).name for e in images) == ["lake-1920x1080.jpg", "street.png"]
    assert sorted((Path(e["source"]).name, e["frames"]) for e in videos) == [
        ("pan.mpg", 5),
        ("walk.avi", 6),
    ]
    assert manifest["packages"] == {PKG: "1.2-3"}
    for e in entries:
        assert e["package"] == PKG and e["version"] == "1.2-3"
        assert (out / e["copyright"]).read_text().startswith("Files: *")
        assert e["split"] == split_of(PKG, e["source"])
    lake = next(e for e in images if "lake" in e["source"])
    img = cv2.imread(str(out / lake["path"]))
    assert img.shape[:2] == (144, 256) and lake["size"] == [144, 256]  # downscaled 1920x1080
    frame = cv2.imread(str(out / videos[0]["path"] / "00001.jpg"))
    assert frame.shape[:2] == (120, 160)
    assert load_manifest(out)["entries"] == entries


def test_builder_is_deterministic_and_needs_no_network(built, monkeypatch, tmp_path):
    _, debs, out, manifest = built

    real_run = subprocess.run

    def no_apt(cmd, *a, **k):
        if cmd[0] == "apt-get":
            raise AssertionError("apt-get must not run when the .deb is given")
        return real_run(cmd, *a, **k)

    monkeypatch.setattr(corpus_mod.subprocess, "run", no_apt)
    again = build_corpus(
        tmp_path / "again", (SOURCE,), deb_dir=debs, max_side=256, video_side=160, progress=False
    )
    assert again == manifest
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk == json.loads(json.dumps(manifest))


def test_split_groups_variants_and_pairs():
    # Resolution variants, stereo pairs and numbered frames of one scene share a split.
    assert split_of("p", "a/lake-1920x1080.jpg") == split_of("p", "a/lake-640x480.jpg")
    assert split_of("p", "d/aloeL.jpg") == split_of("p", "d/aloeR.jpg")
    assert split_of("p", "d/left.jpg") == split_of("p", "d/right.jpg")
    assert split_of("p", "d/rubberwhale1.png") == split_of("p", "d/rubberwhale2.png")
    kde = "usr/share/wallpapers/X/contents/images/"
    assert split_of("k", kde + "1920x1080.png") == split_of("k", kde + "5120x2880.png")
    splits = {split_of("p", f"img/photo_{c}.jpg") for c in "abcdefghijklmnopqrstuvwxyz"}
    assert splits == {"train", "val", "test"}


def test_missing_package_without_apt_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus_mod.shutil, "which", lambda name: None)
    with pytest.raises(ValueError, match="no-such-pkg"):
        build_corpus(
            tmp_path / "c", (CorpusSource("no-such-pkg", ("*",)),), deb_dir=tmp_path, progress=False
        )


def test_malformed_manifest_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no manifest.json"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ValueError, match="malformed"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"entries": [{"path": "images/x.jpg"}]}))
    with pytest.raises(ValueError, match="missing"):
        load_manifest(tmp_path)


def _cutout_rgba(seed: int, h: int, w: int) -> np.ndarray:
    """A textured two-part object (two discs) on a transparent, margin-padded canvas."""
    img = np.zeros((h + 20, w + 20, 4), np.uint8)
    img[10 : 10 + h, 10 : 10 + w, :3] = _texture(seed, h, w)
    alpha = np.zeros(img.shape[:2], np.uint8)
    cv2.circle(alpha, (10 + w // 4, 10 + h // 2), min(h, w) // 4, 255, -1)
    cv2.circle(alpha, (10 + 3 * w // 4, 10 + h // 2), min(h, w) // 4, 255, -1)
    img[:, :, 3] = alpha
    return img


def test_photo_cutout_keeps_photographed_objects_only():
    obj = _cutout_rgba(1, 120, 160)
    cut = corpus_mod.photo_cutout(obj)
    assert cut is not None and cut.shape[2] == 4
    ys, xs = np.nonzero(obj[:, :, 3] > 127)
    assert cut.shape[:2] == (ys.max() + 1 - ys.min(), xs.max() + 1 - xs.min())  # cropped
    flat = obj.copy()
    flat[:, :, :3] = (200, 40, 40)  # clip art: one colour
    assert corpus_mod.photo_cutout(flat) is None
    assert corpus_mod.photo_cutout(obj[:, :, :3]) is None  # no alpha
    thin = np.zeros((30, 400, 4), np.uint8)
    thin[:, :, :3] = _texture(2, 30, 400)
    thin[:, :, 3] = 255
    assert corpus_mod.photo_cutout(thin) is None  # under CUTOUT_MIN_SIDE
    assert corpus_mod.photo_cutout(np.zeros((60, 60, 4), np.uint8)) is None  # all transparent


def test_builder_takes_cutouts_as_rgba(tmp_path):
    pkg = "mixformer-fixture-stamps"
    root = tmp_path / "pkgroot"
    stamps = root / "usr/share/stamps"
    stamps.mkdir(parents=True)
    cv2.imwrite(str(stamps / "beetle.png"), _cutout_rgba(3, 100, 140))
    flat = _cutout_rgba(4, 100, 140)
    flat[:, :, :3] = 90
    cv2.imwrite(str(stamps / "sign.png"), flat)
    debs = _pack_deb(root, pkg, "1", "fixture stamps", tmp_path / "debs")
    src = CorpusSource(pkg, ("usr/share/stamps/*.png",), cutouts=True)
    manifest = build_corpus(tmp_path / "c", (src,), deb_dir=debs, progress=False)
    (entry,) = manifest["entries"]  # the one-colour sign is not a photographed object
    assert entry["kind"] == "cutout" and entry["source"].endswith("beetle.png")
    img = cv2.imread(str(tmp_path / "c" / entry["path"]), cv2.IMREAD_UNCHANGED)
    assert img.shape[2] == 4 and list(img.shape[:2]) == entry["size"]
    assert 0 < (img[:, :, 3] > 127).mean() < 1
