"""Precision study: does a reduced-precision tracker track like the fp32 one?

:func:`precision_study` tracks the same generated sequences with two trackers over one model,
the reference (fp32) and the studied dtype (bf16 by default), in one process, alternating frame
by frame, and measures:

* **same crops** (the numerical cost alone): on every frame the studied engine also runs on the
  reference tracker's search crop and templates; the decoded boxes are compared (largest edge
  difference in pixels, IoU), and so are the scores against the online-template threshold
  (``score > config.score_threshold``, the decision that takes a template candidate): a *flip*
  is a frame where the two precisions decide differently;
* **end to end**: each tracker follows its own trajectory; per-frame deviation of the boxes
  (pixels, IoU), template updates made, success AUC against the ground truth, and the median
  time per frame of each (same process, alternating order).

The studied precision is ``"bf16"`` or ``"fp16"`` (the fast torch path in that dtype),
``"int8"`` (dynamic int8 quantisation of the fast path's Linear layers, :func:`quantize_int8`:
studied, not offered on the Tracker), or the exported graphs on OpenVINO (``"openvino-fp32"``,
``"-bf16"``, ``"-int8"``) or ONNX Runtime (``"onnxruntime-fp32"``, ``"-int8"``), see
:func:`build_variant`; ``tools/backend_study.py`` runs them all over the presets.
``mixformer benchmark --model M --precision N [--precision-frames F] [--preset P] [--scene S]
[--dtype bf16]`` prints one report (:meth:`PrecisionReport.format`); ``--accuracy N`` runs the
study for bf16 and int8 on small 240x320 sequences and prints one table.
"""

from __future__ import annotations

import logging
import statistics
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from mixformer.export.int8 import INT8_FLOAT_SCOPES
from mixformer.models.mixformer import MixFormer
from mixformer.perf.benchmark import box_iou
from mixformer.tracking.config import TrackerConfig
from mixformer.tracking.core import decode_prediction, resolve_config
from mixformer.tracking.engines import Engine, Network, build_network

log = logging.getLogger(__name__)

VARIANTS: tuple[str, ...] = (
    "fp32",
    "bf16",
    "fp16",
    "int8",
    "openvino-fp32",
    "openvino-bf16",
    "openvino-int8",
    "openvino-int8-whole",
    "onnxruntime-fp32",
    "onnxruntime-int8",
)
"""The variants :func:`precision_study` compares: the torch fast path in a dtype (``"int8"``:
:func:`quantize_int8`), and the exported graphs on another runtime (``"RUNTIME-PRECISION"``;
``"openvino-int8-whole"``: every layer quantised, the variant that showed why the default int8
keeps :data:`~mixformer.export.int8.INT8_FLOAT_SCOPES` in float)."""

CALIBRATION_STEPS = 64
"""Search steps of int8 calibration for the exported-graph variants."""


def quantize_int8(fast: nn.Module) -> nn.Module:
    """Dynamic int8 quantisation of every Linear layer of ``fast`` (in place; fp32 module).

    Weights are stored as int8 per tensor; activations are quantised on the fly per call (the
    ``torch.ao`` dynamic scheme, fbgemm kernels on x86). Convolutions and attention stay fp32.

    Args:
        fast: an fp32 fast network (``build_network(model, "fp32", "torch", True)``).
    Raises:
        ValueError: a module in another dtype.
    """
    if any(p.dtype != torch.float32 for p in fast.parameters()):
        raise ValueError("int8 dynamic quantisation starts from the fp32 fast module")
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        # torch.ao's quantized tensors are deprecated upstream (one more reason this variant is
        # only studied, not offered on the Tracker).
        warnings.simplefilter("ignore", (UserWarning, DeprecationWarning))
        return quantize_dynamic(fast, {nn.Linear}, dtype=torch.qint8, inplace=True)


def build_variant(model: MixFormer, variant: str) -> Network:
    """The network of ``model`` in ``variant`` (one of :data:`VARIANTS`; its own copy).

    ``"openvino-*"`` / ``"onnxruntime-*"``: the exported graphs (from the export cache) on that
    runtime, with the tracker's default thread count; their int8 quantises the mixed-attention
    blocks on :data:`CALIBRATION_STEPS` search steps of composited sequences
    (:func:`mixformer.perf.calibration.calibration_feeds`, cropped with the model's tracker
    settings; ``"openvino-int8-whole"``: every layer). They need ``openvino`` / the ``export``
    extra.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; use one of {', '.join(VARIANTS)}")
    if variant == "int8":
        return quantize_int8(build_network(model, "fp32", "torch", True))
    if "-" not in variant:
        return build_network(model, variant, "torch", True)
    runtime, precision = variant.split("-", 1)
    if runtime == "openvino":
        from mixformer.export.openvino import OpenVinoModel as graphs_class
    else:
        from mixformer.export.onnx import OnnxRuntimeModel as graphs_class
    fp32 = graphs_class.from_model(model)
    if precision == "fp32":
        return fp32
    if precision == "bf16":
        return graphs_class(fp32.onnx_dir, precision="bf16")
    from mixformer.perf.calibration import calibration_feeds

    factor = TrackerConfig.for_model(model).search_factor
    feeds = calibration_feeds(fp32, steps=CALIBRATION_STEPS, search_factor=factor)
    keep_float = () if precision == "int8-whole" else INT8_FLOAT_SCOPES
    return graphs_class(fp32.onnx_dir, precision="int8", calibration=feeds, keep_float=keep_float)


def variant_engine(model: MixFormer, variant: str) -> Engine:
    """:func:`build_variant` wrapped for the trackers, its backend named (``"RUNTIME-..."``
    variants: that runtime; the others: torch)."""
    backend = variant.split("-")[0] if "-" in variant else "torch"
    return Engine(build_variant(model, variant), model, backend=backend)


def edge_deviation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per row, the largest absolute difference of the box edges (x1, y1, x2, y2) of two
    ``(T, 4)`` xywh arrays, in pixels."""
    ea = np.concatenate([a[:, :2], a[:, :2] + a[:, 2:]], axis=1)
    eb = np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)
    return np.abs(ea - eb).max(axis=1)


def study_sequences(
    num_sequences: int, num_frames: int, seed: int, scene: str, height: int, width: int
) -> list[tuple[list[np.ndarray], np.ndarray, np.ndarray]]:
    """``[(frames, gt boxes (T, 4), visible (T,))]`` of generated sequences: procedural
    (``"synthetic"``) or composited from the photos shipped with the package (``"photos"``);
    sequence ``i`` uses seed ``seed + i``."""
    out = []
    for i in range(num_sequences):
        if scene == "photos":
            from mixformer.datagen.composite import Corpus, demo_photos, make_composite_scene

            comp = make_composite_scene(
                Corpus(demo_photos(), "all"), seed + i, "plain", num_frames, height, width
            )
            frames = [comp.render(k) for k in range(len(comp))]
            out.append((frames, np.asarray(comp.boxes, np.float64), np.asarray(comp.visible)))
        elif scene == "synthetic":
            from mixformer.datagen.synthetic import generate_sequence

            seq = generate_sequence(seed + i, num_frames, height, width)
            out.append(
                (list(seq.frames), np.asarray(seq.boxes, np.float64), np.asarray(seq.visible))
            )
        else:
            raise ValueError(f"scene must be 'synthetic' or 'photos', got {scene!r}")
    return out


@dataclass
class PrecisionReport:
    """Result of :func:`precision_study` (``dtype`` against ``reference``).

    Attributes:
        model, dtype, reference, scene, sequences, frames, threads, score_threshold: settings
            (``frames`` per sequence, the initial frame included).
        same_px_mean / same_px_max: edge deviation (px) of the boxes from the same crops.
        same_iou_mean / same_iou_min: IoU of those boxes.
        score_diff_max: largest |score difference| on the same crops (None: no score module).
        flips / decisions: frames whose online-template decision (score vs threshold) differs
            on the same crops / frames with a score.
        e2e_px_mean / e2e_px_max / e2e_iou_mean / e2e_iou_min: the same, between the two
            trackers' own trajectories.
        auc_reference / auc_dtype: success AUC (percent, mean over sequences) of each tracker.
        updates_reference / updates_dtype: template re-encodings each tracker made.
        update_interval / online_size: the trackers' template schedule.
        ms_reference / ms_dtype: median ``Tracker.update`` time per frame (ms).
        seconds: wall time of the study.
    """

    model: str
    dtype: str
    reference: str
    scene: str
    sequences: int
    frames: int
    threads: int
    score_threshold: float
    same_px_mean: float
    same_px_max: float
    same_iou_mean: float
    same_iou_min: float
    score_diff_max: float | None
    flips: int
    decisions: int
    e2e_px_mean: float
    e2e_px_max: float
    e2e_iou_mean: float
    e2e_iou_min: float
    auc_reference: float
    auc_dtype: float
    updates_reference: int
    updates_dtype: int
    ms_reference: float
    ms_dtype: float
    seconds: float
    update_interval: int = 0
    online_size: int = 0
    per_sequence_auc: list[tuple[float, float]] = field(default_factory=list, repr=False)

    def format(self) -> str:
        """Human-readable multi-line report."""
        r, d = self.reference, self.dtype
        score = (
            f"max |score difference| {self.score_diff_max:.4f}; "
            if self.score_diff_max is not None
            else "no score module; "
        )
        return "\n".join(
            [
                f"precision study: model {self.model}, {d} vs {r}, {self.sequences} {self.scene} "
                f"sequences x {self.frames} frames, templates every {self.update_interval} "
                f"frames x {self.online_size}, {self.threads} thread(s), {self.seconds:.0f} s",
                f"same crops:  box deviation mean {self.same_px_mean:.3f} px, max "
                f"{self.same_px_max:.3f} px; IoU mean {self.same_iou_mean:.4f}, min "
                f"{self.same_iou_min:.4f}",
                f"             {score}template decision (score > {self.score_threshold:g}) "
                f"flipped on {self.flips} of {self.decisions} frames",
                f"end to end:  box deviation mean {self.e2e_px_mean:.3f} px, max "
                f"{self.e2e_px_max:.3f} px; IoU mean {self.e2e_iou_mean:.4f}, min "
                f"{self.e2e_iou_min:.4f}",
                f"             AUC {r} {self.auc_reference:.2f}, {d} {self.auc_dtype:.2f} "
                f"(difference {self.auc_dtype - self.auc_reference:+.2f}); template updates "
                f"{r} {self.updates_reference}, {d} {self.updates_dtype}",
                f"time per frame (median, alternating): {r} {self.ms_reference:.1f} ms, {d} "
                f"{self.ms_dtype:.1f} ms (x{self.ms_reference / self.ms_dtype:.2f})",
            ]
        )


def precision_study(
    model: MixFormer,
    dtype: str = "bf16",
    num_sequences: int = 2,
    num_frames: int = 30,
    seed: int = 0,
    tracker_config: TrackerConfig | None = None,
    scene: str = "synthetic",
    size: tuple[int, int] = (480, 640),
    reference: str = "fp32",
    progress: bool = True,
) -> PrecisionReport:
    """Track generated sequences with a ``reference`` and a ``dtype`` tracker, side by side.

    Args:
        model: plain network (CPU, eval). Random weights still show the numerical agreement;
            the AUC and the score decisions mean something only with trained weights.
        dtype: the studied variant, one of :data:`VARIANTS` (the fast path in that dtype;
            ``"int8"``: :func:`quantize_int8`; ``"openvino-int8"`` etc.: :func:`build_variant`).
        num_sequences, num_frames: generated sequences and frames per sequence (>= 2).
        seed: first sequence seed.
        tracker_config: tracker settings (default: ``TrackerConfig.for_model(model)``).
        scene: ``"synthetic"`` or ``"photos"`` (see :func:`study_sequences`).
        size: frame ``(height, width)``.
        reference: the reference precision (``"fp32"``: the exact fast path).
        progress: show a tqdm bar over the sequences.
    Returns:
        :class:`PrecisionReport`.
    """
    from mixformer.evaluation.metrics import auc
    from mixformer.tracking import Tracker

    if num_sequences < 1 or num_frames < 2:
        raise ValueError("need num_sequences >= 1 and num_frames >= 2")
    t_start = time.perf_counter()
    cfg = resolve_config(model, tracker_config)
    seqs = study_sequences(num_sequences, num_frames, seed, scene, *size)
    thr = cfg.score_threshold
    same_dev, same_iou, score_diff = [], [], []
    flips = decisions = 0
    e2e_dev, e2e_iou = [], []
    aucs: list[tuple[float, float]] = []
    roles = ("ref", "test")  # the reference and the studied tracker (dtype may equal reference)
    updates = dict.fromkeys(roles, 0)
    times: dict[str, list[float]] = {v: [] for v in roles}
    bar = tqdm(seqs, desc="precision", unit="seq", disable=not progress)
    engines = {role: variant_engine(model, v) for role, v in zip(roles, (reference, dtype))}
    engine = engines["test"]
    for k, (frames, gt, vis) in enumerate(bar):
        trackers = {v: Tracker(engines[v], cfg, threads=0) for v in roles}
        boxes = {v: [t.init(frames[0], gt[0]).box] for v, t in trackers.items()}
        cache: Any = None
        for i, frame in enumerate(frames[1:], start=1):
            templates = trackers["ref"].templates  # what this frame's search runs against
            res = {}
            for v in roles if i % 2 else roles[::-1]:
                t0 = time.perf_counter()
                res[v] = trackers[v].update(frame, observe=True)
                times[v].append(time.perf_counter() - t0)
                boxes[v].append(res[v].box)
                updates[v] += bool(res[v].observation.templates_updated)
            # the studied engine on the reference tracker's crop and templates
            obs = res["ref"].observation
            with torch.inference_mode():
                if cache is None:
                    cache = engine.encode_templates(*templates)
                prior = None
                if obs.corner_prior is not None:
                    prior = torch.from_numpy(obs.corner_prior).reshape(1, 2, -1)
                out = engine.track(obs.search_input, cache, corner_prior=prior)
            box, score = decode_prediction(
                out, 0, obs.anchor, obs.resize_factor, cfg, frame.shape[:2]
            )
            if obs.templates_updated:
                cache = None
            a, b = np.asarray([obs.network_box]), np.asarray([box])
            same_dev.append(float(edge_deviation(a, b)[0]))
            same_iou.append(float(box_iou(a, b)[0]))
            if score is not None and obs.pred_score is not None:
                decisions += 1
                score_diff.append(abs(score - obs.score))
                flips += (score > thr) != (obs.score > thr)
        br, bd = (np.asarray(boxes[v], np.float64) for v in roles)
        e2e_dev.extend(edge_deviation(br[1:], bd[1:]).tolist())
        e2e_iou.extend(box_iou(br[1:], bd[1:]).tolist())
        aucs.append((100 * float(auc(br, gt, vis)), 100 * float(auc(bd, gt, vis))))
        log.info("sequence %d/%d done", k + 1, num_sequences)
    return PrecisionReport(
        model=model.name or "custom",
        dtype=dtype,
        reference=reference,
        scene=scene,
        sequences=num_sequences,
        frames=num_frames,
        threads=torch.get_num_threads(),
        score_threshold=thr,
        same_px_mean=float(np.mean(same_dev)),
        same_px_max=float(np.max(same_dev)),
        same_iou_mean=float(np.mean(same_iou)),
        same_iou_min=float(np.min(same_iou)),
        score_diff_max=float(np.max(score_diff)) if score_diff else None,
        flips=int(flips),
        decisions=decisions,
        e2e_px_mean=float(np.mean(e2e_dev)),
        e2e_px_max=float(np.max(e2e_dev)),
        e2e_iou_mean=float(np.mean(e2e_iou)),
        e2e_iou_min=float(np.min(e2e_iou)),
        auc_reference=float(np.mean([a for a, _ in aucs])),
        auc_dtype=float(np.mean([b for _, b in aucs])),
        updates_reference=updates["ref"],
        updates_dtype=updates["test"],
        ms_reference=1e3 * statistics.median(times["ref"]),
        ms_dtype=1e3 * statistics.median(times["test"]),
        seconds=time.perf_counter() - t_start,
        update_interval=cfg.update_interval,
        online_size=cfg.online_size,
        per_sequence_auc=aucs,
    )
