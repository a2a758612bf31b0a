"""Accuracy cost of reduced precision: bf16 / fp16 activations and int8 dynamic quantisation.

:func:`precision_study` tracks the same generated sequences with the fp32 fast path and with each
reduced-precision variant, and reports for every variant the success AUC against the ground truth
and the mean IoU of its boxes against the fp32 boxes.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from mixformer.models.mixformer import MixFormer
from mixformer.perf.benchmark import box_iou
from mixformer.tracking.config import TrackerConfig
from mixformer.tracking.core import decode_prediction, reference_config, resolve_config
from mixformer.tracking.engines import Engine, Network, build_network
from mixformer.tracking.results import Observation
from mixformer.tracking.tracker import Tracker

log = logging.getLogger(__name__)

VARIANTS: tuple[str, ...] = ("fp32", "bf16", "fp16", "int8")


def quantize_int8(fast: nn.Module) -> nn.Module:
    """Dynamic int8 quantisation of every Linear layer of ``fast`` (in place; fp32 module).

    Weights are stored as int8 per tensor; activations are quantised on the fly per call (the
    ``torch.ao`` dynamic scheme, fbgemm kernels on x86). Convolutions and attention stay fp32.

    Args:
        fast: an fp32 fast engine (``build_network(model, "fp32", "torch", True)``).
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
    """The fast engine of ``model`` in ``variant`` (one of :data:`VARIANTS`; its own copy)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; use one of {', '.join(VARIANTS)}")
    if variant == "int8":
        return quantize_int8(build_network(model, "fp32", "torch", True))
    return build_network(model, variant, "torch", True)


@dataclass
class VariantResult:
    """Accuracy of one variant over the study's sequences.

    Attributes:
        variant: ``"fp32" | "bf16" | "fp16" | "int8"``.
        auc: success AUC in percent (mean over sequences) of the variant's own tracker run.
        iou_same_crops: mean IoU of the variant's box against the fp32 box computed from the
            *same* search crop and templates (the fp32 tracker's), over all frames: the
            numerical cost alone, free of trajectory divergence.
        iou_end_to_end: mean IoU of the variant's own tracker boxes against the fp32 tracker's
            (a drifting tracker makes this much lower than ``iou_same_crops``).
    """

    variant: str
    auc: float
    iou_same_crops: float
    iou_end_to_end: float


def precision_study(
    model: MixFormer,
    variants: tuple[str, ...] = ("bf16", "int8"),
    num_sequences: int = 4,
    num_frames: int = 60,
    seed: int = 0,
    tracker_config: TrackerConfig | None = None,
    progress: bool = True,
) -> list[VariantResult]:
    """Track generated sequences with fp32 and each variant; AUC and IoU vs fp32.

    Args:
        model: plain network (CPU, eval); its weights should be trained for the AUC to mean
            anything.
        variants: reduced-precision variants to compare with fp32.
        num_sequences, num_frames: size of the generated benchmark (frames 240 x 320).
        seed: first sequence seed (sequence ``i`` uses ``seed + i``).
        tracker_config: tracker settings (default: :class:`TrackerConfig` defaults with the
            model's crop sizes, without motion settings: :func:`reference_config`).
        progress: show a tqdm bar over the sequences.
    Returns:
        One :class:`VariantResult` per variant, fp32 first.
    """
    from mixformer.datagen.synthetic import generate_sequence
    from mixformer.evaluation.metrics import auc

    cfg = resolve_config(model, tracker_config) if tracker_config else reference_config(model)
    names = ("fp32", *[v for v in variants if v != "fp32"])
    engines = {v: build_variant(model, v) for v in names}
    boxes: dict[str, list[np.ndarray]] = {v: [] for v in names}
    same: dict[str, list[float]] = {v: [] for v in names}
    gts, vis = [], []
    for i in tqdm(range(num_sequences), desc="accuracy", unit="seq", disable=not progress):
        seq = generate_sequence(seed + i, num_frames, 240, 320)
        gt = np.asarray(seq.boxes, dtype=np.float64)
        gts.append(gt)
        vis.append(np.asarray(seq.visible, dtype=bool))
        for v in names:
            tracker = Tracker(Engine(engines[v], model), cfg)
            out = [tracker.init(seq.frames[0], gt[0]).box]
            shadow: dict[str, object] = {}
            for f in seq.frames[1:]:
                if v != "fp32":
                    out.append(tracker.update(f).box)
                    continue
                templates = tracker.templates  # what this frame's search runs against
                res = tracker.update(f, observe=True)
                _shadow_step(res.observation, templates, f.shape[:2], cfg, engines, shadow, same)
                out.append(res.box)
            boxes[v].append(np.asarray(out, dtype=np.float64))
        log.info("sequence %d/%d done", i + 1, num_sequences)
    results = []
    for v in names:
        aucs = [100 * float(auc(b, g, m)) for b, g, m in zip(boxes[v], gts, vis)]
        ious = np.concatenate([box_iou(b, r) for b, r in zip(boxes[v], boxes["fp32"])])
        results.append(
            VariantResult(v, float(np.mean(aucs)), float(np.mean(same[v])), float(ious.mean()))
        )
    return results


def _shadow_step(
    obs: Observation,
    templates: tuple[torch.Tensor, torch.Tensor],
    size: tuple[int, int],
    cfg: TrackerConfig,
    engines: dict[str, Network],
    caches: dict[str, object],
    same: dict[str, list[float]],
) -> None:
    """Run every variant on the fp32 tracker's search crop and templates of this step (from its
    observation); record each variant's IoU against fp32. ``caches`` holds the variants'
    template caches until the fp32 tracker's templates change."""
    with torch.inference_mode():
        if not caches:
            caches.update({v: e.encode_templates(*templates) for v, e in engines.items()})
        prior = None
        if obs.corner_prior is not None:
            prior = torch.from_numpy(obs.corner_prior).reshape(1, 2, -1)
        got = {}
        for v, e in engines.items():
            out = e.track(obs.search_input, caches[v], corner_prior=prior)
            got[v] = decode_prediction(out, 0, obs.anchor, obs.resize_factor, cfg, size)[0]
    if obs.templates_updated:
        caches.clear()
    ref = np.asarray([got["fp32"]])
    for v, b in got.items():
        same[v].append(float(box_iou(np.asarray([b]), ref)[0]))
