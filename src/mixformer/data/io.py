"""Readers for the small text files of tracking benchmarks: box rows and per-frame labels."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

_SPLIT = re.compile(r"[,\t ;]+")


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise ValueError(f"file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8-sig")  # tolerate a byte-order mark
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from exc
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def read_rows(path: str | Path, widths: tuple[int, ...] = (4,)) -> list[np.ndarray]:
    """Numeric rows of a comma / tab / space separated file.

    Args:
        path: text file, one row per line (trailing blank lines are ignored).
        widths: accepted numbers of values per row.

    Returns:
        One float64 array per line (``NaN``/``nan`` entries allowed).

    Raises:
        ValueError: missing file, blank or unparsable line, or a row of another width; the
            message names the file and the 1-based line number.
    """
    path = Path(path)
    rows = []
    for i, line in enumerate(_read_lines(path), start=1):
        parts = [p for p in _SPLIT.split(line.strip()) if p]
        if not parts:
            raise ValueError(f"{path}:{i}: blank line inside the box rows")
        try:
            vals = np.array([float(p) for p in parts], dtype=np.float64)
        except ValueError as exc:
            raise ValueError(f"{path}:{i}: cannot parse {line.strip()!r} as numbers") from exc
        if len(vals) not in widths:
            want = " or ".join(str(w) for w in widths)
            raise ValueError(f"{path}:{i}: expected {want} values, got {len(vals)}: {line!r}")
        rows.append(vals)
    return rows


def read_boxes(path: str | Path) -> np.ndarray:
    """Read ``x, y, w, h`` rows (comma, tab or space separated).

    Args:
        path: text file with one box per line; ``NaN`` rows are allowed (unknown box).

    Returns:
        ``(N, 4)`` float64 ``(x, y, w, h)`` pixel boxes (``N = 0`` for an empty file).

    Raises:
        ValueError: missing file or an unparsable row (the message names file and line).
    """
    rows = read_rows(path, widths=(4,))
    if not rows:
        return np.zeros((0, 4), dtype=np.float64)
    return np.stack(rows)


def polygon_to_xywh(rows: np.ndarray) -> np.ndarray:
    """Axis-aligned bounding boxes of 4-point polygons (VOT annotations).

    Args:
        rows: ``(N, 8)`` ``x1, y1, ..., x4, y4`` corner coordinates in pixels.

    Returns:
        ``(N, 4)`` float64 ``(x, y, w, h)``: the tightest enclosing rectangles.
    """
    rows = np.asarray(rows, dtype=np.float64).reshape(-1, 8)
    xs, ys = rows[:, 0::2], rows[:, 1::2]
    x1, y1 = xs.min(axis=1), ys.min(axis=1)
    return np.stack([x1, y1, xs.max(axis=1) - x1, ys.max(axis=1) - y1], axis=1)


def read_labels(path: str | Path, allowed: tuple[int, ...] | None = None) -> np.ndarray:
    """Read integer per-frame labels written on one line (comma separated) or one per line.

    Covers LaSOT ``full_occlusion.txt`` / ``out_of_view.txt`` (one comma line) and GOT-10k
    ``absence.label`` / ``cover.label`` (one value per line).

    Args:
        path: the label file.
        allowed: the only values accepted (e.g. ``(0, 1)`` for flags); None accepts any integer.

    Returns:
        ``(N,)`` int64 values.

    Raises:
        ValueError: missing file, a non-integer entry or a value outside ``allowed`` (the
            message names file and line).
    """
    path = Path(path)
    values: list[int] = []
    for i, line in enumerate(_read_lines(path), start=1):
        for p in _SPLIT.split(line.strip()):
            if not p:
                continue
            try:
                f = float(p)
            except ValueError as exc:
                raise ValueError(f"{path}:{i}: cannot parse label {p!r}") from exc
            if not np.isfinite(f) or f != int(f):
                raise ValueError(f"{path}:{i}: label {p!r} is not an integer")
            if allowed is not None and int(f) not in allowed:
                want = " or ".join(str(a) for a in allowed)
                raise ValueError(f"{path}:{i}: label {p!r} must be {want}")
            values.append(int(f))
    return np.asarray(values, dtype=np.int64)


def read_flags(path: str | Path) -> np.ndarray:
    """Read 0/1 per-frame flags (one line, comma separated, or one per line).

    Returns:
        ``(N,)`` bool, True where the file has a 1.

    Raises:
        ValueError: missing file, an unparsable entry or a value other than 0 and 1 (the
            message names file and line).
    """
    return read_labels(path, allowed=(0, 1)) != 0


def format_boxes(boxes: np.ndarray, delimiter: str = ",", integer: bool = False) -> str:
    """Text of ``(N, 4)`` boxes, one row per line, newline-terminated.

    Args:
        boxes: ``(N, 4)`` ``(x, y, w, h)`` pixel boxes.
        delimiter: separator between the 4 values.
        integer: truncate toward zero and print as integers (the reference result format).
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if integer:
        lines = [delimiter.join(str(int(v)) for v in row) for row in boxes.astype(np.int64)]
    else:
        lines = [delimiter.join(f"{v:.4f}".rstrip("0").rstrip(".") for v in row) for row in boxes]
    return "".join(line + "\n" for line in lines)
