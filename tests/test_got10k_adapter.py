"""The got10k adapter: ExperimentGOT10k runs our tracker unchanged on a small local fixture."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import MICRO
from mixformer import Tracker, TrackerConfig, build_model
from mixformer.data.frames import read_image
from mixformer.datagen.synthetic import generate_sequence

got10k = pytest.importorskip("got10k")

from got10k.experiments import ExperimentGOT10k  # noqa: E402
from got10k.trackers import Tracker as GOTTracker  # noqa: E402

from mixformer.integrations.got10k import got10k_tracker  # noqa: E402

CONFIG = TrackerConfig(template_size=64, search_size=128, update_interval=3, online_size=2)


def write_got10k_val(root: Path, num_sequences: int = 2, num_frames: int = 5) -> Path:
    """``root/val/<seq>/00000001.jpg...`` with groundtruth, labels and meta_info.ini."""
    val = root / "val"
    names = []
    for i in range(num_sequences):
        name = f"GOT-10k_Val_{i + 1:06d}"
        seq = generate_sequence(10 + i, num_frames=num_frames, height=120, width=160)
        d = val / name
        d.mkdir(parents=True)
        for f, frame in enumerate(seq.frames, start=1):
            cv2.imwrite(str(d / f"{f:08d}.jpg"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        np.savetxt(d / "groundtruth.txt", seq.boxes, fmt="%.4f", delimiter=",")
        visible = np.asarray(seq.visible, dtype=int)
        np.savetxt(d / "cover.label", visible * 8, fmt="%d")
        np.savetxt(d / "absence.label", 1 - visible, fmt="%d")
        np.savetxt(d / "cut_by_image.label", np.zeros(num_frames), fmt="%d")
        (d / "meta_info.ini").write_text("[METAINFO]\nresolution: (160, 120)\nmajor_class: toy\n")
        names.append(name)
    (val / "list.txt").write_text("\n".join(names) + "\n")
    return root


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("mixformer-tiny", **MICRO)


def test_experiment_got10k_runs_adapter(tmp_path, model):
    root = write_got10k_val(tmp_path / "GOT-10k")
    tracker = got10k_tracker(model, CONFIG, name="MixFormerTest")
    assert isinstance(tracker, GOTTracker)
    assert tracker.is_deterministic
    exp = ExperimentGOT10k(
        str(root), subset="val", result_dir=str(tmp_path / "res"), report_dir=str(tmp_path / "rep")
    )
    exp.run(tracker)
    perf = exp.report([tracker.name])
    overall = perf["MixFormerTest"]["overall"]
    assert 0.0 <= overall["ao"] <= 1.0
    assert overall["speed_fps"] > 0
    report = tmp_path / "rep" / "GOT-10k" / "MixFormerTest" / "performance.json"
    assert json.loads(report.read_text())["MixFormerTest"]["overall"]["ao"] == overall["ao"]

    # the recorded boxes are exactly what our Tracker gives on the same frames
    name = exp.dataset.seq_names[0]
    img_files, anno = exp.dataset[name][:2]
    record = tmp_path / "res" / "GOT-10k" / "MixFormerTest" / name / f"{name}_001.txt"
    boxes = np.loadtxt(record, delimiter=",")
    assert boxes.shape == anno.shape
    ref = Tracker(model, CONFIG)
    ref.init(read_image(img_files[0]), anno[0])
    expected = [ref.update(read_image(f)).box for f in img_files[1:]]
    np.testing.assert_allclose(boxes[1:], expected, atol=1e-3)
    np.testing.assert_allclose(boxes[0], anno[0], atol=1e-3)


def test_pil_images_and_bad_decoder(tmp_path, model):
    from PIL import Image

    frames = generate_sequence(4, num_frames=3, height=120, width=160).frames
    tracker = got10k_tracker(model, CONFIG, decoder="pil")
    tracker.init(Image.fromarray(frames[0]), np.array([20.0, 30.0, 30.0, 25.0]))
    box = tracker.update(Image.fromarray(frames[1]).convert("RGBA"))
    assert box.shape == (4,) and box.dtype == np.float64
    with pytest.raises(ValueError, match="decoder"):
        got10k_tracker(model, CONFIG, decoder="bmp")


def test_got10k_trained_networks_get_the_baseline_got_schedule():
    model = build_model("mixformer-tiny", **MICRO)
    default = got10k_tracker(model, benchmark="got10k_test").tracker.config
    got = got10k_tracker(model, benchmark="got10k_test", got10k_trained=True).tracker.config
    assert (default.update_interval, default.online_size) == (10, 2)
    assert (got.update_interval, got.online_size) == (25, 3)
