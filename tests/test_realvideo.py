"""The hand-labelled real-video benchmark: shipped labels, the builder, sparse-label scoring."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from mixformer.data.benchmarks import get_benchmark, load_benchmark
from mixformer.datagen import realvideo
from mixformer.evaluation.metrics import evaluate_sequence, summarize


def test_shipped_labels_parse_and_cover_the_requirements():
    seqs = realvideo.load_labels()
    assert len(seqs) >= 6
    assert len({s["clip"] for s in seqs}) >= 3
    assert len({s["category"] for s in seqs}) >= 3
    for s in seqs:
        gt = realvideo.sequence_boxes(s)
        assert 60 <= len(gt) <= 300, s["name"]
        assert s["width"] <= 640
        assert np.isfinite(gt[0]).all(), f"{s['name']}: frame 1 unlabelled"
        labelled = [int(k) for k in s["boxes"]]
        assert all((k - 1) % s["label_step"] == 0 for k in labelled), s["name"]
        assert len(labelled) >= len(gt) // s["label_step"]
        boxes = gt[np.isfinite(gt).all(axis=1)]
        assert (boxes[:, 2:] > 0).all()
        assert (boxes[:, 0] >= -1).all() and (boxes[:, 1] >= -1).all(), s["name"]
        assert (boxes[:, 0] + boxes[:, 2] <= s["width"] + 1).all(), s["name"]
        assert (boxes[:, 1] + boxes[:, 3] <= s["height"] + 1).all(), s["name"]
        assert s["copyright"].endswith("copyright")
        for word in ("scikit", "skimage", "sklearn", "matplotlib", "opencv-doc"):
            assert word not in s["package"] and word not in s["clip"]


def _fake_deb_dir(tmp_path: Path) -> Path:
    debs = tmp_path / "debs"
    debs.mkdir()
    (debs / "fake-clips_1.0-1_all.deb").write_bytes(b"not really a deb")
    return debs


def _labels(tmp_path: Path) -> Path:
    entry = dict(
        name="dot",
        package="fake-clips",
        version="1.0-1",
        clip="usr/share/fake/clip.avi",
        copyright="usr/share/doc/fake-clips/copyright",
        first_frame=2,
        last_frame=13,
        frame_step=1,
        width=40,
        height=30,
        source_size=[80, 60],
        scale=0.5,
        target="a white square",
        category="object",
        label_step=5,
        boxes={"1": [4, 5, 6, 7], "6": None, "11": [10, 5, 6, 7]},
    )
    path = tmp_path / "labels.json"
    path.write_text(json.dumps({"sequences": [entry]}))
    return path


def _fake_unpack(deb: Path, dest: Path) -> None:
    clip = dest / "usr/share/fake/clip.avi"
    clip.parent.mkdir(parents=True)
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10, (80, 60))
    for i in range(16):
        frame = np.zeros((60, 80, 3), np.uint8)
        frame[:, :, 1] = 16 * i  # frame index readable from the green channel
        writer.write(frame)
    writer.release()
    doc = dest / "usr/share/doc/fake-clips/copyright"
    doc.parent.mkdir(parents=True)
    doc.write_text("Fake licence\n")


def test_builder_writes_otb_layout(tmp_path, monkeypatch):
    monkeypatch.setattr(realvideo, "_unpack", _fake_unpack)
    out = tmp_path / "bench"
    debs, labels = _fake_deb_dir(tmp_path), _labels(tmp_path)
    names = realvideo.build_realvideo(out, deb_dir=debs, labels=labels)
    assert names == ["dot"]
    assert (out / "list.txt").read_text() == "dot\n"
    frames = sorted((out / "dot/img").iterdir())
    assert [f.name for f in frames] == [f"{i:04d}.jpg" for i in range(1, 13)]
    first = cv2.imread(str(frames[0]))
    assert first.shape == (30, 40, 3)
    assert abs(int(first[..., 1].mean()) - 32) <= 3  # source frame 2
    rows = (out / "dot/groundtruth_rect.txt").read_text().splitlines()
    assert len(rows) == 12
    assert rows[0] == "4,5,6,7" and rows[10] == "10,5,6,7"
    assert rows[1] == rows[5] == "nan,nan,nan,nan"
    assert (out / "copyright/fake-clips").read_text() == "Fake licence\n"
    meta = json.loads((out / "manifest.json").read_text())["sequences"][0]
    assert meta["used_version"] == "1.0-1" and meta["labelled_frames"] == 2
    seq = load_benchmark("realvideo", out)[0]
    assert len(seq) == 12 and seq.init_box == (4.0, 5.0, 6.0, 7.0)


@pytest.mark.parametrize("start", [0, 1])
def test_builder_reads_numbered_grey_images(tmp_path, monkeypatch, start):
    """A clip given as a printf pattern (``image%04d.pgm``, numbered from 0 or 1, grey): its
    images are the frames, in order, as colour JPEGs; too few of them is a one-line error."""

    def unpack(deb: Path, dest: Path) -> None:
        folder = dest / "usr/share/fake/seq"
        folder.mkdir(parents=True)
        for i in range(16):
            cv2.imwrite(
                str(folder / f"image{i + start:04d}.pgm"), np.full((60, 80), 16 * i, np.uint8)
            )
        (dest / "usr/share/doc/fake-clips").mkdir(parents=True)
        (dest / "usr/share/doc/fake-clips/copyright").write_text("Fake licence\n")

    monkeypatch.setattr(realvideo, "_unpack", unpack)
    labels = _labels(tmp_path)
    data = json.loads(labels.read_text())
    data["sequences"][0]["clip"] = "usr/share/fake/seq/image%04d.pgm"
    labels.write_text(json.dumps(data))
    out, debs = tmp_path / "bench", _fake_deb_dir(tmp_path)
    realvideo.build_realvideo(out, deb_dir=debs, labels=labels)
    frames = sorted((out / "dot/img").iterdir())
    assert len(frames) == 12
    first, last = cv2.imread(str(frames[0])), cv2.imread(str(frames[-1]))
    assert first.shape == (30, 40, 3)
    assert abs(int(first.mean()) - 32) <= 3 and abs(int(last.mean()) - 16 * 13) <= 3
    data["sequences"][0]["last_frame"] = 20
    labels.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="has only 16 decodable frames"):
        realvideo.build_realvideo(tmp_path / "b2", deb_dir=debs, labels=labels)

    def unpack_corrupt(deb: Path, dest: Path) -> None:
        unpack(deb, dest)
        (dest / f"usr/share/fake/seq/image{start + 5:04d}.pgm").write_bytes(b"not an image")

    monkeypatch.setattr(realvideo, "_unpack", unpack_corrupt)
    with pytest.raises(ValueError, match=f"cannot read image{start + 5:04d}.pgm"):
        realvideo.build_realvideo(tmp_path / "b3", deb_dir=debs, labels=labels)


def test_builder_errors_are_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(realvideo, "_unpack", lambda deb, dest: None)
    with pytest.raises(ValueError, match="clip usr/share/fake/clip.avi not in the package"):
        realvideo.build_realvideo(tmp_path / "b", _fake_deb_dir(tmp_path), _labels(tmp_path))
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(ValueError, match="no apt-get"):
        realvideo.build_realvideo(tmp_path / "c", tmp_path / "empty", _labels(tmp_path))


def test_cli_reports_failure_in_one_line(tmp_path, monkeypatch, capsys):
    from mixformer.cli import main

    monkeypatch.setattr("shutil.which", lambda name: None)
    rc = main(["data", "realvideo", "--out", str(tmp_path / "o"), "--debs", str(tmp_path / "d")])
    assert rc != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "apt-get" in err[0]


def test_sparse_labels_score_only_labelled_frames():
    gt = np.full((10, 4), np.nan)
    gt[0] = gt[5] = [0, 0, 10, 10]
    pred = np.tile([0.0, 0, 10, 10], (10, 1))
    dense = evaluate_sequence(pred, gt)
    sparse = evaluate_sequence(pred, gt, exclude_invalid=True)
    assert dense.success[10] == pytest.approx(0.2)  # NaN rows are misses by default
    assert sparse.success[10] == 1.0 and sparse.precision[20] == 1.0
    pred[5] = [50, 50, 10, 10]
    assert summarize([evaluate_sequence(pred, gt, exclude_invalid=True)])["OP50"] == 50.0
    assert get_benchmark("realvideo").exclude_invalid
    assert not get_benchmark("generic").exclude_invalid
