"""CUDA graphs of the search step (mixformer.tracking.cuda_graphs), with the capture emulated on
the CPU: the graph bookkeeping (static inputs, cache reloads, cloned outputs, one graph per
layout, eager fallback) is what is tested here; the real capture ran on an H200
(tools/device_check.py, docs/speed.md#gpu)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from conftest import micro_config
from mixformer import Engine, MultiTracker, Tracker
from mixformer.datagen.synthetic import generate_sequence
from mixformer.tracking.backends import build_network
from mixformer.tracking.cuda_graphs import (
    ENV_VAR,
    GraphedSearch,
    cuda_graphs_enabled,
    tensors_of,
)


def emulated_capture(fn):
    """What a CUDA graph does, on the CPU: outputs live in fixed tensors, and a replay re-runs
    the recorded work on whatever the static inputs hold now, rewriting those tensors."""
    outputs = fn()

    def replay() -> None:
        for dst, src in zip(tensors_of(outputs), tensors_of(fn()), strict=True):
            dst.copy_(src)

    return replay, outputs


@dataclass
class Cache:
    kv: list
    num_online: int


def step(search, cache, prior):
    out = {"a": search * cache.kv[0][0] + cache.num_online}
    if prior is not None:
        out["p"] = prior + 1
    return out


def test_replays_follow_new_inputs_and_new_caches():
    g = GraphedSearch(capture=emulated_capture)
    c1 = Cache([(torch.full((2,), 2.0), torch.zeros(2))], 1)
    c2 = Cache([(torch.full((2,), 3.0), torch.zeros(2))], 1)
    x = torch.tensor([1.0, 2.0])
    first = g(step, x, c1, None)
    assert torch.equal(first["a"], torch.tensor([3.0, 5.0]))
    second = g(step, x + 1, c1, None)  # same cache object: only the search is reloaded
    assert torch.equal(second["a"], torch.tensor([5.0, 7.0]))
    third = g(step, x, c2, None)  # another cache: reloaded
    assert torch.equal(third["a"], torch.tensor([4.0, 7.0]))
    assert torch.equal(first["a"], torch.tensor([3.0, 5.0]))  # outputs were cloned
    assert g.num_captures == 1 and g.num_replays == 3
    # another layout (a prior; another number of online templates): a graph each
    out = g(step, x, c2, torch.zeros(2))
    assert torch.equal(out["p"], torch.ones(2))
    g(step, x, Cache(c2.kv, 2), None)
    assert g.num_captures == 3
    # the key also holds the tag
    g(step, x, c2, None, tag=True)
    assert g.num_captures == 4


def test_capture_failure_runs_eagerly_from_then_on(caplog):
    def broken(fn):
        raise RuntimeError("operation not permitted when stream is capturing\nmore")

    g = GraphedSearch(capture=broken)
    c = Cache([(torch.ones(2), torch.ones(2))], 1)
    out = g(step, torch.ones(2), c, None)
    assert torch.equal(out["a"], torch.full((2,), 2.0))
    assert g.failed == "RuntimeError: operation not permitted when stream is capturing"
    assert "runs eagerly" in caplog.text
    g(step, torch.ones(2), c, None)
    assert g.num_captures == 0


def test_least_recently_used_graphs_are_dropped():
    g = GraphedSearch(capture=emulated_capture, max_graphs=2)
    c = Cache([(torch.ones(2), torch.ones(2))], 1)
    for n in (1, 2, 3, 1):
        g(step, torch.ones(n), Cache([(torch.ones(n), torch.ones(n))], 1), None)
    assert g.num_captures == 4  # n=1 was dropped when n=3 came, n=2 when n=1 came back
    g(step, torch.ones(3), Cache([(torch.ones(3), torch.ones(3))], 1), None)
    assert g.num_captures == 4  # n=3 is still kept
    g(step, torch.ones(2), c, None)
    assert g.num_captures == 5


def test_env_var_turns_graphs_off(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert cuda_graphs_enabled()
    for off in ("0", "off", "false"):
        monkeypatch.setenv(ENV_VAR, off)
        assert not cuda_graphs_enabled()


@pytest.mark.parametrize("observe", [False, True])
def test_tracker_through_graphs_gives_the_eager_boxes(micro_model, observe):
    # template updates every 3 frames: the cache changes under the graph; observe=True also
    # replays the corner head's features
    frames = generate_sequence(11, num_frames=12, height=120, width=160).frames
    cfg = micro_config(update_interval=3, online_size=2)
    net = build_network(micro_model, "fp32", "torch", fast=True)
    eager, graphed = Engine(net, micro_model), Engine(net, micro_model)
    assert eager.graphs is None  # a CPU engine never uses them
    graphed.graphs = GraphedSearch(capture=emulated_capture)
    runs = []
    for eng in (eager, graphed):
        t = Tracker(eng, cfg)
        t.init(frames[0], (20, 30, 30, 25))
        runs.append([t.update(f, observe=observe) for f in frames[1:]])
    for a, b in zip(*runs, strict=True):
        assert a.box == b.box and a.score == b.score
        if observe:
            np.testing.assert_array_equal(a.observation.heatmaps, b.observation.heatmaps)
    # two cache layouts: the first template alone, then with two online templates
    assert graphed.graphs.num_captures == 2 and graphed.graphs.num_replays == len(frames) - 1
    # MultiTracker: the batched calls replay too, one graph per number of targets
    multi = MultiTracker(graphed, cfg)
    multi.add(frames[0], (20, 30, 30, 25))
    multi.add(frames[0], (90, 50, 28, 30))
    for f in frames[1:4]:
        res = multi.update(f)
    assert graphed.graphs.num_captures == 3
    single = Tracker(eager, cfg)
    single.init(frames[0], (90, 50, 28, 30))
    for f in frames[1:4]:
        box = single.update(f).box
    assert np.allclose(res[multi.target_ids[1]].box, box, atol=1e-3)
