"""MultiTracker: every target must follow exactly what a single Tracker gives for it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import micro_config
from mixformer import MultiTracker, Tracker, TrackerConfig
from mixformer.datagen.synthetic import generate_sequence
from mixformer.tracking.multi import split_cache, stack_caches


@pytest.fixture(scope="module")
def model(micro_model):
    return micro_model


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return generate_sequence(3, num_frames=8, height=120, width=160).frames


config = micro_config


def run_single(model, cfg, frames, box, start, stop):
    tracker = Tracker(model, cfg)
    tracker.init(frames[start], box)
    return [tracker.update(f) for f in frames[start + 1 : stop + 1]]


@pytest.mark.parametrize(
    "online_size,motion",
    [
        (1, {}),
        (3, {}),
        (3, {"motion_prior": 0.05}),
        (3, {"motion_prior": 0.05, "velocity": 0.3, "size_update": 0.5}),
    ],
)
def test_targets_match_single_trackers(model, frames, online_size, motion):
    """Targets added and removed mid-video, with template updates every 2 frames."""
    cfg = config(update_interval=2, online_size=online_size, **motion)
    boxes = {0: (20, 30, 30, 25), 1: (80, 40, 25, 35), 5: (50, 60, 40, 30), 7: (100, 10, 20, 20)}
    start = {0: 0, 1: 0, 5: 2, 7: 2}
    stop = {0: 7, 1: 5, 5: 7, 7: 3}
    mt = MultiTracker(model, cfg)
    got: dict[int, list] = {k: [] for k in boxes}
    for i, frame in enumerate(frames):
        if i > 0:
            results = mt.update(frame)
            assert set(results) == set(mt.target_ids)
            for tid, res in results.items():
                got[tid].append(res)
        for tid in boxes:
            if start[tid] == i:
                assert mt.add(frame, boxes[tid], target_id=tid) == tid
            if stop[tid] == i < len(frames) - 1:
                mt.remove(tid)
    assert mt.target_ids == (0, 5)
    for tid, box in boxes.items():
        ref = run_single(model, cfg, frames, box, start[tid], stop[tid])
        assert len(got[tid]) == len(ref) == stop[tid] - start[tid]
        for r, g in zip(ref, got[tid]):
            assert g.frame_index == r.frame_index
            np.testing.assert_allclose(g.box, r.box, atol=1e-3)
            assert g.score == pytest.approx(r.score, abs=1e-4)
    if online_size == 3:
        # the targets added later held fewer templates, so their frames needed a second call
        assert mt.num_network_calls > len(frames) - 1
    else:
        assert mt.num_network_calls == len(frames) - 1


def test_one_call_per_frame_and_max_batch(model, frames):
    cfg = config(update_interval=3, online_size=2)
    boxes = [(20, 30, 30, 25), (80, 40, 25, 35), (50, 60, 40, 30)]
    mt = MultiTracker(model, cfg)
    for b in boxes:
        mt.add(frames[0], b)
    assert mt.target_ids == (0, 1, 2)
    for f in frames[1:5]:
        mt.update(f)
    assert mt.num_network_calls == 4
    chunked = MultiTracker(model, cfg, max_batch=2)
    for b in boxes:
        chunked.add(frames[0], b)
    for f in frames[1:5]:
        res = chunked.update(f)
    assert chunked.num_network_calls == 8
    for tid in mt.target_ids:
        np.testing.assert_allclose(res[tid].box, mt.state(tid), atol=1e-3)
        assert chunked.num_online_templates(tid) == 2


def test_cache_stack_split_round_trip(model, frames):
    torch.manual_seed(1)
    z = torch.randn(3, 3, 64, 64)
    online = torch.randn(3, 2, 3, 64, 64)
    with torch.inference_mode():
        cache = model.encode_templates(z, online)
    rows = split_cache(cache)
    assert len(rows) == 3 and rows[1].template_feat.shape[0] == 1
    back = stack_caches(rows)
    assert torch.equal(back.template_feat, cache.template_feat)
    assert torch.equal(back.kv[-1][0], cache.kv[-1][0])
    other = model.encode_templates(z[:1], online[:1, :1])
    with pytest.raises(ValueError, match="different numbers of online templates"):
        stack_caches([rows[0], other])


def test_errors(model, frames):
    mt = MultiTracker(model, config())
    assert mt.update(frames[0]) == {}
    tid = mt.add(frames[0], (10, 10, 20, 20))
    with pytest.raises(ValueError, match="already tracked"):
        mt.add(frames[0], (30, 30, 20, 20), target_id=tid)
    with pytest.raises(ValueError, match="positive width"):
        mt.add(frames[0], (30, 30, 0, 20))
    with pytest.raises(ValueError, match="frame size changed"):
        mt.update(np.zeros((50, 60, 3), np.uint8))
    with pytest.raises(KeyError, match="no target with id 9"):
        mt.remove(9)
    with pytest.raises(ValueError, match="crop sizes"):
        MultiTracker(model, TrackerConfig())
    mt.remove(tid)
    assert len(mt) == 0
    # with no targets left, a new video of another size may start
    assert mt.add(np.zeros((50, 60, 3), np.uint8), (5, 5, 10, 10)) == 1


def test_cli_track_several_boxes(tmp_path):
    """`mixformer track --box A --box B`: frame,target,x,y,w,h lines and one video."""
    import cv2

    from mixformer.cli import main

    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(generate_sequence(7, num_frames=2, height=120, width=160).frames):
        cv2.imwrite(str(folder / f"{i:04d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    boxes, video = tmp_path / "boxes.txt", tmp_path / "out.mp4"
    argv = ["track", str(folder), "--box", "20,30,30,25", "--box", "80 40 25 35"]
    assert main([*argv, "--boxes", str(boxes), "--output", str(video)]) == 0
    rows = [line.split(",") for line in boxes.read_text().splitlines()]
    assert [(int(r[0]), int(r[1])) for r in rows] == [(f, t) for f in range(2) for t in range(2)]
    assert [float(v) for v in rows[1][2:]] == [80.0, 40.0, 25.0, 35.0]
    assert video.is_file() and video.stat().st_size > 0
    assert main(["track", str(folder), "--box", "20,30,30,25", "--box", "1,2,0,4"]) == 2


def test_benchmark_multi_reports_matching_boxes(model):
    from mixformer.perf.multi_benchmark import benchmark_multi, format_table

    rows = benchmark_multi(model, (1, 2), num_frames=2, warmup=1, height=120, width=160)
    assert [r.num_targets for r in rows] == [1, 2]
    for r in rows:
        assert r.separate_ms > 0 and r.multi_ms > 0 and r.frames == 2
        assert r.max_box_diff < 1e-3
    table = format_table(rows)
    assert table.count("\n") == 3 and "| 2 |" in table
    with pytest.raises(ValueError, match=">= 1"):
        benchmark_multi(model, (0,))


def test_fast_path_matches_fast_single_tracker(model, frames):
    cfg = config(update_interval=2, online_size=2)
    boxes = [(20, 30, 30, 25), (80, 40, 25, 35)]
    mt = MultiTracker(model, cfg, fast=True)
    ids = [mt.add(frames[0], b) for b in boxes]
    got = [mt.update(f) for f in frames[1:4]]
    for tid, box in zip(ids, boxes):
        single = Tracker(model, cfg, fast=True)
        single.init(frames[0], box)
        for f, res in zip(frames[1:4], got):
            np.testing.assert_allclose(res[tid].box, single.update(f).box, atol=1e-3)
