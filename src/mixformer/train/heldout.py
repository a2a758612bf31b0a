"""Held-out check of a trained model on synthetic data never used in training.

Two measures: the tracker's success AUC on generated sequences next to a static-box baseline
(the first box repeated), and the score module's accuracy at telling positive from negative
``trident_pro`` samples (SPEC 3.4) drawn from the same held-out seed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from mixformer.data.synthetic import generate_sequence
from mixformer.data.training import (
    Processing,
    ProcessingConfig,
    SampleRNG,
    SyntheticTrainDataset,
    TrackingSampler,
)
from mixformer.evaluation.metrics import evaluate_sequence, summarize
from mixformer.models import MixFormer
from mixformer.tracking import Tracker, TrackerConfig

log = logging.getLogger(__name__)

__all__ = ["HeldoutReport", "heldout_report"]


@dataclass(frozen=True)
class HeldoutReport:
    """Results of :func:`heldout_report` (percentages)."""

    tracker_auc: float
    static_auc: float
    tracker_op50: float
    score_accuracy: float | None
    positive_accuracy: float | None
    negative_accuracy: float | None
    sequences: int
    score_samples: int


def _track_auc(
    model: MixFormer,
    settings: TrackerConfig,
    seed: int,
    num_sequences: int,
    num_frames: int,
    progress: bool,
) -> tuple[dict[str, float], dict[str, float]]:
    tracked, static = [], []
    for k in tqdm(range(num_sequences), desc="tracking", unit="seq", disable=not progress):
        seq = generate_sequence(np.random.default_rng([seed, k]), num_frames, name=f"synth-{k:04d}")
        tracker = Tracker(model, settings)
        boxes = []
        for i, frame in enumerate(seq.frames):
            res = tracker.init(frame, seq.boxes[0]) if i == 0 else tracker.update(frame)
            boxes.append(res.box)
        pred = np.asarray(boxes, dtype=np.float64)
        tracked.append(evaluate_sequence(pred, seq.boxes, seq.visible, name=seq.name))
        still = np.repeat(seq.boxes[:1], len(seq.boxes), axis=0)
        static.append(evaluate_sequence(still, seq.boxes, seq.visible, name=seq.name))
    return summarize(tracked), summarize(static)


@torch.no_grad()
def _score_accuracy(
    model: MixFormer, seed: int, num_samples: int, batch: int, progress: bool
) -> tuple[float, float, float]:
    ds = SyntheticTrainDataset(max(32, num_samples // 4), 60, seed=seed)
    sizes = ProcessingConfig(
        template_size=model.config.template_size, search_size=model.config.search_size
    )
    sampler = TrackingSampler([ds], [1.0], Processing(sizes, train=False), "trident_pro")
    correct = {0.0: [], 1.0: []}
    for start in tqdm(
        range(0, num_samples, batch), desc="score", unit="batch", disable=not progress
    ):
        items = [
            sampler.sample(SampleRNG.from_key(seed, 0, i))
            for i in range(start, min(start + batch, num_samples))
        ]
        t = torch.stack([it["template_images"] for it in items])
        s = torch.stack([it["search_images"][0] for it in items])
        anno = torch.stack([it["search_anno"][0] for it in items])
        label = torch.cat([it["label"] for it in items])
        x, y, w, h = anno.unbind(-1)
        gt = torch.stack([x, y, x + w, y + h], dim=-1)
        out = model(t[:, 0], t[:, 1], s, run_score_head=True, gt_bboxes=gt)
        pred = (out["pred_scores"] > 0).float()
        for p, lab in zip(pred.tolist(), label.tolist()):
            correct[lab].append(p == lab)
    allc = correct[0.0] + correct[1.0]
    return (
        100.0 * float(np.mean(allc)),
        100.0 * float(np.mean(correct[1.0])) if correct[1.0] else float("nan"),
        100.0 * float(np.mean(correct[0.0])) if correct[0.0] else float("nan"),
    )


def heldout_report(
    model: MixFormer,
    preset: str = "mixformer-tiny",
    seed: int = 12345,
    num_sequences: int = 30,
    num_frames: int = 100,
    score_samples: int = 200,
    progress: bool = True,
    tracker: TrackerConfig | None = None,
) -> HeldoutReport:
    """Score ``model`` on synthetic data generated from ``seed``.

    Sequence ``k`` is generated exactly as ``mixformer synth --seed SEED`` writes it (before
    JPEG compression): ``generate_sequence(default_rng([seed, k]), num_frames)``.

    Args:
        model: the network (eval mode).
        preset: model preset name for the tracker settings.
        seed: held-out seed (never used in training).
        num_sequences / num_frames: benchmark size.
        score_samples: positive/negative samples for the score-module accuracy (0: skip; also
            skipped when the model has no score head).
        progress: show progress bars.
        tracker: tracker settings (default: ``preset``'s ``"default"`` settings with the
            model's crop sizes).
    """
    model.eval()
    if tracker is None:
        tracker = TrackerConfig.preset("default", preset, model.config)
    ours, still = _track_auc(model, tracker, seed, num_sequences, num_frames, progress)
    acc = pos = neg = None
    if score_samples > 0 and model.score_branch is not None:
        acc, pos, neg = _score_accuracy(model, seed, score_samples, 16, progress)
    return HeldoutReport(
        tracker_auc=ours["AUC"],
        static_auc=still["AUC"],
        tracker_op50=ours["OP50"],
        score_accuracy=acc,
        positive_accuracy=pos,
        negative_accuracy=neg,
        sequences=num_sequences,
        score_samples=score_samples if acc is not None else 0,
    )
