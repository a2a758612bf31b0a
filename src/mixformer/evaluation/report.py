"""Score result folders of one or more trackers on a benchmark; tables, CSV, Markdown, plots.

A tracker is given as one or more result folders in the standard format (``<seq>.txt`` boxes,
comma / tab / space separated; GOT-10k and TrackingNet results may sit in a ``got10k/`` or
``trackingnet/`` subfolder, or use the GOT-10k toolkit's ``<seq>/<seq>_001.txt``). Several folders
of one tracker (the shards of a run on several machines) are merged.
"""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mixformer.data.benchmarks import Benchmark
from mixformer.data.io import read_boxes
from mixformer.data.sequence import Sequence
from mixformer.evaluation import metrics as M
from mixformer.utils import atomic_write_text

log = logging.getLogger(__name__)


def find_result(folders: list[Path], benchmark: Benchmark, name: str) -> Path | None:
    """The result file of sequence ``name`` in any of ``folders``, or None."""
    for folder in folders:
        candidates = [folder / f"{name}.txt", folder / name / f"{name}_001.txt"]
        if benchmark.result_subdir:
            candidates.insert(0, folder / benchmark.result_subdir / f"{name}.txt")
        for c in candidates:
            if c.is_file():
                return c
    return None


@dataclass
class TrackerReport:
    """Scores of one tracker.

    Attributes:
        name: display name.
        folders: its result folders.
        sequences: per-sequence scores, in benchmark order.
        missing: sequences without a result file.
        summary: dataset scores in percent (see :func:`metrics.summarize`), plus GOT-10k ``AO``,
            ``SR50``, ``SR75`` for ``got10k`` benchmarks.
        fps: mean frames per second from the ``_time.txt`` files, when present.
    """

    name: str
    folders: list[Path]
    sequences: list[M.SequenceScores] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    summary: dict[str, float] = field(default_factory=dict)
    fps: float | None = None


def length_problem(path: Path, lines: int, expected: int, of: str) -> str | None:
    """``"PATH: N lines, expected M (OF)"`` when a result file's line count is not
    ``expected``, else None."""
    if lines == expected:
        return None
    return f"{path}: {lines} line{'' if lines == 1 else 's'}, expected {expected} ({of})"


def refuse_incomplete(problems: list[str], use: str = "score") -> None:
    """Raise for result files of the wrong length (see :func:`length_problem`), naming the
    first and counting the others.

    Raises:
        ValueError: ``problems`` is not empty.
    """
    if not problems:
        return
    more = len(problems) - 1
    others = f"; {more} more result file{'' if more == 1 else 's'} too" if more else ""
    raise ValueError(
        f"{problems[0]}{others}; pass --allow-incomplete to {use} "
        f"{'them' if more else 'it'} anyway (a warning per file)"
    )


def _image_size(path: Path) -> tuple[int, int] | None:
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    return None if img is None else (img.shape[1], img.shape[0])


def evaluate_tracker(
    name: str,
    folders: list[str | Path],
    sequences: list[Sequence],
    benchmark: Benchmark,
    allow_missing: bool = False,
    allow_incomplete: bool = False,
) -> TrackerReport:
    """Score one tracker's results against the ground truth.

    Args:
        name: display name.
        folders: result folders (merged; the first holding a sequence wins).
        sequences: the benchmark's sequences with ground truth.
        benchmark: the benchmark (result layout, length rule, metric family).
        allow_missing: skip sequences without results instead of raising.
        allow_incomplete: score a result file with more or fewer lines than the sequence has
            frames (empty, cut short, another dataset's) with a one-line warning naming it,
            instead of raising. The scoring then truncates a long one and pads a short one
            with misses (a short one still raises on ``strict_length`` benchmarks: LaSOT).

    Raises:
        ValueError: the benchmark has no public ground truth, a result file is missing (unless
            ``allow_missing``), has the wrong number of lines (unless ``allow_incomplete``) or
            is malformed (the message names the file).
    """
    if benchmark.metric == "server":
        raise ValueError(
            f"{benchmark.name} has no public ground truth: use `mixformer pack` and submit the "
            "archive to the evaluation server"
        )
    paths = [Path(f) for f in folders]
    for p in paths:
        if not p.is_dir():
            raise ValueError(f"result folder not found: {p}")
    rep = TrackerReport(name, paths)
    got_ious = []
    problems: list[str] = []
    frames, seconds = 0, 0.0
    for seq in sequences:
        path = find_result(paths, benchmark, seq.name)
        if path is None:
            rep.missing.append(seq.name)
            continue
        pred = read_boxes(path)
        problem = length_problem(path, len(pred), len(seq), f"one per frame of {seq.name}")
        if problem and not allow_incomplete:
            problems.append(problem)
            continue
        if problem:
            log.warning("%s", problem)
        try:
            rep.sequences.append(
                M.evaluate_sequence(
                    pred,
                    seq.ground_truth,
                    seq.visible,
                    name=seq.name,
                    strict_length=benchmark.strict_length,
                    exclude_invalid=benchmark.exclude_invalid,
                )
            )
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from exc
        if benchmark.metric == "got10k":
            pred = M.prepare_prediction(pred, seq.ground_truth, name=seq.name)
            size = _image_size(seq.frames[0])
            got_ious.append(M.got10k_sequence_ious(pred, seq.ground_truth, seq.visible, size))
        tpath = path.with_name(path.stem.removesuffix("_001") + "_time.txt")
        if tpath.is_file():
            try:
                t = np.loadtxt(tpath, ndmin=1)
                frames, seconds = frames + t.size, seconds + float(t.sum())
            except ValueError:
                log.warning("ignoring unreadable time file %s", tpath)
    refuse_incomplete(problems)
    if rep.missing and not allow_missing:
        raise ValueError(
            f"{name}: no result for {len(rep.missing)} of {len(sequences)} sequences (first: "
            f"{rep.missing[0]}, looked in {', '.join(str(p) for p in paths)}); pass "
            "--allow-missing to score the others"
        )
    if not rep.sequences:
        raise ValueError(f"{name}: no result files found in {', '.join(str(p) for p in paths)}")
    rep.summary = M.summarize(rep.sequences)
    if got_ious:
        rep.summary.update({k: v for k, v in M.got10k_scores(got_ious).items() if k != "frames"})
    rep.fps = frames / seconds if seconds > 0 else None
    return rep


def _columns(reports: list[TrackerReport]) -> list[str]:
    cols = ["AUC", "OP50", "OP75", "Precision", "NormPrecision"]
    if any("AO" in r.summary for r in reports):
        cols = ["AO", "SR50", "SR75", *cols]
    return cols


def _rows(reports: list[TrackerReport]) -> tuple[list[str], list[list[str]]]:
    cols = _columns(reports)
    header = ["Tracker", *cols, "Seqs", "FPS"]
    rows = []
    for r in reports:
        vals = [f"{r.summary[c]:.2f}" if c in r.summary else "-" for c in cols]
        fps = f"{r.fps:.1f}" if r.fps else "-"
        rows.append([r.name, *vals, str(len(r.sequences)), fps])
    return header, rows


def format_table(reports: list[TrackerReport]) -> str:
    """A fixed-width terminal table, one row per tracker."""
    header, rows = _rows(reports)
    widths = [max(len(x[i]) for x in [header, *rows]) for i in range(len(header))]
    fmt = lambda row: "  ".join(  # noqa: E731
        c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))
    )
    lines = [fmt(header), "  ".join("-" * w for w in widths), *map(fmt, rows)]
    return "\n".join(lines) + "\n"


def format_markdown(reports: list[TrackerReport], title: str = "") -> str:
    """A Markdown table (scores in percent)."""
    header, rows = _rows(reports)
    out = [f"## {title}\n"] if title else []
    out.append("| " + " | ".join(header) + " |")
    out.append("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
    out += ["| " + " | ".join(r) + " |" for r in rows]
    missing = [
        f"{r.name}: {len(r.missing)} sequences without results" for r in reports if r.missing
    ]
    if missing:
        out.append("")
        out += [f"- {m}" for m in missing]
    return "\n".join(out) + "\n"


def format_csv(reports: list[TrackerReport]) -> str:
    """CSV with one row per tracker (scores in percent)."""
    header, rows = _rows(reports)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def format_sequence_csv(reports: list[TrackerReport]) -> str:
    """CSV with one row per tracker and sequence: AUC, Precision@20, NormPrecision@0.2 in %."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["tracker", "sequence", "AUC", "Precision", "NormPrecision", "frames"])
    for r in reports:
        for s in r.sequences:
            w.writerow(
                [
                    r.name,
                    s.name,
                    f"{100 * s.success.mean():.2f}",
                    f"{100 * s.precision[20]:.2f}",
                    f"{100 * s.norm_precision[20]:.2f}",
                    len(s.iou),
                ]
            )
    return buf.getvalue()


def write_report(
    reports: list[TrackerReport], out_dir: str | Path, title: str = ""
) -> dict[str, Path]:
    """Write ``report.md``, ``report.csv``, ``sequences.csv`` and the PNG plots to ``out_dir``.

    Returns:
        Name -> path of every file written.
    """
    from mixformer.evaluation.plots import plot_precision, plot_success

    out = Path(out_dir)
    files = {
        "markdown": out / "report.md",
        "csv": out / "report.csv",
        "sequences": out / "sequences.csv",
    }
    atomic_write_text(files["markdown"], format_markdown(reports, title))
    atomic_write_text(files["csv"], format_csv(reports))
    atomic_write_text(files["sequences"], format_sequence_csv(reports))
    curves = {r.name: M.mean_curves(r.sequences) for r in reports}
    files["success"] = plot_success(
        {k: v["success"] for k, v in curves.items()},
        out / "success.png",
        {r.name: r.summary["AUC"] for r in reports},
        title=f"Success plot {title}".strip(),
    )
    files["precision"] = plot_precision(
        {k: v["precision"] for k, v in curves.items()},
        out / "precision.png",
        {r.name: r.summary["Precision"] for r in reports},
        title=f"Precision plot {title}".strip(),
    )
    files["norm_precision"] = plot_precision(
        {k: v["norm_precision"] for k, v in curves.items()},
        out / "norm_precision.png",
        {r.name: r.summary["NormPrecision"] for r in reports},
        title=f"Normalized precision plot {title}".strip(),
        normalized=True,
    )
    return files
