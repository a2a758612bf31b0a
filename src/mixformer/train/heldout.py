"""Held-out checks of a trained model on data never used in training.

:func:`heldout_report`: on synthetic sequences, the tracker's success AUC next to a static-box
baseline (the first box repeated), and the score module's accuracy at telling positive from
negative ``trident_pro`` samples (SPEC 3.4) drawn from the same held-out seed.
:func:`benchmark_report`: on a benchmark folder (generic or OTB layout, e.g. the composited
real-photo benchmarks of ``mixformer data bench``), the success AUC, OP50 and precision next to
the static box, and how well the score tells frames on the target (IoU > 0.5) from frames off
it (AUROC).
:func:`fit_score_calibration` / :func:`calibrate_score`: Platt scaling of the score module on
such tracking-time scores, folded into its last layer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from mixformer.data.benchmarks import read_generic
from mixformer.datagen.synthetic import generate_sequence
from mixformer.datagen.training import (
    Processing,
    ProcessingConfig,
    SampleRNG,
    SyntheticTrainDataset,
    TrackingSampler,
)
from mixformer.evaluation.metrics import auroc, evaluate_sequence, iou, summarize
from mixformer.evaluation.runner import track_sequence, write_result
from mixformer.models import MixFormer
from mixformer.models.config import DEFAULT_MODEL
from mixformer.tracking import Tracker, TrackerConfig

log = logging.getLogger(__name__)

__all__ = [
    "BenchmarkReport",
    "HeldoutReport",
    "benchmark_report",
    "CALIBRATION_PRIORS",
    "calibrate_score",
    "calibrated_scores",
    "fit_score_calibration",
    "heldout_report",
]


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
        tracker = Tracker(model, settings, backend="torch")  # a model in training: no export
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
    preset: str = DEFAULT_MODEL,
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


@dataclass(frozen=True)
class BenchmarkReport:
    """Results of :func:`benchmark_report` (percentages, AUROC in [0, 1]; the scores are means
    over frames 1..T-1 with the box on (IoU > 0.5) or off the target; ``off_target_low`` is the
    fraction of off-target frames whose score is below 0.5, the online-update threshold)."""

    auc: float
    op50: float
    precision: float
    static_auc: float
    score_auroc: float
    on_target_score: float
    off_target_score: float
    off_target_low: float
    sequences: int
    frames: int
    fps: float
    scores: np.ndarray = field(repr=False, compare=False, default_factory=lambda: np.zeros(0))
    """``(F,)`` float: the score of every scored frame (1..T-1, labelled only if asked)."""
    hits: np.ndarray = field(repr=False, compare=False, default_factory=lambda: np.zeros(0, bool))
    """``(F,)`` bool: IoU > 0.5 on those frames."""
    per_sequence: dict[str, float] = field(repr=False, compare=False, default_factory=dict)
    """Success AUC (percent) of each sequence, by name, in the benchmark's order."""


def benchmark_report(
    model: MixFormer,
    root: str | Path,
    tracker: TrackerConfig | None = None,
    results: str | Path | None = None,
    progress: bool = True,
    labelled_only: bool = False,
) -> BenchmarkReport:
    """Track every sequence of a benchmark folder (generic or OTB layout) and score it.

    Args:
        model: the network (eval mode).
        root: the benchmark folder (``list.txt`` + ``<seq>/img/*`` + ground truth).
        tracker: tracker settings (default: the model's own ``default`` preset settings).
        results: if given, ``<seq>.txt`` / ``<seq>_time.txt`` result files (as ``mixformer
            evaluate`` writes them) go there, for ``mixformer report``.
        progress: show a progress bar.
        labelled_only: score only the frames with a ground-truth box (sparsely labelled
            benchmarks such as ``mixformer data realvideo``, whose NaN rows are unlabelled
            frames); by default a frame without a box counts as a miss.

    The score AUROC treats frames ``1..T-1`` with IoU > 0.5 as positives (with
    ``labelled_only``, labelled frames only); a score that tells when the target is lost is near
    1, an uninformative one 0.5.
    """
    model.eval()
    if tracker is None:
        tracker = TrackerConfig.for_model(model)
    seqs = read_generic(root)
    tracked, static, all_scores, all_hits = [], [], [], []
    frames, seconds = 0, 0.0
    for seq in tqdm(seqs, desc="tracking", unit="seq", disable=not progress):
        # torch: checkpoints are compared and calibrated on the path their scores came from
        pred, times, scores = track_sequence(Tracker(model, tracker, backend="torch"), seq)
        frames += len(seq.frames)
        seconds += float(times.sum())
        gt = seq.ground_truth
        kw = dict(name=seq.name, exclude_invalid=labelled_only)
        tracked.append(evaluate_sequence(pred, gt, seq.visible, **kw))
        still = np.repeat(gt[:1], len(seq.frames), axis=0)
        static.append(evaluate_sequence(still, gt, seq.visible, **kw))
        keep = np.isfinite(gt[1:]).all(axis=1) if labelled_only else slice(None)
        all_scores.append(scores[1:][keep])
        all_hits.append((iou(pred[1:], gt[1:]) > 0.5)[keep])
        if results is not None:
            out = Path(results)
            write_result(out / f"{seq.name}.txt", out / f"{seq.name}_time.txt", pred, times)
    ours, still = summarize(tracked), summarize(static)
    sc, hits = np.concatenate(all_scores), np.concatenate(all_hits)
    return BenchmarkReport(
        auc=ours["AUC"],
        op50=ours["OP50"],
        precision=ours["Precision"],
        static_auc=still["AUC"],
        score_auroc=auroc(sc, hits),
        on_target_score=float(sc[hits].mean()) if hits.any() else float("nan"),
        off_target_score=float(sc[~hits].mean()) if (~hits).any() else float("nan"),
        off_target_low=float((sc[~hits] < 0.5).mean()) if (~hits).any() else float("nan"),
        sequences=len(seqs),
        frames=frames,
        fps=frames / max(seconds, 1e-9),
        scores=sc,
        hits=hits,
        per_sequence={t.name: summarize([t])["AUC"] for t in tracked},
    )


#: ``prior`` of :func:`fit_score_calibration` (and ``train-eval --calibration-prior``).
CALIBRATION_PRIORS: tuple[str, ...] = ("balanced", "observed")


def _logit(scores: np.ndarray) -> np.ndarray:
    """``log(s / (1 - s))`` of ``scores`` clipped to ``[1e-6, 1 - 1e-6]`` (float64)."""
    s = np.clip(np.asarray(scores, np.float64), 1e-6, 1 - 1e-6)
    return np.log(s / (1 - s))


def calibrated_scores(scores: np.ndarray, a: float, b: float) -> np.ndarray:
    """``sigmoid(a * logit(scores) + b)``: what the score module gives once
    :func:`calibrate_score` folded ``(a, b)`` in (float64, same shape as ``scores``)."""
    return 1 / (1 + np.exp(-(a * _logit(scores) + b)))


def fit_score_calibration(
    scores: np.ndarray, hits: np.ndarray, prior: str = "balanced"
) -> tuple[float, float]:
    """Platt scaling: ``(a, b)`` such that ``sigmoid(a * logit(score) + b)`` is the probability
    that the box is on the target (IoU > 0.5), fitted by (weighted) maximum likelihood.

    Args:
        scores: ``(F,)`` scores in ``(0, 1)`` of tracked frames (e.g. :attr:`BenchmarkReport.
            scores` on validation benchmarks).
        hits: ``(F,)`` bool, IoU > 0.5 on those frames.
        prior: ``"balanced"`` (default) weighs the on- and off-target frames as two equal
            halves, so the calibrated score is the probability under even odds and 0.5 (the
            online-update threshold) is the score at which the two kinds of frames are
            equally likely; ``"observed"`` keeps the frames' own proportion (plain Platt
            scaling: on benchmarks where the box is on the target most of the time, frames off
            the target then mostly stay above 0.5).

    Raises:
        ValueError: fewer than 2 frames, only hits or only misses, or an unknown prior.
    """
    if prior not in CALIBRATION_PRIORS:
        raise ValueError(f"unknown prior {prior!r} ({' or '.join(CALIBRATION_PRIORS)})")
    hits = np.asarray(hits, bool)
    if len(hits) < 2 or hits.all() or not hits.any():
        raise ValueError("score calibration needs frames both on and off the target")
    x = torch.from_numpy(_logit(scores))
    y = torch.from_numpy(hits.astype(np.float64))
    w = torch.ones_like(y)
    if prior == "balanced":
        w = torch.where(y > 0, 0.5 / y.mean(), 0.5 / (1 - y.mean()))
    ab = torch.tensor([1.0, 0.0], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([ab], max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        logits = ab[0] * x + ab[1]
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y, weight=w)
        loss.backward()
        return loss

    opt.step(closure)
    a, b = ab.detach().tolist()
    return float(a), float(b)


def calibrate_score(model: MixFormer, a: float, b: float) -> None:
    """Fold ``logit -> a * logit + b`` into the last layer of ``model``'s score module (a
    ``Linear`` to one logit; in place), so the shipped weights carry the calibration.

    Raises:
        ValueError: the model has no score module, or its last layer is not a ``Linear(D, 1)``.
    """
    score = getattr(model, model.score_attr, None)
    last = getattr(score, "output_layer", None)
    if not isinstance(last, torch.nn.Linear) or last.out_features != 1:
        raise ValueError(f"{model.name}: no score module ending in a Linear(D, 1) to calibrate")
    with torch.no_grad():
        last.weight.mul_(a)
        last.bias.mul_(a).add_(b)
