"""End-to-end tracker benchmark: time per frame and its parts, GMACs, matmul peak, accuracy.

The tracker runs on a generated 640x480 sequence (procedural, or composited from the real photos
shipped with the package) and is timed through its public observation API
(``Tracker.update(frame, observe=True)``, whose :class:`~mixformer.tracking.Observation` carries
the crop, network and template-encoding times of the step). Every figure is a median over the
timed frames, after warm-up frames:

* ``crop``: search-region crop, resize and normalisation (plus template crops when taken);
* ``network``: the search step (``engine.track``);
* ``templates``: template re-encoding, amortised over all frames (total time / frames);
* ``post``: the rest of ``Tracker.update`` (box decoding, clipping, online-template rule);
* ``total``: the whole ``Tracker.update`` call, so ``fps = 1 / total``.

The achieved rate of the network is ``2 * MACs / network time`` next to the matrix-multiply peak of
this machine measured in the same process, dtype and thread count: a square matrix multiply
timed after every tracked frame, so that it sees the same load as the network (median).
"""

from __future__ import annotations

import dataclasses
import logging
import resource
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from mixformer.models.fuse import resolve_dtype
from mixformer.models.mixformer import MixFormer

log = logging.getLogger(__name__)


def matmul_peak(
    dtype: str | torch.dtype = "fp32",
    size: int = 1024,
    repeats: int = 7,
    threads: int | None = None,
) -> float:
    """Median GFLOP/s of a square ``size x size`` matrix multiply in ``dtype`` on the CPU.

    Args:
        dtype: ``"fp32"``, ``"bf16"`` or ``"fp16"``.
        size: matrix side (1024 keeps a low-precision probe short on CPUs without native
            support).
        repeats: timed repetitions after one warm-up.
        threads: torch intra-op threads for the probe (default: current setting).
    """
    dt = resolve_dtype(dtype)
    old = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        g = torch.Generator().manual_seed(0)
        a = torch.randn(size, size, generator=g).to(dt)
        b = torch.randn(size, size, generator=g).to(dt)
        F.linear(a, b)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            F.linear(a, b)
            times.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(old)
    return 2 * size**3 / statistics.median(times) / 1e9


class _PeakProbe:
    """Matrix-multiply rate probed between tracked frames, so it sees the same machine load."""

    def __init__(self, dtype: str | torch.dtype, size: int) -> None:
        g = torch.Generator().manual_seed(0)
        dt = resolve_dtype(dtype)
        self.size = size
        self.a = torch.randn(size, size, generator=g).to(dt)
        self.b = torch.randn(size, size, generator=g).to(dt)
        F.linear(self.a, self.b)
        self.rates: list[float] = []

    def __call__(self) -> None:
        # F.linear, the op of the network's layers (its low-precision CPU kernels differ from
        # torch.mm's).
        t0 = time.perf_counter()
        F.linear(self.a, self.b)
        self.rates.append(2 * self.size**3 / (time.perf_counter() - t0) / 1e9)

    def median(self) -> float:
        return statistics.median(self.rates)


def count_search_gmacs(model: MixFormer, num_online: int = 1, joint: bool = False) -> float:
    """Multiply-accumulates (in 1e9) of one search step ``model.track``, counted by PyTorch's
    FLOP counter on the plain path (matmuls, convolutions; elementwise work excluded).

    Args:
        joint: count the reference tracker's step instead, through the protocol that
            ``--compare`` times (:class:`mixformer.perf.reference.ReferenceProtocol`): the joint
            forward ``model(template, online, search)`` with one online template.
    """
    from torch.utils.flop_counter import FlopCounterMode

    from mixformer.perf.reference import ReferenceProtocol

    net = ReferenceProtocol(model, joint)
    c = model.config
    dev = next(model.parameters()).device
    z = torch.zeros(1, 3, c.template_size, c.template_size, device=dev)
    o = torch.zeros(1, num_online, 3, c.template_size, c.template_size, device=dev)
    x = torch.zeros(1, 3, c.search_size, c.search_size, device=dev)
    # no_grad, not inference_mode: the counter's module hooks need autograd-capable tensors.
    with torch.no_grad():
        cache = net.encode_templates(z, o)
        counter = FlopCounterMode(display=False)
        with counter:
            net.track(x, cache)
    return counter.get_total_flops() / 2 / 1e9


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (``getrusage``)."""
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 / (1024 if sys.platform == "darwin" else 1)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of matching rows of two ``(T, 4)`` xywh box arrays."""
    x1 = np.maximum(a[:, 0], b[:, 0])
    y1 = np.maximum(a[:, 1], b[:, 1])
    x2 = np.minimum(a[:, 0] + a[:, 2], b[:, 0] + b[:, 2])
    y2 = np.minimum(a[:, 1] + a[:, 3], b[:, 1] + b[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    union = a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter
    return inter / np.maximum(union, 1e-12)


@dataclass
class PathTiming:
    """Per-frame medians (seconds) of one tracker configuration, plus its boxes.

    Attributes:
        label: e.g. ``"fast torch fp32"``.
        crop, network, templates, post, total: see the module docstring.
        boxes: ``(T, 4)`` xywh boxes of every tracked frame (warm-up included).
        gmacs: MACs (1e9) of this path's network step where they differ from the report's
            (the reference's joint forward); None: the report's.
    """

    label: str
    crop: float
    network: float
    templates: float
    post: float
    total: float
    boxes: np.ndarray = field(repr=False)
    gmacs: float | None = None

    @property
    def fps(self) -> float:
        return 1.0 / self.total


class _Probe:
    """Times one tracker through its public observation API (``update(frame, observe=True)``)."""

    def __init__(self, tracker: Any, label: str) -> None:
        self.tracker, self.label = tracker, label
        self.rows: list[tuple[float, float, float, float]] = []
        self.boxes: list[tuple[float, ...]] = []

    def step(self, frame: np.ndarray) -> None:
        t0 = time.perf_counter()
        res = self.tracker.update(frame, observe=True)
        total = time.perf_counter() - t0
        obs = res.observation
        self.boxes.append(res.box)
        self.rows.append((obs.crop_seconds, obs.network_seconds, obs.template_seconds, total))

    def summary(self, warmup: int) -> PathTiming:
        rows = self.rows[warmup:] or self.rows
        crop, net, enc, total = (np.asarray(c) for c in zip(*rows))
        enc_amortised = float(enc.sum() / len(enc))
        # Frames with a template update are slower by the encode time; remove it from the
        # median total and add it back amortised, so a rare update counts at its real weight.
        total_wo = total - enc
        return PathTiming(
            label=self.label,
            crop=float(np.median(crop)),
            network=float(np.median(net)),
            templates=enc_amortised,
            post=float(np.median(total_wo - crop - net)),
            total=float(np.median(total_wo)) + enc_amortised,
            boxes=np.asarray(self.boxes, dtype=np.float64),
        )


@dataclass
class BenchmarkReport:
    """Result of :func:`run_benchmark`.

    Attributes:
        model: preset name.
        dtype, backend, threads, frames, warmup: settings.
        paths: one :class:`PathTiming` per configuration run (the reference, or the
            ``compare_dtype`` fast path, first when ``compare``).
        gmacs: MACs (1e9) of one search step.
        peak_gflops: matmul rate in the benchmark dtype (GFLOP/s, median over the frames).
        peak_gflops_fp32: fp32 matmul rate (GFLOP/s, 1024^3 multiply, median over the frames).
        peak_rss_mb: peak resident memory of the process (MiB).
        mean_iou: mean IoU of the last path's boxes against the first path's (``compare``).
        scene: ``"synthetic"`` or ``"photos"``.
        update_interval / online_size: the tracker's template schedule.
    """

    model: str
    dtype: str
    backend: str
    threads: int
    frames: int
    warmup: int
    paths: list[PathTiming]
    gmacs: float
    peak_gflops: float
    peak_gflops_fp32: float
    peak_rss_mb: float
    mean_iou: float | None = None
    scene: str = "synthetic"
    update_interval: int = 0
    online_size: int = 0

    def format(self) -> str:
        """Human-readable multi-line table."""
        lines = [
            f"model {self.model}  dtype {self.dtype}  backend {self.backend}  threads "
            f"{self.threads}  frames {self.frames} (+{self.warmup} warm-up, {self.scene} scene, "
            f"templates every {self.update_interval} frames x {self.online_size})  medians per "
            "frame",
            f"network: {self.gmacs:.2f} GMACs per search step"
            + "".join(
                f" ({p.label}: {p.gmacs:.2f}, the joint forward)" for p in self.paths if p.gmacs
            )
            + "; matmul peak measured now: "
            f"fp32 {self.peak_gflops_fp32:.1f} GFLOP/s"
            + (f", {self.dtype} {self.peak_gflops:.1f} GFLOP/s" if self.dtype != "fp32" else ""),
            f"{'path':<24}{'total ms':>9}{'FPS':>7}{'crop':>7}{'network':>9}{'templ.':>8}"
            f"{'post':>7}{'GFLOP/s':>9}{'% peak':>8}",
        ]
        for p in self.paths:
            rate = 2 * (p.gmacs or self.gmacs) / p.network
            peak = self.peak_gflops_fp32 if "fp32" in p.label else self.peak_gflops
            lines.append(
                f"{p.label:<24}{p.total * 1e3:>9.1f}{p.fps:>7.2f}{p.crop * 1e3:>7.1f}"
                f"{p.network * 1e3:>9.1f}{p.templates * 1e3:>8.1f}{p.post * 1e3:>7.1f}"
                f"{rate:>9.1f}{100 * rate / peak:>7.0f}%"
            )
        if len(self.paths) > 1:
            a, b = self.paths[0], self.paths[-1]
            lines.append(
                f"speed-up {b.label} vs {a.label}: network x{a.network / b.network:.2f}, "
                f"end-to-end x{a.total / b.total:.2f}"
            )
        if self.mean_iou is not None:
            lines.append(
                f"mean IoU of {self.paths[-1].label} boxes vs {self.paths[0].label} boxes: "
                f"{self.mean_iou:.4f}"
            )
        lines.append(f"peak memory (RSS): {self.peak_rss_mb:.0f} MiB")
        return "\n".join(lines)


def benchmark_frames(
    num_frames: int, seed: int, scene: str = "synthetic"
) -> tuple[list[np.ndarray], np.ndarray]:
    """640x480 frames and ground-truth boxes: procedural (``"synthetic"``) or composited from
    the real photos shipped with the package (``"photos"``, the demo's scene)."""
    if scene == "photos":
        from mixformer.datagen.composite import Corpus, demo_photos, make_composite_scene

        comp = make_composite_scene(
            Corpus(demo_photos(), "all"), seed, "plain", num_frames, 480, 640, name="bench"
        )
        return [comp.render(i) for i in range(len(comp))], np.asarray(comp.boxes, np.float64)
    if scene != "synthetic":
        raise ValueError(f"scene must be 'synthetic' or 'photos', got {scene!r}")
    from mixformer.datagen.synthetic import generate_sequence

    seq = generate_sequence(seed, num_frames, 480, 640)
    return list(seq.frames), np.asarray(seq.boxes, dtype=np.float64)


REFERENCE_LABEL = "reference fp32"
"""The benchmark's name of the reference tracker's protocol (:mod:`mixformer.perf.reference`)."""


def path_label(plain: bool, dtype: str = "fp32", backend: str = "torch") -> str:
    """The benchmark's name of a tracker configuration, e.g. ``"fast torch fp32"``."""
    if backend != "torch":
        return f"{backend} {dtype}"
    return f"{'plain' if plain else 'fast'} torch {dtype}"


def run_benchmark(
    model: MixFormer,
    dtype: str = "fp32",
    backend: str = "torch",
    threads: int | None = None,
    frames: int = 20,
    warmup: int = 3,
    compare: bool = False,
    tracker_config: Any = None,
    seed: int = 0,
    plain: bool = False,
    scene: str = "synthetic",
    compare_dtype: str | None = None,
    progress: bool = True,
) -> BenchmarkReport:
    """Track a generated sequence with the default tracker (or ``plain``) and time it.

    Args:
        model: plain network (CPU, eval).
        dtype: ``"auto" | "fp32" | "bf16" | "fp16"`` (the latter two on the fast path; auto:
            :func:`~mixformer.tracking.backends.resolve_dtype_setting`).
        backend: ``"torch"`` or ``"onnxruntime"``.
        threads: torch (and ONNX Runtime) intra-op threads; default: the current setting.
        frames: timed frames (after ``warmup`` untimed ones).
        warmup: frames excluded from the medians.
        compare: also run the reference tracker's per-frame work in the plain fp32
            arithmetic (:func:`mixformer.perf.reference.reference_engine`: the joint forward
            every frame where the reference runs it, MixFormerV2 and one online template; the
            cached step otherwise), or the fast path in ``compare_dtype``, on the same frames,
            alternating frame by frame with the measured path (so both see the same machine
            load), and report the ratio and the mean IoU of the measured path's boxes against
            that path's.
        tracker_config: :class:`~mixformer.tracking.TrackerConfig` (default: interval 10,
            2 online templates, so template updates are part of the measurement).
        seed: sequence seed.
        plain: measure the plain path (``Tracker(fast=False)``, cached templates) instead of the
            default fast one (torch fp32 only; not with ``compare``).
        scene: ``"synthetic"`` (procedural) or ``"photos"`` (composited from real photos).
        compare_dtype: with ``compare``, the path run side by side is the fast torch path in
            this dtype (e.g. ``"fp32"`` next to a bf16 run) instead of the reference.
        progress: show a tqdm bar over the frames (on stderr; not part of the timings).
    Returns:
        :class:`BenchmarkReport` (its ``dtype`` resolved).
    Raises:
        ValueError: ``plain`` with another dtype or backend, or with ``compare``.
    """
    from mixformer.perf.reference import reference_engine, runs_joint_forward
    from mixformer.tracking import Tracker
    from mixformer.tracking.backends import auto_bf16_of, resolve_dtype_setting
    from mixformer.tracking.core import reference_config

    if plain and (dtype not in ("auto", "fp32") or backend != "torch"):
        raise ValueError("the plain path runs torch fp32 only")
    if plain and compare:
        raise ValueError("compare runs the reference next to the default path; drop plain")
    bf16_ok = auto_bf16_of(model)
    dtype = resolve_dtype_setting(dtype, "cpu", backend, not plain, bf16_ok)
    if threads:
        torch.set_num_threads(threads)
    n_threads = torch.get_num_threads()
    cfg = tracker_config or reference_config(model).replace(update_interval=10, online_size=2)
    seq_frames, gt = benchmark_frames(frames + warmup + 1, seed, scene)
    probes: list[_Probe] = []
    # threads=0: the trackers run with the count set here (or torch's), not their own default
    if compare and compare_dtype:
        other = resolve_dtype_setting(compare_dtype, "cpu", "torch", True, bf16_ok)
        probes.append(
            _Probe(
                Tracker(model, cfg, dtype=other, backend="torch", threads=0),
                path_label(False, other),
            )
        )
    elif compare:
        reference = Tracker(reference_engine(model, cfg), cfg, threads=0)
        probes.append(_Probe(reference, REFERENCE_LABEL))
    tracker = Tracker(model, cfg, dtype=dtype, backend=backend, fast=not plain, threads=0)
    probes.append(_Probe(tracker, path_label(plain, dtype, backend)))
    # fp32 probe at 1024 (~25 ms at 80 GFLOP/s); low-precision probes smaller, since CPUs
    # without native bf16/fp16 matmul run them 10-100x slower.
    peak32 = _PeakProbe("fp32", 1024)
    low = next((p.label.split()[-1] for p in probes if not p.label.endswith("fp32")), "fp32")
    peak_dt = peak32 if low == "fp32" else _PeakProbe(low, 512)
    for p in probes:
        p.tracker.init(seq_frames[0], gt[0])
    bar = tqdm(total=len(seq_frames) - 1, desc="benchmark", unit="frame", disable=not progress)
    for i, frame in enumerate(seq_frames[1:], start=1):
        # alternate which path goes first, so drifting load and cache warmth bias neither
        for p in probes if i % 2 else probes[::-1]:
            p.step(frame)
        if i > warmup or i == len(seq_frames) - 1:
            peak32()
            if peak_dt is not peak32:
                peak_dt()
        log.debug("frame %d/%d", i, len(seq_frames) - 1)
        bar.update()
    bar.close()
    paths = [p.summary(warmup) for p in probes]
    if compare and not compare_dtype and runs_joint_forward(model, cfg):
        paths[0] = dataclasses.replace(paths[0], gmacs=count_search_gmacs(model, 1, joint=True))
    mean_iou = None
    if compare:
        mean_iou = float(box_iou(paths[0].boxes, paths[-1].boxes).mean())
    return BenchmarkReport(
        model=model.name or "custom",
        dtype=dtype,
        backend=backend,
        threads=n_threads,
        frames=frames,
        warmup=warmup,
        paths=paths,
        gmacs=count_search_gmacs(model, cfg.online_size),
        peak_gflops=peak_dt.median(),
        peak_gflops_fp32=peak32.median(),
        peak_rss_mb=peak_rss_mb(),
        mean_iou=mean_iou,
        scene=scene,
        update_interval=cfg.update_interval,
        online_size=cfg.online_size,
    )
