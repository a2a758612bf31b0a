"""Success and precision plots written as PNG files (matplotlib, Agg backend)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from mixformer.utils import atomic_path

log = logging.getLogger(__name__)

Curve = tuple[np.ndarray, np.ndarray]


def _plot(
    curves: Mapping[str, Curve],
    scores: Mapping[str, float] | None,
    path: str | Path,
    title: str,
    xlabel: str,
    ylabel: str,
    score_fmt: str,
) -> Path:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    order = list(curves)
    if scores:
        order.sort(key=lambda k: -scores.get(k, 0.0))
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=100)
    try:
        for name in order:
            x, y = curves[name]
            label = (
                name if not scores or name not in scores else score_fmt.format(name, scores[name])
            )
            ax.plot(np.asarray(x), 100.0 * np.asarray(y), linewidth=2, label=label)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.set_ylim(0, 100)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower left" if "Success" in title else "lower right", fontsize=8)
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
    log.info("wrote %s", path)
    return path


def plot_success(
    curves: Mapping[str, Curve],
    path: str | Path,
    aucs: Mapping[str, float] | None = None,
    title: str = "Success plot",
) -> Path:
    """Plot success curves (overlap threshold vs. success rate) of one or more trackers.

    Args:
        curves: tracker name -> ``(thresholds, values)`` with values in ``[0, 1]``
            (e.g. from :func:`mixformer.evaluation.metrics.success_curve`).
        path: PNG file to write (atomically).
        aucs: optional tracker name -> AUC in percent, shown in the legend and used for sorting.
        title: plot title.

    Returns:
        ``path``.
    """
    return _plot(curves, aucs, path, title, "Overlap threshold", "Success rate [%]", "{} [{:.1f}]")


def plot_precision(
    curves: Mapping[str, Curve],
    path: str | Path,
    precisions: Mapping[str, float] | None = None,
    title: str = "Precision plot",
    normalized: bool = False,
) -> Path:
    """Plot precision curves (centre-error threshold vs. precision) of one or more trackers.

    Args:
        curves: tracker name -> ``(thresholds, values)``; thresholds in pixels, or in units of
            the target size when ``normalized``.
        path: PNG file to write (atomically).
        precisions: optional tracker name -> precision in percent for the legend.
        title: plot title.
        normalized: label the x axis as a normalised distance.

    Returns:
        ``path``.
    """
    xlabel = (
        "Normalized location error threshold" if normalized else "Location error threshold [px]"
    )
    return _plot(curves, precisions, path, title, xlabel, "Precision [%]", "{} [{:.1f}]")
