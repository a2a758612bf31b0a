"""Benchmark readers on small fixture folders built here, and their errors on malformed input."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from mixformer.data.benchmarks import BENCHMARKS, load_benchmark, sequence_lists
from mixformer.data.frames import jpeg_truncated, read_image
from mixformer.data.io import read_boxes, read_flags, read_labels
from mixformer.datagen.training.datasets import CorruptImageError, _decode


def _touch_frames(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        (folder / n).write_bytes(b"")


def _boxes(n: int, start: float = 10.0) -> np.ndarray:
    return np.array([[start + i, 20.0, 30.0, 40.0] for i in range(n)])


def _write_gt(path: Path, boxes: np.ndarray, sep: str = ",") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(sep.join(f"{v:g}" for v in row) + "\n" for row in boxes))


# --------------------------------------------------------------------------- io


@pytest.mark.parametrize("sep", [",", "\t", " ", ", "])
def test_read_boxes_separators(tmp_path: Path, sep: str) -> None:
    _write_gt(tmp_path / "gt.txt", _boxes(3), sep)
    np.testing.assert_array_equal(read_boxes(tmp_path / "gt.txt"), _boxes(3))


def test_read_boxes_errors_name_file_and_line(tmp_path: Path) -> None:
    p = tmp_path / "gt.txt"
    p.write_text("1,2,3,4\n1,2,x,4\n")
    with pytest.raises(ValueError, match=r"gt\.txt:2: cannot parse"):
        read_boxes(p)
    p.write_text("1,2,3,4\n1,2,3\n")
    with pytest.raises(ValueError, match=r"gt\.txt:2: expected 4 values, got 3"):
        read_boxes(p)
    p.write_text("1,2,3,4\n\n1,2,3,4\n")
    with pytest.raises(ValueError, match=r"gt\.txt:2: blank"):
        read_boxes(p)
    with pytest.raises(ValueError, match="file not found"):
        read_boxes(tmp_path / "missing.txt")
    p.write_text("NaN,NaN,NaN,NaN\n1,2,3,4\n\n")
    assert np.isnan(read_boxes(p)[0]).all() and read_boxes(p).shape == (2, 4)


def test_read_boxes_byte_order_mark(tmp_path: Path) -> None:
    (tmp_path / "gt.txt").write_bytes("\ufeff1,2,3,4\n".encode())
    np.testing.assert_array_equal(read_boxes(tmp_path / "gt.txt"), [[1, 2, 3, 4]])


def test_read_flags_one_line_and_per_line(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("0,1,1,0\n")
    (tmp_path / "b.label").write_text("0\n1\n1\n0\n")
    np.testing.assert_array_equal(read_flags(tmp_path / "a.txt"), [False, True, True, False])
    np.testing.assert_array_equal(read_flags(tmp_path / "b.label"), [False, True, True, False])
    (tmp_path / "c.label").write_text("0\n8\n")
    np.testing.assert_array_equal(read_labels(tmp_path / "c.label"), [0, 8])
    (tmp_path / "d.label").write_text("0\nyes\n")
    with pytest.raises(ValueError, match=r"d\.label:2"):
        read_flags(tmp_path / "d.label")


def _jpeg(path: Path) -> bytes:
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8), (5, 5), 0)
    assert cv2.imwrite(str(path), img)
    return path.read_bytes()


def test_truncated_jpeg_is_an_unreadable_frame(tmp_path: Path) -> None:
    data = _jpeg(tmp_path / "full.jpg")
    assert read_image(tmp_path / "full.jpg").shape == (96, 128, 3)
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) * 2 // 3])
    assert cv2.imread(str(tmp_path / "cut.jpg")) is not None  # libjpeg only warns
    with pytest.raises(ValueError, match=r"truncated JPEG.*cut\.jpg"):
        read_image(tmp_path / "cut.jpg")
    with pytest.raises(CorruptImageError, match=r"truncated JPEG.*cut\.jpg"):
        _decode(tmp_path / "cut.jpg")  # training counts and skips it like any unreadable frame
    # Bytes after the end-of-image marker, and a header holding FF D9 (e.g. an EXIF
    # thumbnail's end), do not make a complete file truncated.
    (tmp_path / "tail.jpg").write_bytes(data + b"\x12\x34" * 100)
    assert not jpeg_truncated(tmp_path / "tail.jpg")
    app = b"\xff\xe1" + (6).to_bytes(2, "big") + b"\xff\xd9\x00\x00"
    (tmp_path / "app.jpg").write_bytes(data[:2] + app + data[2:])
    assert not jpeg_truncated(tmp_path / "app.jpg")
    (tmp_path / "app_cut.jpg").write_bytes((data[:2] + app + data[2:])[: len(data) // 2])
    assert jpeg_truncated(tmp_path / "app_cut.jpg")
    assert not jpeg_truncated(tmp_path / "full.jpg")


# --------------------------------------------------------------------------- generic


def _generic(root: Path, names: list[str], n: int = 4, img: bool = True) -> None:
    for k, name in enumerate(names):
        d = root / name
        _touch_frames(d / "img" if img else d, [f"{i:08d}.jpg" for i in range(1, n + 1)])
        _write_gt(d / "groundtruth.txt", _boxes(n, 10 + k))
    (root / "list.txt").write_text("".join(f"{x}\n" for x in names))


def test_generic_reader(tmp_path: Path) -> None:
    _generic(tmp_path, ["b", "a"])
    (tmp_path / "a" / "absence.label").write_text("0\n0\n1\n0\n")
    seqs = load_benchmark("generic", tmp_path)
    assert [s.name for s in seqs] == ["b", "a"]
    assert len(seqs[0]) == 4 and seqs[0].frames[0].name == "00000001.jpg"
    np.testing.assert_array_equal(seqs[1].ground_truth, _boxes(4, 11))
    assert seqs[0].visible is None
    np.testing.assert_array_equal(seqs[1].visible, [True, True, False, True])
    assert seqs[1].init_box == (11.0, 20.0, 30.0, 40.0)


def test_generic_without_list_and_frames_in_folder(tmp_path: Path) -> None:
    _generic(tmp_path, ["x", "y"], img=False)
    (tmp_path / "list.txt").unlink()
    (tmp_path / "x" / "notes.md").write_text("not a frame")
    seqs = load_benchmark("generic", tmp_path)
    assert [s.name for s in seqs] == ["x", "y"] and len(seqs[0]) == 4


def test_generic_malformed(tmp_path: Path) -> None:
    _generic(tmp_path, ["a", "b"])
    (tmp_path / "b" / "img" / "00000004.jpg").unlink()
    with pytest.raises(ValueError, match=r"b/groundtruth\.txt:4: ground truth has 4 rows"):
        load_benchmark("generic", tmp_path)
    _touch_frames(tmp_path / "b" / "img", ["00000004.jpg", "00000005.jpg"])
    with pytest.raises(ValueError, match=r"groundtruth\.txt:5: ground truth ends after 4 rows"):
        load_benchmark("generic", tmp_path)
    (tmp_path / "b" / "img" / "00000005.jpg").unlink()
    (tmp_path / "a" / "groundtruth.txt").write_text("1,2,3,4\n1,2,3,4\n1;2;3\n1,2,3,4\n")
    with pytest.raises(ValueError, match=r"a/groundtruth\.txt:3"):
        load_benchmark("generic", tmp_path)
    _write_gt(tmp_path / "a" / "groundtruth.txt", _boxes(4))
    (tmp_path / "list.txt").write_text("a\nb\nc\n")
    with pytest.raises(ValueError, match=r"list\.txt:3: sequence folder not found"):
        load_benchmark("generic", tmp_path)
    (tmp_path / "list.txt").write_text("a\n")
    _write_gt(tmp_path / "a" / "groundtruth.txt", np.array([[0, 0, 0, 5]] * 4, float))
    with pytest.raises(ValueError, match=r"groundtruth\.txt:1: the first box"):
        load_benchmark("generic", tmp_path)


def test_unknown_dataset_and_root(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="unknown dataset"):
        load_benchmark("lasott", tmp_path)
    with pytest.raises(ValueError, match="benchmark root not found"):
        load_benchmark("generic", tmp_path / "nope")


# --------------------------------------------------------------------------- LaSOT


def _lasot_seq(root: Path, name: str, n: int) -> Path:
    d = root / name.rsplit("-", 1)[0] / name
    _touch_frames(d / "img", [f"{i:08d}.jpg" for i in range(1, n + 1)])
    _write_gt(d / "groundtruth.txt", _boxes(n))
    (d / "full_occlusion.txt").write_text(",".join(["0"] * (n - 1) + ["1"]) + "\n")
    (d / "out_of_view.txt").write_text(",".join(["0", "1"] + ["0"] * (n - 2)) + "\n")
    return d


def test_lasot(tmp_path: Path) -> None:
    assert len(sequence_lists()["lasot"]) == 280
    _lasot_seq(tmp_path, "airplane-1", 5)
    _lasot_seq(tmp_path, "zebra-17", 3)
    seqs = load_benchmark("lasot", tmp_path, sequences=["airplane-1", "zebra-17"])
    assert [len(s) for s in seqs] == [5, 3]
    np.testing.assert_array_equal(seqs[0].visible, [True, False, True, True, False])
    assert seqs[0].object_class == "airplane" and seqs[0].dataset == "lasot"
    with pytest.raises(ValueError, match="unknown sequence"):
        load_benchmark("lasot", tmp_path, sequences=["airplane-2000"])
    with pytest.raises(ValueError, match="airplane-9"):  # full set: next listed folder missing
        load_benchmark("lasot", tmp_path)


def test_lasot_malformed(tmp_path: Path) -> None:
    d = _lasot_seq(tmp_path, "airplane-1", 5)
    (d / "img" / "00000003.jpg").unlink()
    with pytest.raises(ValueError, match=r"groundtruth\.txt:3: frame .*00000003\.jpg is missing"):
        load_benchmark("lasot", tmp_path, sequences=["airplane-1"])
    _touch_frames(d / "img", ["00000003.jpg"])
    (d / "out_of_view.txt").write_text("0,0,0\n")
    with pytest.raises(ValueError, match=r"out_of_view\.txt: 3 labels for 5 frames"):
        load_benchmark("lasot", tmp_path, sequences=["airplane-1"])


def test_duplicate_sequence_is_refused(tmp_path: Path) -> None:
    _generic(tmp_path, ["a", "b"])
    (tmp_path / "list.txt").write_text("a\nb\n\na\n")
    with pytest.raises(ValueError, match=r"list\.txt:4: duplicate sequence a \(first on line 1\)"):
        load_benchmark("generic", tmp_path)
    (tmp_path / "list.txt").write_text("a\nb\n")
    with pytest.raises(ValueError, match="duplicate sequence b"):
        load_benchmark("generic", tmp_path, sequences=["b", "a", "b"])
    base = _got(tmp_path / "got", "val", ["s1", "s2"])
    (base / "list.txt").write_text("s1\ns2\ns2\n")
    with pytest.raises(ValueError, match=r"list\.txt:3: duplicate sequence s2"):
        load_benchmark("got10k_val", tmp_path / "got")


def test_absence_label_must_be_0_or_1(tmp_path: Path) -> None:
    _generic(tmp_path, ["a"])
    (tmp_path / "a" / "absence.label").write_text("0\n1\n2\n0\n")
    with pytest.raises(ValueError, match=r"absence\.label:3: label '2' must be 0 or 1"):
        load_benchmark("generic", tmp_path)
    with pytest.raises(ValueError, match=r"absence\.label:3"):
        read_flags(tmp_path / "a" / "absence.label")
    (tmp_path / "a" / "absence.label").write_text("0\nnan\n0\n0\n")
    with pytest.raises(ValueError, match=r"absence\.label:2: label 'nan' is not an integer"):
        load_benchmark("generic", tmp_path)
    base = _got(tmp_path / "got", "val", ["s1"])
    (base / "s1" / "cover.label").unlink()
    (base / "s1" / "absence.label").write_text("0\n0\n-1\n0\n")
    with pytest.raises(ValueError, match=r"s1/absence\.label:3: label '-1' must be 0 or 1"):
        load_benchmark("got10k_val", tmp_path / "got")


def test_directory_named_like_a_frame_is_named(tmp_path: Path) -> None:
    _generic(tmp_path, ["a"])
    (tmp_path / "a" / "img" / "00000004.jpg").unlink()
    (tmp_path / "a" / "img" / "00000004.jpg").mkdir()
    with pytest.raises(ValueError, match=r"img/00000004\.jpg: a directory named like a frame"):
        load_benchmark("generic", tmp_path)
    d = _lasot_seq(tmp_path / "lasot", "airplane-1", 5)
    (d / "img" / "00000005.jpg").unlink()
    (d / "img" / "00000005.jpg").mkdir()
    with pytest.raises(ValueError, match=r"00000005\.jpg: a directory named like a frame"):
        load_benchmark("lasot", tmp_path / "lasot", sequences=["airplane-1"])


# --------------------------------------------------------------------------- GOT-10k / TrackingNet


def _got(root: Path, split: str, names: list[str], n: int = 4) -> Path:
    base = root / split
    for name in names:
        d = base / name
        _touch_frames(d, [f"{i:08d}.jpg" for i in range(1, n + 1)])
        _write_gt(d / "groundtruth.txt", _boxes(1 if split == "test" else n))
        if split == "val":
            (d / "absence.label").write_text("0\n0\n1\n0\n")
            (d / "cover.label").write_text("8\n3\n0\n0\n")
    (base / "list.txt").write_text("".join(f"{x}\n" for x in names))
    return base


def test_got10k_val_and_test(tmp_path: Path) -> None:
    _got(tmp_path, "val", ["GOT-10k_Val_000001", "GOT-10k_Val_000002"])
    base = _got(tmp_path, "test", ["GOT-10k_Test_000001"])
    val = load_benchmark("got10k_val", tmp_path)
    assert [s.name for s in val] == ["GOT-10k_Val_000001", "GOT-10k_Val_000002"]
    np.testing.assert_array_equal(val[0].visible, [True, True, False, False])  # cover > 0
    test = load_benchmark("got10k_test", base)  # the split folder itself also works
    assert test[0].ground_truth.shape == (4, 4) and np.isnan(test[0].ground_truth[1:]).all()
    assert test[0].init_box == (10.0, 20.0, 30.0, 40.0)
    (base / "GOT-10k_Test_000001" / "00000002.jpg").rename(base / "GOT-10k_Test_000001" / "a.jpg")
    with pytest.raises(ValueError, match="must be integers"):
        load_benchmark("got10k_test", tmp_path)


def test_got10k_val_gt_longer_than_frames(tmp_path: Path) -> None:
    base = _got(tmp_path, "val", ["s1"])
    (base / "s1" / "00000004.jpg").unlink()
    with pytest.raises(ValueError, match=r"s1/groundtruth\.txt:4: ground truth has 4 rows"):
        load_benchmark("got10k_val", tmp_path)


def test_trackingnet(tmp_path: Path) -> None:
    test = tmp_path / "TEST"
    _touch_frames(test / "frames" / "seqA", [f"{i}.jpg" for i in (0, 1, 2, 10)])
    _write_gt(test / "anno" / "seqA.txt", _boxes(1))
    seqs = load_benchmark("trackingnet", tmp_path)
    assert [f.name for f in seqs[0].frames] == ["0.jpg", "1.jpg", "2.jpg", "10.jpg"]
    assert np.isnan(seqs[0].ground_truth[1:]).all()
    _write_gt(test / "anno" / "seqB.txt", _boxes(1))
    with pytest.raises(ValueError, match="frame folder not found"):
        load_benchmark("trackingnet", tmp_path)


# --------------------------------------------------------------------------- OTB / UAV / NfS


def _table_seq(root: Path, key: str, name: str, rows: int | None = None) -> dict:
    e = next(x for x in sequence_lists()[key] if x["name"] == name)
    nums = range(e["startFrame"], e["endFrame"] + 1)
    _touch_frames(root / e["path"], [f"{i:0{e['nz']}d}.{e['ext']}" for i in nums])
    n = len(nums) if rows is None else rows
    _write_gt(root / e["anno_path"], _boxes(n), "\t" if key == "nfs" else ",")
    return e


def test_otb_init_omit_and_offsets(tmp_path: Path) -> None:
    _table_seq(tmp_path, "otb", "Deer")
    e = _table_seq(tmp_path, "otb", "Tiger1")
    seqs = load_benchmark("otb", tmp_path, sequences=["Deer", "Tiger1"])
    assert len(seqs[0]) == 71
    omit = e["initOmit"]
    assert len(seqs[1]) == e["endFrame"] - omit
    assert seqs[1].frames[0].name == f"{1 + omit:04d}.jpg"
    np.testing.assert_array_equal(seqs[1].ground_truth[0], _boxes(omit + 1)[omit])
    e = _table_seq(tmp_path, "otb", "BlurCar1", rows=10)
    with pytest.raises(ValueError, match=r"BlurCar1/groundtruth_rect\.txt:11: .*10 rows"):
        load_benchmark("otb", tmp_path, sequences=["BlurCar1"])


def test_uav_nan_rows_and_subsequence(tmp_path: Path) -> None:
    e = _table_seq(tmp_path, "uav", "uav_bird1_2")
    gt_path = tmp_path / e["anno_path"]
    lines = gt_path.read_text().splitlines()
    lines[5] = "NaN,NaN,NaN,NaN"
    gt_path.write_text("\n".join(lines) + "\n")
    (seq,) = load_benchmark("uav", tmp_path, sequences=["uav_bird1_2"])
    assert seq.frames[0].name == f"{e['startFrame']:06d}.jpg"
    assert np.isnan(seq.ground_truth[5]).all()
    (tmp_path / e["path"] / f"{e['startFrame'] + 7:06d}.jpg").unlink()
    with pytest.raises(ValueError, match=r"bird1_2\.txt:8: frame .* is missing"):
        load_benchmark("uav", tmp_path, sequences=["uav_bird1_2"])


def test_nfs(tmp_path: Path) -> None:
    _table_seq(tmp_path, "nfs", "nfs_car_jumping")
    (seq,) = load_benchmark("nfs", tmp_path, sequences=["nfs_car_jumping"])
    assert len(seq) == 22 and seq.frames[0].name == "00001.jpg"
    assert len(sequence_lists()["nfs"]) == 100 and len(sequence_lists()["uav"]) == 123


# --------------------------------------------------------------------------- TNL2K / VOT


def test_tnl2k(tmp_path: Path) -> None:
    d = tmp_path / "advSamp_Baseball_game_002-Done"
    _touch_frames(d / "imgs", ["00001.png", "00002.png", "00003.png"])
    _write_gt(d / "groundtruth.txt", _boxes(3))
    (d / "language.txt").write_text("the man in red")
    (seq,) = load_benchmark("tnl2k", tmp_path)
    assert seq.name == d.name and len(seq) == 3 and seq.visible is None
    _write_gt(d / "groundtruth.txt", _boxes(2))
    with pytest.raises(ValueError, match=r"groundtruth\.txt:3: ground truth ends after 2"):
        load_benchmark("tnl2k", tmp_path)


def test_vot_polygons_and_absent(tmp_path: Path) -> None:
    d = tmp_path / "ball"
    _touch_frames(d / "color", ["00000001.jpg", "00000002.jpg", "00000003.jpg"])
    (d / "groundtruth.txt").write_text("10,20,40,20,40,50,10,50\n1,2,3,4\nnan,nan,nan,nan\n")
    (tmp_path / "list.txt").write_text("ball\n")
    (seq,) = load_benchmark("vot", tmp_path)
    np.testing.assert_array_equal(seq.ground_truth[0], [10, 20, 30, 30])
    np.testing.assert_array_equal(seq.visible, [True, True, False])
    ws = tmp_path / "workspace"  # a VOT toolkit workspace keeps them under sequences/
    shutil.copytree(tmp_path, ws / "sequences", ignore=shutil.ignore_patterns("workspace"))
    assert load_benchmark("vot", ws)[0].name == "ball"
    (d / "groundtruth.txt").write_text("m1,2,3\n")
    with pytest.raises(ValueError, match="mask annotations"):
        load_benchmark("vot", tmp_path)


def test_every_benchmark_has_a_reader_test() -> None:
    covered = {"lasot", "got10k_val", "got10k_test", "trackingnet", "otb", "uav", "nfs"}
    covered |= {"tnl2k", "vot", "generic"}
    covered |= {"realvideo"}  # the generic reader on `data realvideo` output: test_realvideo.py
    assert set(BENCHMARKS) == covered
