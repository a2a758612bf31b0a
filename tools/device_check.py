"""GPU check of every preset, in one run (issue 24 item 5; not part of the package).

On a CUDA machine::

    python tools/device_check.py --out gpu.json

runs, per section, with a time budget (``--budget-s``, default 420 s; what is left when it runs
out is marked ``skipped (budget)``):

* ``net``: every preset's network (random weights from a fixed seed) on the preset's template /
  search crop sizes, on CUDA in fp32 (plain path and fast path), bf16 and fp16 (fast path),
  against the plain path in fp32 on the CPU: max abs difference of ``pred_boxes`` (normalised
  cxcywh) and of ``pred_scores`` (logits). TF32 is off in this section, so fp32 means fp32.
* ``weights``: the shipped default model (``weights="default"``) tracking the demo's photo
  scene (``--weights-frames`` frames) on CUDA in each dtype against the same tracker on the CPU
  in fp32: largest and mean box difference (pixels) and how often the online-template decision
  (score >= 0.5) differs.
* ``fps``: end-to-end time per frame of the default tracker (``Tracker(model, device=...)``,
  fast path) per preset and dtype on the benchmark's generated 640x480 sequence
  (:func:`mixformer.perf.benchmark.benchmark_frames`; templates every 10 frames x 2, as
  ``mixformer benchmark``), timed through ``update(frame, observe=True)`` like
  :func:`mixformer.perf.benchmark.run_benchmark` (which runs on the CPU only, so its per-frame
  probe is repeated here with a ``device``). On CUDA the ``network`` part is the time to queue
  the kernels; the wait for them lands in ``post`` (``total`` and FPS are exact).
* ``multi``: ``MultiTracker`` with 16 targets (``--targets``) against 16 separate ``Tracker``
  objects on the same frames: ms per frame, speed-up, largest box difference.
* ``train``: one training step (``--train-steps``; the last one is timed) of one preset per
  family with AMP (fp16 with a ``GradScaler`` as ``Trainer`` does on CUDA, and bf16):
  ``build_network`` (stage 1), ``build_optimizer``, ``stage_loss`` on a random batch.
* ``compile`` (only with ``--compile MODE``): the fast engine with ``torch.compile`` on its
  search step (``mode="reduce-overhead"`` uses CUDA graphs) against the default tracker, with
  the compilation time; run last, and only while at least ``--compile-min-s`` of the budget is
  left.

It prints one markdown table (a row per preset) and writes it to ``--out`` as JSON (rewritten
after every step, so a killed run leaves what it had). ``--cpu`` runs the same code on the CPU
with shrunken configs of a few presets and 1-2 frames (the test of this script).
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import math
import os
import platform
import signal
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mixformer import MultiTracker, Tracker, build_model
from mixformer.models import get_config, list_models
from mixformer.models.config import DEFAULT_MODEL
from mixformer.perf.benchmark import PathTiming, benchmark_frames, path_label
from mixformer.tracking.core import reference_config
from mixformer.tracking.engines import Engine
from mixformer.tracking.engines import build_network as build_tracking_network
from mixformer.train import TrainConfig, build_network
from mixformer.train.losses import stage_loss
from mixformer.train.optim import build_optimizer

SKIPPED = "skipped (budget)"
DTYPES = ("fp32", "bf16", "fp16")
NET_PATHS = ("fp32-plain", *DTYPES)  # CUDA paths compared with the CPU fp32 plain path
SECTIONS = ("net", "weights", "fps", "multi", "train", "compile")

# --cpu: shrunken members of each family (same code, seconds instead of minutes).
CPU_OVERRIDES: dict[str, dict[str, Any]] = {
    "mixformer-tiny": {},
    "mixformer-mbv3": {"depth": 1, "template_size": 64, "search_size": 128},
    "mixformerv2-s": {
        "depth": 1,
        "embed_dim": 64,
        "num_heads": 2,
        "template_size": 64,
        "search_size": 128,
    },
    "mixvit-b": {
        "depth": 1,
        "embed_dim": 64,
        "num_heads": 2,
        "template_size": 64,
        "search_size": 128,
    },
    "mixvit-convmae-b": {
        "dims": (16, 32, 64),
        "depths": (1, 1, 1),
        "num_heads": 2,
        "template_size": 64,
        "search_size": 128,
    },
}
CPU_PRESETS = tuple(CPU_OVERRIDES)
GPU_COMPILE_PRESETS = ("mixformer-mbv3", "mixformer-22k", "mixformerv2-b")


class HardLimit(Exception):
    """Raised by the alarm at ``--hard-limit-s``: the running step is abandoned."""


# -- bookkeeping ----------------------------------------------------------------------------
class Run:
    """Rows, section states, the budget and the JSON file."""

    def __init__(self, args: argparse.Namespace, device: torch.device) -> None:
        self.args = args
        self.device = device
        self.t0 = time.monotonic()
        self.deadline = self.t0 + args.budget_s
        self.rows: dict[str, dict[str, Any]] = {}
        self.sections: dict[str, str] = {}
        self.errors: list[str] = []
        self.notes: list[str] = []
        self.env = environment(device)
        self.models: dict[str, torch.nn.Module] = {}  # built once per run
        self.skipped = 0  # steps skipped in the current section

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def row(self, preset: str) -> dict[str, Any]:
        return self.rows.setdefault(preset, {"preset": preset})

    def step(self, preset: str, keys: tuple[str, ...], fn: Callable[[], dict[str, Any]]) -> None:
        """Run one unit of work into ``preset``'s row; on budget, error or hard limit, mark
        ``keys`` instead."""
        row = self.row(preset)
        if self.left() <= 0:
            row.update(dict.fromkeys(keys, SKIPPED))
            self.skipped += 1
            return
        t0 = time.monotonic()
        try:
            row.update(fn())
        except HardLimit:
            self.deadline = 0.0
            self.skipped += 1
            row.update(dict.fromkeys(keys, "skipped (hard limit)"))
        except Exception as exc:  # noqa: BLE001 - one failure must not end the device run
            msg = f"error: {type(exc).__name__}: {exc}".replace("\n", " ")[:300]
            row.update(dict.fromkeys(keys, msg))
            self.errors.append(f"{preset} {keys[0]}: {msg}")
            traceback.print_exc()
        finally:
            release(self.device)
        log(f"  {preset}: {keys[0]}.. done in {time.monotonic() - t0:.1f} s")
        self.save()

    def save(self) -> None:
        data = {
            "environment": self.env,
            "settings": {k: v for k, v in vars(self.args).items() if k != "out"},
            "sections": self.sections,
            "elapsed_s": round(self.elapsed(), 1),
            "errors": self.errors,
            "notes": self.notes,
            "rows": list(self.rows.values()),
            "table": format_table(self),
        }
        out = Path(self.args.out)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=1, default=str) + "\n")
        os.replace(tmp, out)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def environment(device: torch.device) -> dict[str, Any]:
    env: dict[str, Any] = {
        "device": str(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
        env["cuda"] = torch.version.cuda
        env["cudnn"] = torch.backends.cudnn.version()
        env["matmul_tf32"] = torch.backends.cuda.matmul.allow_tf32
        env["cudnn_tf32"] = torch.backends.cudnn.allow_tf32
    return env


def release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextmanager
def no_tf32() -> Iterator[None]:
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def make_model(run: Run, preset: str) -> torch.nn.Module:
    """The preset (shrunk with ``--cpu``) with random weights from ``--seed``, eval; built on
    the CPU once per run (trackers move it to the device and share its engines)."""
    if preset not in run.models:
        torch.manual_seed(run.args.seed)
        run.models[preset] = build_model(preset, **overrides(run.args, preset))
    return run.models[preset]


def overrides(args: argparse.Namespace, preset: str) -> dict[str, Any]:
    return CPU_OVERRIDES.get(preset, {}) if args.cpu else {}


def max_abs(a: torch.Tensor | None, b: torch.Tensor | None) -> float | None:
    if a is None or b is None:
        return None
    return float((a.detach().float().cpu() - b.detach().float().cpu()).abs().max())


# -- sections -------------------------------------------------------------------------------
def net_check(run: Run, preset: str) -> dict[str, Any]:
    """Network outputs on the device in each path against the CPU fp32 plain path."""
    args, dev = run.args, run.device
    model = make_model(run, preset).cpu()
    mc = model.config
    g = torch.Generator().manual_seed(args.seed)
    b, n, t, s = args.net_batch, 2, mc.template_size, mc.search_size
    z = torch.randn(b, 3, t, t, generator=g)
    o = torch.randn(b, n, 3, t, t, generator=g)
    x = torch.randn(b, 3, s, s, generator=g)
    with torch.inference_mode():
        ref = model.track(x, model.encode_templates(z, o))
    out: dict[str, Any] = {
        "family": mc.family,
        "crops": f"{t}/{s}",
        "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        "score_ref_absmax": max_abs(ref.get("pred_scores"), torch.zeros(1)),
    }
    dmodel = copy.deepcopy(model).to(dev)
    zd, od, xd = z.to(dev), o.to(dev), x.to(dev)
    with no_tf32():
        for path in NET_PATHS:
            dtype = path.split("-")[0]
            engine = build_tracking_network(dmodel, dtype, "torch", fast=path != "fp32-plain")
            with torch.inference_mode():
                res = engine.track(xd, engine.encode_templates(zd, od))
            sync(dev)
            out[f"box_diff_{path}"] = max_abs(res["pred_boxes"], ref["pred_boxes"])
            out[f"score_diff_{path}"] = max_abs(res.get("pred_scores"), ref.get("pred_scores"))
            del engine, res
    return out


def track_boxes(tracker: Any, frames: list[np.ndarray], box: np.ndarray) -> np.ndarray:
    """``(N-1, 5)`` float64 rows ``x, y, w, h, score`` of ``tracker`` over ``frames[1:]``."""
    tracker.init(frames[0], box)
    rows = []
    for frame in frames[1:]:
        res = tracker.update(frame)
        rows.append((*res.box, np.nan if res.score is None else res.score))
    return np.asarray(rows, dtype=np.float64)


def weights_check(run: Run, frames: list, gt: np.ndarray) -> dict[str, Any]:
    """The shipped default model with its default tracker settings: the device's boxes in each
    dtype against the CPU's fp32 (torch) boxes on the same frames."""
    args, dev = run.args, run.device
    model = build_model(DEFAULT_MODEL, weights="default")
    ref = track_boxes(
        Tracker(copy.deepcopy(model), device="cpu", dtype="fp32", backend="torch", threads=0),
        frames,
        gt[0],
    )
    out: dict[str, Any] = {"weights_frames": len(frames) - 1}
    for dtype in weights_dtypes(args):
        tracker = Tracker(copy.deepcopy(model), device=dev, dtype=dtype, backend="torch", threads=0)
        got = track_boxes(tracker, frames, gt[0])
        diff = np.abs(got[:, :4] - ref[:, :4]).max(axis=1)
        flips = (got[:, 4] >= 0.5) != (ref[:, 4] >= 0.5)
        out[f"weights_box_diff_{dtype}"] = float(diff.max())
        out[f"weights_box_mean_diff_{dtype}"] = float(diff.mean())
        out[f"weights_score_flips_{dtype}"] = int(flips.sum())
        del tracker
    return out


def time_tracker(
    tracker: Any, frames: list[np.ndarray], gt: np.ndarray, warmup: int, label: str
) -> tuple[PathTiming, float, float]:
    """Per-frame medians through ``update(frame, observe=True)``, summarised exactly as
    ``mixformer.perf.benchmark.run_benchmark`` does (its probe is CPU-only), the seconds of
    ``init`` plus the first update (start-up: engine build, compilation) and of the whole run."""
    t0 = time.perf_counter()
    tracker.init(frames[0], gt[0])
    rows, boxes = [], []
    for frame in frames[1:]:
        t1 = time.perf_counter()
        res = tracker.update(frame, observe=True)
        total = time.perf_counter() - t1
        obs = res.observation
        boxes.append(res.box)
        rows.append((obs.crop_seconds, obs.network_seconds, obs.template_seconds, total))
        if len(rows) == 1:
            startup = time.perf_counter() - t0
    timed = rows[warmup:] or rows
    crop, net, enc, total = (np.asarray(c) for c in zip(*timed))
    enc_amortised = float(enc.sum() / len(enc))
    total_wo = total - enc
    timing = PathTiming(
        label=label,
        crop=float(np.median(crop)),
        network=float(np.median(net)),
        templates=enc_amortised,
        post=float(np.median(total_wo - crop - net)),
        total=float(np.median(total_wo)) + enc_amortised,
        boxes=np.asarray(boxes, dtype=np.float64),
    )
    return timing, startup, time.perf_counter() - t0


def tracker_config(model: Any) -> Any:
    """The benchmark's tracker settings: the model's reference preset, templates every 10
    frames x 2 (as ``run_benchmark``)."""
    return reference_config(model).replace(update_interval=10, online_size=2)


def fps_check(run: Run, preset: str, label: str, frames: list, gt: np.ndarray) -> dict[str, Any]:
    """The default tracker in ``label``'s dtype (``"fp32-eager"``: fp32 without CUDA graphs,
    an engine of its own, so the shared graphed one is not reused)."""
    args, dev = run.args, run.device
    model = make_model(run, preset)
    dtype = label.split("-")[0]
    if label.endswith("-eager"):
        model.to(dev)
        eng = Engine(build_tracking_network(model, dtype, "torch", fast=True), model)
        eng.graphs = None
        tracker = Tracker(eng, tracker_config(model), threads=0)
    else:
        tracker = Tracker(model, tracker_config(model), device=dev, dtype=dtype, threads=0)
    timing, startup, _ = time_tracker(tracker, frames, gt, args.warmup, path_label(False, dtype))
    if not np.isfinite(timing.boxes).all():
        raise RuntimeError(f"non-finite boxes from the {label} tracker")
    graphs = tracker.engine.graphs
    res: dict[str, Any] = {}
    if graphs is not None:
        res[f"graphs_{label}"] = {
            "captures": graphs.num_captures,
            "replays": graphs.num_replays,
            "failed": graphs.failed,
        }
    return res | {
        f"fps_{label}": round(timing.fps, 2),
        f"ms_{label}": {
            "total": timing.total * 1e3,
            "crop": timing.crop * 1e3,
            "network": timing.network * 1e3,
            "templates": timing.templates * 1e3,
            "post": timing.post * 1e3,
            "startup_s": startup,
        },
    }


def spread_boxes(seed: int, k: int, height: int, width: int) -> list[tuple[float, ...]]:
    rng = np.random.default_rng(seed)
    side = min(height, width)
    out = []
    for _ in range(k):
        w, h = rng.uniform(0.08, 0.2, size=2) * side
        out.append((float(rng.uniform(0, width - w)), float(rng.uniform(0, height - h)), w, h))
    return out


def multi_check(run: Run, preset: str, frames: list) -> dict[str, Any]:
    """MultiTracker (one batched call per frame) against K Trackers, side by side."""
    args, dev = run.args, run.device
    model = make_model(run, preset)
    cfg = tracker_config(model)
    k = args.targets
    h, w = frames[0].shape[:2]
    boxes = spread_boxes(args.seed, k, h, w)
    # torch: the batched call is what is measured (auto would pick OpenVINO on a CPU)
    multi = MultiTracker(model, cfg, device=dev, threads=0, backend="torch")
    singles = [Tracker(model, cfg, device=dev, threads=0, backend="torch") for _ in range(k)]
    for box, tr in zip(boxes, singles):
        multi.add(frames[0], box)
        tr.init(frames[0], box)
    t_multi, t_sep, diff, calls0 = [], [], 0.0, multi.num_network_calls
    for i, frame in enumerate(frames[1:]):
        for first in (i % 2 == 0, i % 2 == 1):  # alternate which goes first
            t0 = time.perf_counter()
            if first:
                sep = [tr.update(frame).box for tr in singles]
                t_sep.append(time.perf_counter() - t0)
            else:
                res = multi.update(frame)
                t_multi.append(time.perf_counter() - t0)
        got = [res[tid].box for tid in multi.target_ids]
        diff = max(diff, float(np.abs(np.subtract(sep, got)).max()))
    if not math.isfinite(diff):
        raise RuntimeError("non-finite boxes")
    nf = len(frames) - 1
    multi_ms = statistics.median(t_multi[args.warmup :] or t_multi) * 1e3
    sep_ms = statistics.median(t_sep[args.warmup :] or t_sep) * 1e3
    return {
        "multi_targets": k,
        "multi_ms": multi_ms,
        "multi_separate_ms": sep_ms,
        "multi_speedup": sep_ms / multi_ms,
        "multi_max_box_diff_px": diff,
        "multi_calls_per_frame": (multi.num_network_calls - calls0) / nf,
    }


def train_check(run: Run, preset: str, amp: str) -> dict[str, Any]:
    """``--train-steps`` stage-1 steps with autocast in ``amp`` on a random batch; the last
    one timed."""
    args, dev = run.args, run.device
    cfg = TrainConfig(
        stage=1,
        model=preset,
        model_overrides=overrides(args, preset),
        pretrained="",
        amp=True,
        batch_size=args.train_batch,
    ).with_model_crops()
    model = build_network(cfg).to(dev)
    opt = build_optimizer(model, cfg)
    amp_dtype = torch.float16 if amp == "fp16" else torch.bfloat16
    scaler = torch.amp.GradScaler(dev.type, enabled=amp == "fp16")
    trainable = [p for p in model.parameters() if p.requires_grad]
    g = torch.Generator().manual_seed(args.seed)
    b, t, s = cfg.batch_size, cfg.template_size, cfg.search_size
    batch = [torch.randn(b, 3, size, size, generator=g).to(dev) for size in (t, t, s)]
    xy = torch.rand(b, 2, generator=g) * 0.4 + 0.2
    wh = torch.rand(b, 2, generator=g) * 0.2 + 0.1
    anno = torch.cat([xy, wh], dim=1).to(dev)  # normalised xywh
    weights = (cfg.iou_weight, cfg.l1_weight, cfg.score_weight)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    for _ in range(args.train_steps):
        sync(dev)
        t0 = time.perf_counter()
        with torch.autocast(dev.type, dtype=amp_dtype):
            out = model(*batch, run_score_head=False)
        out = {key: v.float() for key, v in out.items()}
        loss, stats = stage_loss(1, out, anno, None, weights)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        grad_norm = float(torch.nn.utils.clip_grad_norm_(trainable, cfg.grad_clip))
        scaler.step(opt)
        scaler.update()
        sync(dev)
        seconds = time.perf_counter() - t0
    if not (math.isfinite(stats["loss"]) and math.isfinite(grad_norm)):
        raise RuntimeError(f"non-finite loss {stats['loss']} or grad norm {grad_norm}")
    res: dict[str, Any] = {
        f"train_{amp}_loss": stats["loss"],
        f"train_{amp}_grad_norm": grad_norm,
        f"train_{amp}_step_ms": seconds * 1e3,
    }
    if dev.type == "cuda":
        res[f"train_{amp}_peak_mib"] = torch.cuda.max_memory_allocated(dev) / 2**20
    return res


class CompiledSearch:
    """A fast engine with ``torch.compile`` on its search step (``encode_templates`` eager);
    outputs are cloned, since CUDA-graph outputs are overwritten by the next replay."""

    def __init__(self, engine: Any, mode: str, backend: str) -> None:
        self.config = engine.config
        self.encode_templates = engine.encode_templates
        kw = {"backend": backend} if backend != "inductor" else {"mode": mode}
        self.compiled = torch.compile(engine.track, dynamic=False, **kw)

    def track(self, search: torch.Tensor, cache: Any, corner_prior: Any = None) -> Any:
        out = self.compiled(search, cache, corner_prior=corner_prior)
        return {key: v.clone() for key, v in out.items()}


def compile_check(run: Run, preset: str, frames: list, gt: np.ndarray) -> dict[str, Any]:
    """Default tracker against the compiled search step (fp32), same frames."""
    args, dev = run.args, run.device
    if run.left() < args.compile_min_s:
        run.skipped += 1
        return {"compile_fps": SKIPPED, "compile_speedup": SKIPPED}
    model = make_model(run, preset)
    cfg = tracker_config(model)
    default = Tracker(model, cfg, device=dev, dtype="fp32", threads=0, backend="torch")
    base, _, base_wall = time_tracker(default, frames, gt, args.warmup, "default")
    engine = CompiledSearch(
        build_tracking_network(model.to(dev), "fp32", "torch", fast=True),
        args.compile,
        args.compile_backend,
    )
    tracker = Tracker(Engine(engine, model), cfg, threads=0)
    comp, startup, wall = time_tracker(tracker, frames, gt, args.warmup, "compiled")
    diff = float(np.abs(comp.boxes - base.boxes).max())
    return {
        "compile_mode": args.compile if args.compile_backend == "inductor" else "eager",
        "compile_fps": round(comp.fps, 2),
        "compile_base_fps": round(base.fps, 2),
        "compile_speedup": base.total / comp.total,
        "compile_startup_s": startup,
        "compile_run_s": wall,
        "compile_base_run_s": base_wall,
        "compile_max_box_diff_px": diff,
        "compile_wins": bool(comp.total < base.total),
    }


# -- output ---------------------------------------------------------------------------------
def fmt(v: Any, spec: str = ".2g") -> str:
    if v is None:
        return "-"
    if isinstance(v, str):
        return "skipped" if v.startswith("skipped") else ("error" if "error" in v else v)
    if isinstance(v, bool):
        return "yes" if v else "no"
    return format(v, spec)


def format_table(run: Run) -> str:
    dev = "CPU (--cpu)" if run.device.type == "cpu" else "CUDA"
    head = ["preset", "crops"]
    head += [f"{p} box / score diff" for p in NET_PATHS]
    head += [f"shipped {d} box diff px (max / mean, flips)" for d in weights_dtypes(run.args)]
    head += [f"FPS {d}" for d in run.args.fps_dtypes]
    head += [f"MultiTracker x{run.args.targets} ms (x speed-up)"]
    head += [f"train {a} loss / ms" for a in run.args.train_amp]
    if run.args.compile:
        head += ["compiled FPS (x speed-up)"]
    lines = [
        f"Device check on {dev}: network diffs are max |device - CPU fp32 plain|.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for r in run.rows.values():
        g = r.get
        cells = [r["preset"], fmt(g("crops"))]
        cells += [
            f"{fmt(g(f'box_diff_{p}'))} / {fmt(g(f'score_diff_{p}'))}"
            if f"box_diff_{p}" in r
            else "-"
            for p in NET_PATHS
        ]
        for d in weights_dtypes(run.args):
            if isinstance(g(f"weights_box_diff_{d}"), float):
                cells.append(
                    f"{r[f'weights_box_diff_{d}']:.2g} / {r[f'weights_box_mean_diff_{d}']:.2g}"
                    f" ({r[f'weights_score_flips_{d}']})"
                )
            else:
                cells.append(fmt(g(f"weights_box_diff_{d}")))
        cells += [fmt(g(f"fps_{d}"), ".1f") for d in run.args.fps_dtypes]
        if isinstance(g("multi_ms"), float):
            cells.append(f"{r['multi_ms']:.1f} (x{r['multi_speedup']:.2f})")
        else:
            cells.append(fmt(g("multi_ms")))
        for a in run.args.train_amp:
            if isinstance(g(f"train_{a}_loss"), float):
                cells.append(f"{r[f'train_{a}_loss']:.3f} / {r[f'train_{a}_step_ms']:.0f}")
            else:
                cells.append(fmt(g(f"train_{a}_loss")))
        if run.args.compile:
            if isinstance(g("compile_fps"), float):
                cells.append(f"{r['compile_fps']:.1f} (x{r['compile_speedup']:.2f})")
            else:
                cells.append(fmt(g("compile_fps")))
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"sections: {run.sections}; {run.elapsed():.0f} s"]
    return "\n".join(lines)


# -- main -----------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", required=True, help="JSON file to write")
    p.add_argument("--cpu", action="store_true", help="run on the CPU, tiny sizes (the test)")
    p.add_argument("--presets", default="", help="comma list (default: all; --cpu: 3 small)")
    p.add_argument("--sections", default=",".join(SECTIONS), help="comma list of sections")
    p.add_argument("--budget-s", type=float, default=420.0, help="time budget (420 s)")
    p.add_argument(
        "--hard-limit-s", type=float, default=0.0, help="abandon the running step (budget + 30)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--frames", type=int, default=0, help="timed frames (40; --cpu: 2)")
    p.add_argument(
        "--warmup",
        type=int,
        default=-1,
        help="warm-up frames (12: one template update, at frame 10, and its new graph; --cpu: 0)",
    )
    p.add_argument("--scene", default="synthetic", choices=("synthetic", "photos"))
    p.add_argument(
        "--weights-frames", type=int, default=0, help="weights section frames (100; --cpu: 3)"
    )
    p.add_argument(
        "--fps-dtypes",
        default="",
        help="tracker dtypes (fp32,bf16,fp16,fp32-eager; --cpu: fp32); X-eager: no CUDA graphs",
    )
    p.add_argument("--net-batch", type=int, default=2, help="batch of the network check (2)")
    p.add_argument("--targets", type=int, default=16, help="MultiTracker targets (16)")
    p.add_argument(
        "--multi-presets", default="", help=f"MultiTracker presets ({DEFAULT_MODEL},mixformer-22k)"
    )
    p.add_argument("--train-amp", default="", help="autocast dtypes (fp16,bf16; --cpu: bf16)")
    p.add_argument("--train-steps", type=int, default=0, help="steps per family (2; --cpu: 1)")
    p.add_argument("--train-batch", type=int, default=0, help="training batch (8; --cpu: 2)")
    p.add_argument(
        "--compile",
        default="",
        help="torch.compile mode of the search step (e.g. reduce-overhead); default: off",
    )
    p.add_argument(
        "--compile-backend", default="inductor", help="inductor (default) or eager (a quick test)"
    )
    p.add_argument(
        "--compile-presets", default="", help=f"({','.join(GPU_COMPILE_PRESETS)}; --cpu: all)"
    )
    p.add_argument(
        "--compile-min-s", type=float, default=90.0, help="budget a compile step needs (90)"
    )
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads with --cpu (1)")
    a = p.parse_args(argv)
    cpu = a.cpu
    names = list_models()
    a.presets = split(a.presets) or (list(CPU_PRESETS) if cpu else names)
    unknown = [n for n in a.presets if n not in names]
    if unknown:
        p.error(f"unknown presets {unknown}; known: {names}")
    a.sections = split(a.sections)
    if set(a.sections) - set(SECTIONS):
        p.error(f"sections are {SECTIONS}")
    a.frames = a.frames or (2 if cpu else 40)
    a.weights_frames = a.weights_frames or (3 if cpu else 100)
    a.warmup = a.warmup if a.warmup >= 0 else (0 if cpu else 12)
    a.fps_dtypes = split(a.fps_dtypes) or (["fp32"] if cpu else [*DTYPES, "fp32-eager"])
    a.train_amp = split(a.train_amp) or (["bf16"] if cpu else ["fp16", "bf16"])
    a.train_steps = a.train_steps or (1 if cpu else 2)
    a.train_batch = a.train_batch or (2 if cpu else 8)
    a.multi_presets = split(a.multi_presets) or (
        a.presets[:1] if cpu else [DEFAULT_MODEL, "mixformer-22k"]
    )
    a.compile_presets = split(a.compile_presets) or (a.presets if cpu else GPU_COMPILE_PRESETS)
    a.hard_limit_s = a.hard_limit_s or a.budget_s + 30
    fps_labels = {*DTYPES, *(f"{d}-eager" for d in DTYPES)}
    if set(a.fps_dtypes) - fps_labels or set(a.train_amp) - {"fp16", "bf16"}:
        p.error("dtypes are fp32, bf16, fp16, each also as X-eager (training: fp16, bf16)")
    return a


def weights_dtypes(args: argparse.Namespace) -> list[str]:
    """The dtypes of ``--fps-dtypes`` without the ``-eager`` variants (same boxes)."""
    return [d for d in args.fps_dtypes if d in DTYPES] or ["fp32"]


def split(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def family_presets(presets: list[str]) -> list[str]:
    """The first preset of each family among ``presets``, then one preset for each family
    missing from them (so the training step covers every family)."""
    out: dict[str, str] = {}
    for name in presets + [n for n in list_models() if n not in presets]:
        out.setdefault(get_config(name).family, name)
    return list(out.values())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.cpu:
        torch.set_num_threads(args.threads)
        device = torch.device("cpu")
    else:
        if not torch.cuda.is_available():
            log("no CUDA device: run with --cpu for the CPU test")
            return 2
        device = torch.device("cuda")
        torch.cuda.init()
    run = Run(args, device)

    def alarm(signum: int, frame: Any) -> None:
        raise HardLimit

    if hasattr(signal, "SIGALRM"):
        signal.signal(signal.SIGALRM, alarm)
        signal.alarm(max(1, int(args.hard_limit_s)))
    for preset in args.presets:
        run.row(preset)
    log(f"device check on {device}: {len(args.presets)} presets, budget {args.budget_s:.0f} s")
    frames: list[np.ndarray] = []
    gt = np.zeros((0, 4))
    if {"fps", "multi", "compile"} & set(args.sections):
        frames, gt = benchmark_frames(args.frames + args.warmup + 1, args.seed, args.scene)
    try:
        for section in SECTIONS:
            if section not in args.sections or (section == "compile" and not args.compile):
                run.sections[section] = "not run"
                continue
            run.skipped = 0
            if run.left() <= 0:
                run.sections[section] = SKIPPED
            else:
                log(f"[{run.elapsed():.0f} s] section {section}")
            if section == "net":
                for preset in args.presets:
                    run.step(preset, ("box_diff_fp32",), lambda p=preset: net_check(run, p))
            elif section == "weights":
                wframes, wgt = benchmark_frames(args.weights_frames + 1, args.seed, "photos")
                run.step(
                    DEFAULT_MODEL,
                    (f"weights_box_diff_{weights_dtypes(args)[0]}",),
                    lambda f=wframes, g=wgt: weights_check(run, f, g),
                )
            elif section == "fps":
                for preset in args.presets:
                    for dt in args.fps_dtypes:
                        run.step(
                            preset,
                            (f"fps_{dt}",),
                            lambda p=preset, d=dt: fps_check(run, p, d, frames, gt),
                        )
            elif section == "multi":
                for preset in args.multi_presets:
                    run.step(preset, ("multi_ms",), lambda p=preset: multi_check(run, p, frames))
            elif section == "train":
                for preset in family_presets(args.presets):
                    for amp in args.train_amp:
                        run.step(
                            preset,
                            (f"train_{amp}_loss",),
                            lambda p=preset, a=amp: train_check(run, p, a),
                        )
            elif section == "compile":
                for preset in args.compile_presets:
                    run.step(
                        preset,
                        ("compile_fps",),
                        lambda p=preset: compile_check(run, p, frames, gt),
                    )
            run.sections.setdefault(section, "partly (budget)" if run.skipped else "done")
    except HardLimit:  # outside a step (between steps, while saving)
        run.deadline = 0.0
        run.notes.append("hard limit reached between steps")
    finally:
        if hasattr(signal, "SIGALRM"):
            signal.alarm(0)
    run.save()
    print(format_table(run))
    if run.errors:
        log(f"{len(run.errors)} step(s) failed: see 'errors' in {args.out}")
    return 1 if run.errors else 0


if __name__ == "__main__":
    sys.exit(main())
