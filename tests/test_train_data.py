"""Training data: readers (layouts and bad input), SPEC 3.4 samplers, SPEC 3.5 processing."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from mixformer.datagen.training import (
    Processing,
    ProcessingConfig,
    SampleRNG,
    SyntheticTrainDataset,
    TrackingSampler,
    TrainingSamples,
    build_dataset,
)
from mixformer.datagen.training.datasets import (
    Coco17Train,
    GenericTrain,
    Got10kTrain,
    LasotTrain,
    TrackingNetTrain,
)
from mixformer.geometry import normalize_patch, sample_target

SMALL = ProcessingConfig(template_size=64, search_size=160)


def _write_frames(folder: Path, n: int, names: str = "{:08d}.jpg", start: int = 1) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        img = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
        cv2.imwrite(str(folder / names.format(i + start)), img)


def _boxes(n: int) -> str:
    return "".join(f"{10 + i % 3},{8},{20},{16}\n" for i in range(n))


def test_processing_geometry_without_jitter() -> None:
    cfg = ProcessingConfig(
        template_size=64, search_size=160, search_center_jitter=0.0, search_scale_jitter=0.0
    )
    frame = np.random.default_rng(1).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    box = np.array([50.0, 40.0, 30.0, 20.0])
    out = Processing(cfg, train=False)(
        [frame, frame], [box, box], [frame], [box], SampleRNG.from_key(0)
    )
    assert out["template_images"].shape == (2, 3, 64, 64)
    assert out["search_images"].shape == (1, 3, 160, 160)
    patch, rf = sample_target(frame, box, 5.0, 160)
    assert torch.allclose(out["search_images"][0], normalize_patch(patch)[0], atol=1e-6)
    s = 160
    expect = torch.tensor(
        [((s - 1) / 2 - 15 * rf) / s, ((s - 1) / 2 - 10 * rf) / s, 30 * rf / s, 20 * rf / s]
    )
    assert torch.allclose(out["search_anno"][0], expect.float(), atol=1e-6)


def test_processing_train_flips_and_is_deterministic() -> None:
    frame = np.random.default_rng(2).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    box = np.array([50.0, 40.0, 30.0, 20.0])
    proc = Processing(SMALL, train=True)
    a = proc([frame, frame], [box, box], [frame], [box], SampleRNG.from_key(5))
    b = proc([frame, frame], [box, box], [frame], [box], SampleRNG.from_key(5))
    for k in a:
        assert torch.equal(a[k], b[k])
    widths = set()
    for k in range(20):
        out = proc([frame, frame], [box, box], [frame], [box], SampleRNG.from_key(k))
        x, y, w, h = out["template_anno"][0].tolist()
        widths.add(round(x + w / 2, 4))  # centre (63/2)/64 or mirrored (65/2)/64
        assert w == pytest.approx(30 * 64 / 49 / 64, rel=1e-5)
    assert widths == {round(31.5 / 64, 4), round(32.5 / 64, 4)}


def test_samples_are_a_function_of_seed_epoch_index() -> None:
    ds = SyntheticTrainDataset(8, 24, 96, 128, seed=3)
    sampler = TrackingSampler([ds], [1.0], Processing(SMALL), "causal")
    samples = TrainingSamples(sampler, 4, seed=1)
    samples.set_epoch(1)
    a, b = samples[2], samples[2]
    assert torch.equal(a["search_images"], b["search_images"])
    samples.set_epoch(2)
    assert not torch.equal(samples[2]["search_images"], a["search_images"])


def test_causal_and_trident_frame_ids() -> None:
    sampler = TrackingSampler([SyntheticTrainDataset(4, 24, 96, 128)], [1.0], Processing(SMALL))
    visible = np.ones(60, dtype=bool)
    visible[10:20] = False
    for k in range(50):
        rng = SampleRNG.from_key(k)
        (base, prev), (search,) = sampler._causal_ids(rng, visible)
        assert prev < base < search and visible[[base, prev, search]].all()
        assert base - prev <= 200 and 1 <= base < 59
        (t1, extra), s = sampler._trident_ids(rng, visible)
        assert visible[t1] and visible[s]
        assert (s <= extra < s + 200) if t1 >= s else (s - 200 <= extra < s)


def test_trident_pro_labels_and_negative_centre_box() -> None:
    ds = SyntheticTrainDataset(6, 24, 96, 128, seed=4)
    sampler = TrackingSampler([ds], [1.0], Processing(SMALL), "trident_pro")
    labels = [float(sampler.sample(SampleRNG.from_key(9, k))["label"]) for k in range(16)]
    assert set(labels) == {0.0, 1.0}


def test_generic_reader_and_corrupt_image(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    for name in ("a", "b"):
        _write_frames(tmp_path / name / "img", 24)
        (tmp_path / name / "groundtruth.txt").write_text(_boxes(24))
    (tmp_path / "a" / "img" / "00000005.jpg").write_bytes(b"not a jpeg")
    ds = build_dataset("generic", {"generic": str(tmp_path)})
    assert isinstance(ds, GenericTrain) and len(ds) == 2
    boxes, vis = ds.annotation(0)
    assert boxes.shape == (24, 4) and vis.all()
    sampler = TrackingSampler([ds], [1.0], Processing(SMALL), "causal")
    with caplog.at_level(logging.WARNING):
        for k in range(40):
            sampler.sample(SampleRNG.from_key(k))
    assert sampler.corrupt_images > 0
    warnings = [r for r in caplog.records if "unreadable frame" in r.getMessage()]
    assert len(warnings) == 1


def test_missing_and_empty_roots(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        build_dataset("lasot", {"lasot": str(tmp_path / "nope")})
    with pytest.raises(ValueError, match="no data root"):
        build_dataset("trackingnet", {})
    with pytest.raises(ValueError, match="no usable sequences"):
        build_dataset("generic", {"generic": str(tmp_path)})
    with pytest.raises(ValueError, match="no usable sequences"):
        build_dataset("got10k_vottrain", {"got10k": str(tmp_path)})


def test_lasot_got10k_trackingnet_coco_layouts(tmp_path: Path) -> None:
    seq = tmp_path / "lasot" / "cat" / "cat-1"
    _write_frames(seq / "img", 5)
    (seq / "groundtruth.txt").write_text(_boxes(5))
    (seq / "full_occlusion.txt").write_text("0,1,0,0,0\n")
    (seq / "out_of_view.txt").write_text("0,0,0,0,1\n")
    lasot = LasotTrain(tmp_path / "lasot", sequences=["cat-1", "dog-3"])
    assert len(lasot) == 1
    assert lasot.annotation(0)[1].tolist() == [True, False, True, True, False]
    assert lasot.frames(0, [0, 4])[1].shape == (48, 64, 3)

    got = tmp_path / "got"
    names = ["GOT-10k_Train_000001", "GOT-10k_Train_000002", "GOT-10k_Train_000003"]
    (got).mkdir()
    (got / "list.txt").write_text("\n".join(names) + "\n")
    for n in names:
        _write_frames(got / n, 4)
        (got / n / "groundtruth.txt").write_text(_boxes(4))
        (got / n / "absence.label").write_text("0\n0\n1\n0\n")
        (got / n / "cover.label").write_text("3\n0\n8\n8\n")
    full = Got10kTrain(got, "train_full")  # rows 0, 1, 2 of the split file exist
    assert len(full) == 3
    assert full.annotation(0)[1].tolist() == [True, False, False, True]
    assert len(Got10kTrain(got, "vot_train")) == 2  # rows 0 and 2
    with pytest.raises(ValueError, match="unknown split"):
        Got10kTrain(got, "test")

    tn = tmp_path / "tn" / "TRAIN_3"
    _write_frames(tn / "frames" / "vid1", 3, names="{}.jpg", start=0)
    (tn / "anno").mkdir()
    (tn / "anno" / "vid1.txt").write_text("1,2,10,10\n1,2,0,10\n1,2,10,10\n")
    tracknet = TrackingNetTrain(tmp_path / "tn")
    assert len(tracknet) == 1 and tracknet.annotation(0)[1].tolist() == [True, False, True]
    assert tracknet.frames(0, [0])[0].shape == (48, 64, 3)

    coco = tmp_path / "coco"
    _write_frames(coco / "train2017", 1, names="img{}.jpg")
    (coco / "annotations").mkdir()
    ann = {
        "images": [{"id": 7, "file_name": "img1.jpg"}],
        "annotations": [
            {"image_id": 7, "bbox": [1, 2, 30, 20], "iscrowd": 0},
            {"image_id": 7, "bbox": [0, 0, 5, 5], "iscrowd": 1},
        ],
    }
    (coco / "annotations" / "instances_train2017.json").write_text(json.dumps(ann))
    c = Coco17Train(coco)
    assert len(c) == 1 and not c.is_video
    frames = c.frames(0, [0, 0, 0])
    assert len(frames) == 3 and np.array_equal(frames[0], frames[2])
    sampler = TrackingSampler([c], [1.0], Processing(SMALL), "trident_pro")
    out = sampler.sample(SampleRNG.from_key(1))
    assert out["template_images"].shape == (2, 3, 64, 64)
