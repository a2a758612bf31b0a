"""``mixformer demo`` end to end on a very short generated video."""

from __future__ import annotations

import subprocess
import sys

import cv2


def test_demo_writes_video_plot_and_boxes(tmp_path):
    out = tmp_path / "demo"
    r = subprocess.run(
        [sys.executable, "-m", "mixformer", "demo", "--out", str(out), "--frames", "4"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert "AUC MixFormer" in r.stdout and "AUC static box" in r.stdout
    assert len((out / "boxes.txt").read_text().splitlines()) == 4
    img = cv2.imread(str(out / "success.png"))
    assert img is not None and img.shape[0] > 100
    cap = cv2.VideoCapture(str(out / "demo.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    cap.release()


def test_demo_rejects_too_short(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "mixformer", "demo", "--out", str(tmp_path), "--frames", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 2 and "--frames" in r.stderr


def test_demo_synthetic_scene(tmp_path):
    from mixformer.cli import main

    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--frames", "3", "--scene", "synthetic"]) == 0
    assert len((out / "boxes.txt").read_text().splitlines()) == 3


def test_demo_photos_are_package_data():
    from mixformer.datagen.composite import Corpus, demo_photos

    corpus = Corpus(demo_photos(), "all")
    assert len(corpus.images) == 2 and corpus.image(0).shape[2] == 3
