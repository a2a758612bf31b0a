"""The Engine protocol (mixformer.engine), keyword-only tracker options, and track_video."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

import mixformer
from conftest import micro_config
from mixformer import Engine, MultiTracker, Tracker, track_video
from mixformer.datagen.synthetic import generate_sequence

BOXES = [(20, 30, 30, 25), (90, 50, 28, 30)]


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return generate_sequence(5, num_frames=7, height=120, width=160).frames


def test_engine_protocol(micro_model, frames):
    eng = mixformer.engine(micro_model, dtype="fp32")
    assert isinstance(eng, Engine) and eng is mixformer.engine(micro_model, dtype="fp32")
    assert mixformer.engine(eng) is eng
    assert eng.precision == "fp32" and eng.dtype == torch.float32
    assert eng.can_batch and eng.max_batch is None and eng.can_record_attention
    assert eng.has_corner_maps and eng.corner_grid is not None
    assert mixformer.engine(micro_model, fast=False).network is micro_model
    t = Tracker(eng, micro_config())
    t.init(frames[0], BOXES[0])
    template, online = t.templates
    cache = eng.encode_templates(template, online[None])
    cache2, tmaps = eng.encode_templates(template, online[None], attention=True)
    assert tmaps and {m.kind for m in tmaps} == {"template"}
    search = torch.zeros(1, 3, 128, 128)
    out = eng.track(search, cache)
    assert set(out) == {"pred_boxes", "pred_scores"}
    rec = eng.track(search, cache2, attention=True, features=True)
    assert {m.kind for m in rec["attention"]} == {"search"}
    tl, br = eng.corner_maps(rec["features"])
    assert tl.shape == br.shape and tl.shape[0] == 1
    torch.testing.assert_close(rec["pred_boxes"], out["pred_boxes"], atol=1e-4, rtol=0)
    # the shared network's layers never record
    layers = [m for m in eng.network.modules() if hasattr(m, "keep_attention")]
    assert layers and not any(m.keep_attention or m.records for m in layers)
    with pytest.raises(ValueError, match="built already"):
        mixformer.engine(eng, dtype="bf16")


def _run(tracker: Tracker, frames) -> tuple[list, list]:
    tracker.init(frames[0], BOXES[0])
    boxes, maps = [], []
    for f in frames[1:]:
        r = tracker.update(f)
        boxes.append(r.box)
        maps.append(r.attention)
    return boxes, maps


def test_two_threads_one_engine_attention_and_not(micro_model, frames):
    """One tracker records attention, the other not, in two threads over one engine: both give
    their boxes alone, and the one without attention gets no maps."""
    cfg = micro_config(update_interval=2, online_size=2)
    alone_plain = _run(Tracker(micro_model, cfg, dtype="fp32"), frames)[0]
    alone_att = _run(Tracker(micro_model, cfg, dtype="fp32", keep_attention=True), frames)[0]
    a = Tracker(micro_model, cfg, dtype="fp32", threads=0)
    b = Tracker(micro_model, cfg, dtype="fp32", keep_attention=True, threads=0)
    assert a.engine is b.engine
    got: dict[str, tuple[list, list]] = {}

    def work(name: str, tracker: Tracker) -> None:
        for _ in range(3):  # several passes to interleave the calls
            got[name] = _run(tracker, frames)

    threads = [threading.Thread(target=work, args=x) for x in (("a", a), ("b", b))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    np.testing.assert_array_equal(np.array(got["a"][0]), np.array(alone_plain))
    np.testing.assert_array_equal(np.array(got["b"][0]), np.array(alone_att))
    assert all(m is None for m in got["a"][1])
    assert all(m is not None and m.maps for m in got["b"][1])


def test_tracker_options_are_keyword_only(micro_model):
    with pytest.raises(TypeError):
        Tracker(micro_model, micro_config(), "cpu")
    with pytest.raises(TypeError):
        MultiTracker(micro_model, micro_config(), "bf16")
    eng = mixformer.engine(micro_model, dtype="fp32")
    assert Tracker(eng, micro_config()).engine is eng
    with pytest.raises(ValueError, match="built already"):
        Tracker(eng, micro_config(), fast=False)


@pytest.mark.parametrize("n", [1, 2])
def test_track_video_equals_a_manual_loop(micro_model, frames, n):
    cfg = micro_config(update_interval=2, online_size=2)
    got = list(track_video(frames, BOXES[:n], micro_model, config=cfg, dtype="fp32"))
    assert [f.index for f in got] == list(range(len(frames)))
    if n == 1:
        t = Tracker(micro_model, cfg, dtype="fp32")
        want = [{0: t.init(frames[0], BOXES[0]).box}] + [{0: t.update(f).box} for f in frames[1:]]
    else:
        mt = MultiTracker(micro_model, cfg, dtype="fp32")
        want = [{mt.add(frames[0], b): tuple(float(v) for v in b) for b in BOXES}]
        want += [{k: r.box for k, r in mt.update(f).items()} for f in frames[1:]]
    for frame, boxes in zip(got, want, strict=True):
        assert {k: r.box for k, r in frame.results.items()} == boxes
        assert frame.seconds >= 0
    # stopping is simply no longer iterating
    loop = track_video(frames, BOXES[0], micro_model, config=cfg)
    assert next(loop).index == 0 and next(loop).index == 1
    loop.close()


@pytest.fixture
def tf32_on():
    """Both TF32 flags on (PyTorch's cuDNN default), restored afterwards (monkeypatch cannot
    set torch.backends.cuda.matmul's attributes)."""
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    old = cudnn.allow_tf32, matmul.allow_tf32
    cudnn.allow_tf32 = matmul.allow_tf32 = True
    yield
    cudnn.allow_tf32, matmul.allow_tf32 = old


class _FlagProbe:
    """A network that records the TF32 flags it runs under."""

    config = None
    dtype = torch.float32

    def __init__(self) -> None:
        self.seen: list[tuple[bool, bool]] = []

    def _flags(self) -> tuple[bool, bool]:
        return torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32

    def encode_templates(self, template, online):
        self.seen.append(self._flags())
        return "cache"

    def track(self, search, cache, corner_prior=None):
        self.seen.append(self._flags())
        return {"pred_boxes": search}


@pytest.mark.parametrize(
    ("device", "dtype", "exact"),
    [("cuda", "fp32", True), ("cpu", "fp32", False), ("cuda", "bf16", False)],
)
def test_fp32_calls_on_cuda_run_without_tf32(tf32_on, device, dtype, exact):
    # PyTorch's default runs CUDA fp32 convolutions in TF32: dtype="fp32" must be the exact
    # path there too (docs/speed.md#gpu), and the user's flags come back after the call.
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    net = _FlagProbe()
    net.dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    eng = Engine(net, net)
    eng.device = torch.device(device)  # the calls only read it: no CUDA tensor is made
    eng.encode_templates(torch.zeros(1), torch.zeros(1))
    eng.track(torch.zeros(1), "cache")
    assert net.seen == [(not exact, not exact)] * 2
    assert (cudnn.allow_tf32, matmul.allow_tf32) == (True, True)


def test_exact_fp32_nests_across_threads(tf32_on):
    from mixformer.tracking.engines import exact_fp32

    cudnn = torch.backends.cudnn
    inside, release = threading.Event(), threading.Event()
    seen = []

    def worker():
        with exact_fp32():
            inside.set()
            release.wait(5)
            seen.append(cudnn.allow_tf32)

    th = threading.Thread(target=worker)
    th.start()
    inside.wait(5)
    with exact_fp32():  # this call ends first: the worker's call must still see TF32 off
        assert cudnn.allow_tf32 is False
    release.set()
    th.join(5)
    assert seen == [False] and cudnn.allow_tf32 is True
