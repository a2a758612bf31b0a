"""Synthetic sequences: determinism, shapes, occlusion and leaving the view, speed, layout."""

from __future__ import annotations

import time

import numpy as np
import pytest

from mixformer.data.io import read_boxes, read_flags
from mixformer.datagen.synthetic import generate_sequence, make_scene, write_benchmark


def test_deterministic_and_shapes() -> None:
    a = generate_sequence(5, num_frames=30, height=96, width=128)
    b = generate_sequence(np.random.default_rng(5), num_frames=30, height=96, width=128)
    c = generate_sequence(6, num_frames=30, height=96, width=128)
    assert len(a) == 30 and a.boxes.shape == (30, 4) and a.visible.shape == (30,)
    assert a.frames[0].shape == (96, 128, 3) and a.frames[0].dtype == np.uint8
    assert all(np.array_equal(x, y) for x, y in zip(a.frames, b.frames))
    np.testing.assert_array_equal(a.boxes, b.boxes)
    assert not np.array_equal(a.boxes, c.boxes)


def test_first_frame_target_inside_and_visible() -> None:
    for seed in range(10):
        s = generate_sequence(seed, num_frames=20, height=120, width=160)
        x, y, w, h = s.boxes[0]
        assert s.visible[0] and w > 0 and h > 0
        assert x >= 0 and y >= 0 and x + w <= 160 and y + h <= 120


def test_sequences_have_motion_scale_change_and_invisibility() -> None:
    seqs = [generate_sequence(seed) for seed in range(12)]
    assert any((~s.visible).any() for s in seqs)  # occluded or out of view somewhere

    def leaves_and_returns(b: np.ndarray) -> bool:
        x1, y1 = np.clip(b[:, 0], 0, 320), np.clip(b[:, 1], 0, 240)
        x2, y2 = np.clip(b[:, 0] + b[:, 2], 0, 320), np.clip(b[:, 1] + b[:, 3], 0, 240)
        inside = (x2 - x1) * (y2 - y1) / (b[:, 2] * b[:, 3])
        out = np.flatnonzero(inside == 0)
        return out.size > 0 and (inside[out[-1] :] == 1).any()

    assert any(leaves_and_returns(s.boxes) for s in seqs)
    for s in seqs:  # invisible only some of the time: learnable
        assert (~s.visible).mean() < 0.4
    for s in seqs:
        assert np.ptp(s.boxes[:, 0]) > 10  # moves
        assert s.boxes[:, 2].max() / s.boxes[:, 2].min() > 1.1  # changes scale
        aspect = s.boxes[:, 2] / s.boxes[:, 3]
        assert aspect.max() / aspect.min() > 1.05  # changes aspect


def test_fast() -> None:
    generate_sequence(0, num_frames=10)
    t = time.perf_counter()
    generate_sequence(1, num_frames=100, height=240, width=320)
    assert time.perf_counter() - t < 1.0


def test_write_benchmark_layout(tmp_path) -> None:
    folders = write_benchmark(tmp_path, num_sequences=2, num_frames=5, seed=3, height=64, width=80)
    assert [f.name for f in folders] == ["synth-0000", "synth-0001"]
    assert (tmp_path / "list.txt").read_text().split() == ["synth-0000", "synth-0001"]
    seq = generate_sequence(np.random.default_rng([3, 1]), 5, 64, 80, name="synth-0001")
    np.testing.assert_array_equal(read_boxes(folders[1] / "groundtruth.txt"), seq.boxes)
    np.testing.assert_array_equal(read_flags(folders[1] / "absence.label"), ~seq.visible)
    assert sorted(p.name for p in (folders[0] / "img").iterdir())[0] == "00000001.jpg"
    assert len(list((folders[0] / "img").glob("*.jpg"))) == 5


def test_scene_renders_the_frames_of_the_sequence_on_demand() -> None:
    seq = generate_sequence(np.random.default_rng([3, 1]), num_frames=25, height=96, width=128)
    scene = make_scene(np.random.default_rng([3, 1]), num_frames=25, height=96, width=128)
    np.testing.assert_array_equal(scene.boxes, seq.boxes)
    np.testing.assert_array_equal(scene.visible, seq.visible)
    for i in (24, 0, 13, 13):  # any order, any number of times
        np.testing.assert_array_equal(scene.render(i), seq.frames[i])
    with pytest.raises(IndexError, match="frame 25"):
        scene.render(25)


def test_a_target_outside_the_image_is_never_visible() -> None:
    """Also when it left through the left or top border (negative coordinates)."""
    outside = 0
    for seed in range(40):
        s = generate_sequence(seed, num_frames=60)
        x, y, w, h = s.boxes.T
        gone = (x + w <= 0) | (y + h <= 0) | (x >= 320) | (y >= 240)
        outside += int(gone.sum())
        assert not s.visible[gone].any()
    assert outside > 0  # the check ran on real cases
