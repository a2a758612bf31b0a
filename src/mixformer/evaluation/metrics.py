"""Tracking metrics: per-frame overlap and centre errors, success / precision curves, summaries.

Definitions follow the pytracking / LaSOT toolkits (SPEC 4.3) and the GOT-10k toolkit:

* IoU of ``(x, y, w, h)`` pixel boxes with the continuous ``[x, x + w]`` overlap.
* Centre ``= (x, y) + ((w, h) - 1) / 2``; centre error is the Euclidean pixel distance; the
  normalised error divides both centres by the ground-truth ``(w, h)`` per axis.
* Success curve: fraction of frames with ``IoU > t`` for 21 thresholds ``t = 0, 0.05, ..., 1``;
  precision: fraction with ``error <= tau`` for ``tau = 0, 1, ..., 50`` px; normalised precision:
  ``tau = 0, 0.01, ..., 0.5``. The denominator is the whole sequence, invalid frames included.
* Frame 0 (whose prediction is replaced by the ground truth) is kept and counts as perfect.

Where the reference analysis code has bugs (SPEC 5, items 30, 31, 36) this module does the
correct thing: OP75 is read at the 0.75 threshold by index (not by a float equality that selects
nothing); invalid frames (no box, NaN box, or target not visible) never count as hits in any
curve; results are never cached.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mixformer.geometry import iou
from mixformer.geometry import xywh_rows as _as_boxes

#: Success-curve overlap thresholds: ``0, 0.05, ..., 1`` (21 values, correctly rounded).
SUCCESS_THRESHOLDS = np.arange(21, dtype=np.float64) / 20
#: Precision-curve pixel thresholds ``0, 1, ..., 50``.
PRECISION_THRESHOLDS = np.arange(51, dtype=np.float64)
#: Normalised-precision thresholds ``0, 0.01, ..., 0.5``.
NORM_PRECISION_THRESHOLDS = np.arange(51, dtype=np.float64) / 100
_OP50, _OP75, _PREC20, _NPREC20 = 10, 15, 20, 20


def _pair(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, gt = _as_boxes(pred, "pred"), _as_boxes(gt, "gt")
    if pred.shape != gt.shape:
        raise ValueError(f"pred {pred.shape} and gt {gt.shape} differ in length")
    return pred, gt


def _centers(b: np.ndarray) -> np.ndarray:
    return b[:, :2] + 0.5 * (b[:, 2:] - 1.0)


def center_error(pred_xywh: np.ndarray, gt_xywh: np.ndarray) -> np.ndarray:
    """Euclidean distance in pixels between box centres ``(x, y) + ((w, h) - 1) / 2``.

    Args:
        pred_xywh: ``(T, 4)`` ``(x, y, w, h)`` pixel boxes.
        gt_xywh: ``(T, 4)`` ``(x, y, w, h)`` pixel boxes.

    Returns:
        ``(T,)`` float64 pixel distances.
    """
    p, g = _pair(pred_xywh, gt_xywh)
    return np.linalg.norm(_centers(p) - _centers(g), axis=1)


def normalized_center_error(pred_xywh: np.ndarray, gt_xywh: np.ndarray) -> np.ndarray:
    """Centre distance after dividing both centres by the ground-truth ``(w, h)`` per axis.

    Returns:
        ``(T,)`` float64 (in units of the target size); ``inf`` where ``w`` or ``h`` is 0.
    """
    p, g = _pair(pred_xywh, gt_xywh)
    with np.errstate(invalid="ignore", divide="ignore"):
        d = (_centers(p) - _centers(g)) / g[:, 2:]
        out = np.linalg.norm(d, axis=1)
    out[(g[:, 2] <= 0) | (g[:, 3] <= 0)] = np.inf
    return out


def valid_frames(gt_xywh: np.ndarray, visible: np.ndarray | None = None) -> np.ndarray:
    """Frames that can be scored: finite ground truth with ``w > 0`` and ``h > 0``, and visible.

    Args:
        gt_xywh: ``(T, 4)`` ground-truth ``(x, y, w, h)`` boxes (NaN rows allowed).
        visible: optional ``(T,)`` bool target visibility.

    Returns:
        ``(T,)`` bool.
    """
    g = _as_boxes(gt_xywh, "gt")
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(g).all(axis=1) & (g[:, 2] > 0) & (g[:, 3] > 0)
    if visible is not None:
        vis = np.asarray(visible, dtype=bool)
        if vis.shape != ok.shape:
            raise ValueError(f"visible has shape {vis.shape}, expected {ok.shape}")
        ok &= vis
    return ok


def success_curve(
    pred_xywh: np.ndarray,
    gt_xywh: np.ndarray,
    visible: np.ndarray | None = None,
    thresholds: np.ndarray = SUCCESS_THRESHOLDS,
) -> tuple[np.ndarray, np.ndarray]:
    """Fraction of frames whose IoU is strictly above each threshold.

    Invalid frames (see :func:`valid_frames`) count as failures but stay in the denominator.
    The boxes are used as given; see :func:`prepare_prediction` for the benchmark conventions.

    Args:
        pred_xywh: ``(T, 4)`` predicted ``(x, y, w, h)`` pixel boxes.
        gt_xywh: ``(T, 4)`` ground-truth ``(x, y, w, h)`` pixel boxes.
        visible: optional ``(T,)`` bool visibility.
        thresholds: overlap thresholds (default 21 values ``0, 0.05, ..., 1``).

    Returns:
        ``(thresholds, values)``, both float64 of the thresholds' length; values in ``[0, 1]``.
    """
    ov = iou(pred_xywh, gt_xywh)
    ov[~valid_frames(gt_xywh, visible) | np.isnan(ov)] = -1.0
    thresholds = np.asarray(thresholds, dtype=np.float64)
    return thresholds, (ov[:, None] > thresholds[None, :]).mean(axis=0)


def precision_curve(
    pred_xywh: np.ndarray,
    gt_xywh: np.ndarray,
    visible: np.ndarray | None = None,
    thresholds: np.ndarray = PRECISION_THRESHOLDS,
) -> tuple[np.ndarray, np.ndarray]:
    """Fraction of frames whose centre error is at most each pixel threshold.

    Returns:
        ``(thresholds, values)`` (default thresholds ``0..50`` px); invalid frames are misses.
    """
    return _error_curve(center_error(pred_xywh, gt_xywh), gt_xywh, visible, thresholds)


def normalized_precision_curve(
    pred_xywh: np.ndarray,
    gt_xywh: np.ndarray,
    visible: np.ndarray | None = None,
    thresholds: np.ndarray = NORM_PRECISION_THRESHOLDS,
) -> tuple[np.ndarray, np.ndarray]:
    """Fraction of frames whose normalised centre error is at most each threshold.

    Returns:
        ``(thresholds, values)`` (default thresholds ``0, 0.01, ..., 0.5``); invalid frames are
        misses (the reference counts them as hits, SPEC 5 item 31).
    """
    return _error_curve(normalized_center_error(pred_xywh, gt_xywh), gt_xywh, visible, thresholds)


def _error_curve(
    err: np.ndarray, gt_xywh: np.ndarray, visible: np.ndarray | None, thresholds: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Fraction of frames with ``err <= threshold``; invalid frames and NaN errors are misses."""
    err = err.copy()
    err[~valid_frames(gt_xywh, visible) | np.isnan(err)] = np.inf
    thresholds = np.asarray(thresholds, dtype=np.float64)
    return thresholds, (err[:, None] <= thresholds[None, :]).mean(axis=0)


def auc(
    pred_or_curve: np.ndarray,
    gt_xywh: np.ndarray | None = None,
    visible: np.ndarray | None = None,
) -> float:
    """Area under the success curve: the mean of the 21-threshold curve, in ``[0, 1]``.

    Args:
        pred_or_curve: either success-curve values ``(21,)`` (when ``gt_xywh`` is None) or
            ``(T, 4)`` predicted ``(x, y, w, h)`` boxes.
        gt_xywh: ``(T, 4)`` ground-truth boxes when the first argument holds predictions.
        visible: optional ``(T,)`` bool visibility.

    Example:
        >>> gt = np.array([[0, 0, 10, 10], [0, 0, 10, 10]], dtype=float)
        >>> auc(gt, gt)  # perfect: IoU 1 > t for 20 of the 21 thresholds
        0.9523809523809523
    """
    if gt_xywh is None:
        return float(np.mean(np.asarray(pred_or_curve, dtype=np.float64)))
    return float(np.mean(success_curve(pred_or_curve, gt_xywh, visible)[1]))


def prepare_prediction(
    pred_xywh: np.ndarray, gt_xywh: np.ndarray, strict_length: bool = False, name: str = ""
) -> np.ndarray:
    """Apply the benchmark conventions to a raw result (SPEC 4.3 steps 1-4).

    A longer prediction is truncated; a shorter one raises with ``strict_length`` (LaSOT) and is
    padded with zero boxes otherwise. Row 0 becomes the ground truth. A NaN or a negative size
    raises. Boxes with zero width or height ("no prediction") are replaced by the previous
    frame's box, except where the ground truth is NaN.

    Args:
        pred_xywh: ``(N, 4)`` predicted ``(x, y, w, h)`` pixel boxes.
        gt_xywh: ``(T, 4)`` ground truth (NaN rows allowed).
        strict_length: raise when ``N < T``.
        name: sequence name for error messages.

    Returns:
        ``(T, 4)`` float64 boxes.

    Raises:
        ValueError: NaN or negative size in the prediction, or a short prediction when strict.
    """
    pred = _as_boxes(pred_xywh, f"{name} prediction").copy()
    gt = _as_boxes(gt_xywh, f"{name} ground truth")
    T = len(gt)
    if len(pred) > T:
        pred = pred[:T]
    elif len(pred) < T:
        if strict_length:
            raise ValueError(f"{name}: prediction has {len(pred)} rows, ground truth has {T}")
        pred = np.concatenate([pred, np.zeros((T - len(pred), 4))])
    if T == 0:
        return pred
    pred[0] = gt[0]
    if np.isnan(pred).any():
        raise ValueError(
            f"{name}: prediction contains NaN (line {int(np.isnan(pred).any(1).argmax()) + 1})"
        )
    if (pred[:, 2:] < 0).any():
        raise ValueError(
            f"{name}: prediction has a negative width or height "
            f"(line {int((pred[:, 2:] < 0).any(1).argmax()) + 1})"
        )
    gt_nan = np.isnan(gt).any(axis=1)
    for i in range(1, T):
        if (pred[i, 2] == 0 or pred[i, 3] == 0) and not gt_nan[i]:
            pred[i] = pred[i - 1]
    return pred


@dataclass(frozen=True, eq=False)
class SequenceScores:
    """Per-sequence measures and curves.

    Attributes:
        name: sequence name.
        iou: ``(T,)`` float64 overlaps, -1 on invalid frames.
        center_error: ``(T,)`` float64 pixel errors, inf on invalid frames.
        norm_error: ``(T,)`` float64 normalised errors, inf on invalid frames.
        valid: ``(T,)`` bool scoreable frames.
        success: ``(21,)`` success curve over :data:`SUCCESS_THRESHOLDS`.
        precision: ``(51,)`` precision curve over :data:`PRECISION_THRESHOLDS`.
        norm_precision: ``(51,)`` curve over :data:`NORM_PRECISION_THRESHOLDS`.
    """

    name: str
    iou: np.ndarray
    center_error: np.ndarray
    norm_error: np.ndarray
    valid: np.ndarray
    success: np.ndarray
    precision: np.ndarray
    norm_precision: np.ndarray


def evaluate_sequence(
    pred_xywh: np.ndarray,
    gt_xywh: np.ndarray,
    visible: np.ndarray | None = None,
    name: str = "",
    strict_length: bool = False,
    exclude_invalid: bool = False,
) -> SequenceScores:
    """Score one sequence the pytracking way (after :func:`prepare_prediction`).

    Args:
        pred_xywh: ``(N, 4)`` raw predicted ``(x, y, w, h)`` pixel boxes (as read from a result).
        gt_xywh: ``(T, 4)`` ground truth (NaN rows are invalid frames).
        visible: optional ``(T,)`` bool visibility (LaSOT).
        name: sequence name.
        strict_length: a short prediction raises instead of being zero-padded.
        exclude_invalid: the curves are fractions of the valid frames only (pytracking's
            ``exclude_invalid_frames``), for sparsely labelled ground truth whose NaN rows mean
            "not labelled"; by default invalid frames are misses in a whole-sequence denominator.
    """
    gt = _as_boxes(gt_xywh, f"{name} ground truth")
    pred = prepare_prediction(pred_xywh, gt, strict_length=strict_length, name=name)
    valid = valid_frames(gt, visible)
    ov = iou(pred, gt)
    ce = center_error(pred, gt)
    ne = normalized_center_error(pred, gt)
    ov[~valid] = -1.0
    ce[~valid] = np.inf
    ne[~valid] = np.inf
    denom = max(int(valid.sum()), 1) if exclude_invalid else max(len(gt), 1)
    s = (ov[:, None] > SUCCESS_THRESHOLDS[None]).sum(axis=0) / denom
    p = (ce[:, None] <= PRECISION_THRESHOLDS[None]).sum(axis=0) / denom
    n = (ne[:, None] <= NORM_PRECISION_THRESHOLDS[None]).sum(axis=0) / denom
    return SequenceScores(name, ov, ce, ne, valid, s, p, n)


def summarize(scores: list[SequenceScores]) -> dict[str, float]:
    """Dataset scores in percent, averaging the per-sequence curves.

    Returns:
        ``{"AUC", "OP50", "OP75", "Precision", "NormPrecision"}`` in ``[0, 100]``, plus
        ``"sequences"`` (count). AUC is the mean over thresholds of the mean success curve;
        the others read the mean curves at 0.5, 0.75, 20 px and 0.2.

    Raises:
        ValueError: empty list.
    """
    if not scores:
        raise ValueError("no sequences to summarize")
    s = np.mean([x.success for x in scores], axis=0)
    p = np.mean([x.precision for x in scores], axis=0)
    n = np.mean([x.norm_precision for x in scores], axis=0)
    return {
        "AUC": 100.0 * float(s.mean()),
        "OP50": 100.0 * float(s[_OP50]),
        "OP75": 100.0 * float(s[_OP75]),
        "Precision": 100.0 * float(p[_PREC20]),
        "NormPrecision": 100.0 * float(n[_NPREC20]),
        "sequences": float(len(scores)),
    }


def mean_curves(scores: list[SequenceScores]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Dataset-average curves: ``{"success" | "precision" | "norm_precision": (thr, values)}``."""
    if not scores:
        raise ValueError("no sequences")
    return {
        "success": (SUCCESS_THRESHOLDS, np.mean([x.success for x in scores], axis=0)),
        "precision": (PRECISION_THRESHOLDS, np.mean([x.precision for x in scores], axis=0)),
        "norm_precision": (
            NORM_PRECISION_THRESHOLDS,
            np.mean([x.norm_precision for x in scores], axis=0),
        ),
    }


def clip_to_image(boxes_xywh: np.ndarray, width: float, height: float) -> np.ndarray:
    """Clip ``(x, y, w, h)`` boxes to the image ``[0, width] x [0, height]`` (GOT-10k toolkit).

    Returns:
        ``(T, 4)`` float64 boxes, zero-sized where a box lies entirely outside.
    """
    b = _as_boxes(boxes_xywh, "boxes").copy()
    b[:, 0] = np.clip(b[:, 0], 0, width)
    b[:, 1] = np.clip(b[:, 1], 0, height)
    b[:, 2] = np.clip(b[:, 2], 0, width - b[:, 0])
    b[:, 3] = np.clip(b[:, 3], 0, height - b[:, 1])
    return b


def got10k_sequence_ious(
    pred_xywh: np.ndarray,
    gt_xywh: np.ndarray,
    visible: np.ndarray | None = None,
    image_size: tuple[int, int] | None = None,
) -> np.ndarray:
    """Overlaps that enter GOT-10k AO / SR: frame 0 and frames without a visible target dropped.

    Args:
        pred_xywh: ``(T, 4)`` predicted ``(x, y, w, h)`` pixel boxes.
        gt_xywh: ``(T, 4)`` ground truth.
        visible: ``(T,)`` bool, False where the target is absent (GOT-10k ``cover == 0``).
        image_size: ``(width, height)``: clip both boxes to the image first, as the toolkit does.

    Returns:
        ``(K,)`` float64 IoUs of the kept frames.
    """
    p, g = _pair(pred_xywh, gt_xywh)
    if image_size is not None:
        p, g = clip_to_image(p, *image_size), clip_to_image(g, *image_size)
    keep = np.ones(len(g), dtype=bool)
    keep[:1] = False
    if visible is not None:
        keep &= np.asarray(visible, dtype=bool)
    keep &= np.isfinite(g).all(axis=1)
    ov = iou(p, g)
    ov[np.isnan(ov)] = 0.0
    return ov[keep]


def got10k_scores(sequence_ious: list[np.ndarray]) -> dict[str, float]:
    """GOT-10k AO, SR0.5 and SR0.75 in percent, averaged over all kept frames of all sequences.

    Args:
        sequence_ious: per-sequence outputs of :func:`got10k_sequence_ious`.

    Returns:
        ``{"AO", "SR50", "SR75", "frames"}``.
    """
    if not sequence_ious:
        raise ValueError("no sequences to summarize")
    ious = np.concatenate([np.asarray(x, dtype=np.float64) for x in sequence_ious])
    if ious.size == 0:
        raise ValueError("no scoreable frames (every frame after the first is absent)")
    return {
        "AO": 100.0 * float(ious.mean()),
        "SR50": 100.0 * float((ious > 0.5).mean()),
        "SR75": 100.0 * float((ious > 0.75).mean()),
        "frames": float(ious.size),
    }


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` separating ``labels`` True from False.

    The Mann-Whitney statistic with ties counted one half: 1.0 when every positive scores
    above every negative, 0.5 for an uninformative score. NaN when either class is empty.

    Args:
        scores: ``(N,)`` float scores (higher = more likely positive).
        labels: ``(N,)`` bool.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels, dtype=bool).ravel()
    if s.shape != y.shape:
        raise ValueError(f"scores {s.shape} and labels {y.shape} differ in length")
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    sorted_s = s[order]
    # Average ranks over ties.
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_s)) + 1]
    ends = np.r_[starts[1:], len(s)]
    for a, b in zip(starts, ends):
        ranks[order[a:b]] = (a + b + 1) / 2.0
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))
