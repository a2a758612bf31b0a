"""Pictures of the mixed attention behind a tracking result (``keep_attention=True``).

A :class:`~mixformer.tracking.results.TrackAttention` holds, per block, the probabilities of the
search queries over ``[template, online0, ..., search]`` keys, with the grid of every segment.
Two pictures are drawn from one search-kind record (one block):

* :func:`render_query`: for one search location (default: the centre of the tracker's box),
  where it looks: its attention over the search crop's own keys and over the template and every
  online template, each drawn over that image;
* :func:`render_frame`: over the whole frame, how strongly each search location attends to the
  target template (its probability mass on the ``"template"`` keys), the search grid mapped back
  into image pixels through the crop window.

:func:`write_attention` writes both as PNG files (atomically). Heads are averaged.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mixformer.tracking.results import TrackAttention
from mixformer.utils import atomic_path

__all__ = [
    "query_attention",
    "render_frame",
    "render_query",
    "segment_mass",
    "select_map",
    "write_attention",
]

_TILE = 192  # side of one picture tile in pixels
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def select_map(attention: TrackAttention, layer: int | str = -1) -> Any:
    """One search-kind :class:`~mixformer.models.AttentionMap` of ``attention``.

    Args:
        attention: a result's attention.
        layer: index into the search-kind records in block order (``-1``: the last block) or a
            layer's module path (e.g. ``"backbone.stage2.blocks.0.attn"``).
    Raises:
        ValueError: no search-kind records (the ``init`` frame) or an unknown layer.
    """
    maps = attention.search_maps
    if not maps:
        raise ValueError("this result has no search attention (the init frame has none)")
    if isinstance(layer, str):
        for m in maps:
            if m.layer == layer:
                return m
        raise ValueError(
            f"no search attention of layer {layer!r}; layers: {[m.layer for m in maps]}"
        )
    try:
        return maps[layer]
    except IndexError:
        raise ValueError(f"layer index {layer} out of range: {len(maps)} search blocks") from None


def _slices(segments: Sequence[tuple[str, int, int]]) -> dict[str, tuple[slice, int, int]]:
    out, start = {}, 0
    for name, h, w in segments:
        out[name] = (slice(start, start + h * w), h, w)
        start += h * w
    return out


def query_attention(amap: Any, query: tuple[int, int]) -> dict[str, np.ndarray]:
    """Where one search query looks: its probabilities over each key segment.

    Args:
        amap: a search-kind :class:`~mixformer.models.AttentionMap` (``probs (1, heads, Q, K)``).
        query: ``(row, col)`` on the search query grid (``query_segments[0]``'s ``h x w``).
    Returns:
        ``{segment name: (h, w) float32}`` per key segment, heads averaged; all segments
        together sum to 1.
    Raises:
        ValueError: a query outside the grid.
    """
    _, qh, qw = amap.query_segments[0]
    r, c = query
    if not (0 <= r < qh and 0 <= c < qw):
        raise ValueError(f"query {query} is outside the {qh}x{qw} search grid")
    row = amap.probs[0, :, r * qw + c].float().mean(0).cpu().numpy()
    return {
        name: row[sl].reshape(h, w).astype(np.float32)
        for name, (sl, h, w) in _slices(amap.key_segments).items()
    }


def segment_mass(amap: Any, segment: str = "template") -> np.ndarray:
    """Per search query, the attention mass on one key segment.

    Args:
        amap: a search-kind record.
        segment: key segment name (``"template"``, ``"online0"``, ..., ``"search"``).
    Returns:
        ``(qh, qw)`` float32 in ``[0, 1]`` on the search query grid (the first query segment),
        heads averaged.
    Raises:
        ValueError: no such segment.
    """
    slices = _slices(amap.key_segments)
    if segment not in slices:
        raise ValueError(f"no key segment {segment!r}; segments: {list(slices)}")
    sl, _, _ = slices[segment]
    _, qh, qw = amap.query_segments[0]
    mass = amap.probs[0, :, : qh * qw, sl].float().sum(-1).mean(0)
    return mass.reshape(qh, qw).cpu().numpy().astype(np.float32)


def _search_patch(frame: np.ndarray, window: Sequence[float], size: int) -> np.ndarray:
    """The ``size x size`` search patch the network saw (zero outside the image)."""
    x, y, side, _ = window
    s = size / side
    m = np.array([[s, 0.0, -x * s], [0.0, s, -y * s]], dtype=np.float64)
    return cv2.warpAffine(frame, m, (size, size), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))


def _heat(values: np.ndarray, vmax: float, vmin: float = 0.0) -> np.ndarray:
    """``values`` in ``[vmin, vmax]`` as an RGB uint8 colour map (JET)."""
    v = np.clip((values - vmin) / max(vmax - vmin, 1e-12), 0.0, 1.0)
    bgr = cv2.applyColorMap((v * 255).astype(np.uint8), cv2.COLORMAP_JET)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _tile(image: np.ndarray, grid: np.ndarray, vmax: float, caption: str) -> np.ndarray:
    """``image`` resized to a tile with ``grid`` (each cell one key) blended over it."""
    base = cv2.resize(image, (_TILE, _TILE), interpolation=cv2.INTER_AREA)
    heat = cv2.resize(_heat(grid, vmax), (_TILE, _TILE), interpolation=cv2.INTER_NEAREST)
    tile = cv2.addWeighted(base, 0.45, heat, 0.55, 0.0)
    band = np.full((22, _TILE, 3), 255, np.uint8)
    cv2.putText(band, caption, (4, 16), _FONT, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([band, tile])


def _query_of(attention: TrackAttention, amap: Any, point: Sequence[float] | None) -> tuple:
    """The query cell under image point ``point`` (default: the tracker's box centre)."""
    x0, y0, side, _ = attention.crop_window
    if point is None:
        bx, by, bw, bh = attention.box
        point = (bx + bw / 2, by + bh / 2)
    _, qh, qw = amap.query_segments[0]
    col = int(np.clip((point[0] - x0) / side * qw, 0, qw - 1))
    row = int(np.clip((point[1] - y0) / side * qh, 0, qh - 1))
    return row, col


def render_query(
    attention: TrackAttention,
    frame: np.ndarray,
    point: Sequence[float] | None = None,
    layer: int | str = -1,
) -> np.ndarray:
    """Where one search location looks, in the search crop, the template and each online one.

    Args:
        attention: a result's attention (not the ``init`` frame's).
        frame: the ``(H, W, 3)`` uint8 RGB frame of that result.
        point: ``(x, y)`` image pixel of the search location (default: the centre of the
            tracker's box); clamped into the search crop.
        layer: which block (see :func:`select_map`).
    Returns:
        ``(22 + 192 + 24, 192 * (2 + N), 3)`` uint8 RGB: tiles left to right ``search``
        (the query marked), ``template``, ``online0``, ...; each tile's colours share one scale
        (the largest probability among them), its caption gives the segment's probability mass.
    """
    amap = select_map(attention, layer)
    r, c = _query_of(attention, amap, point)
    probs = query_attention(amap, (r, c))
    vmax = max(float(p.max()) for p in probs.values())
    names = [n for n, _, _ in amap.key_segments if n == "template" or n.startswith("online")]
    images = dict(zip(names, attention.templates))
    images["search"] = _search_patch(frame, attention.crop_window, attention.search_size)
    # segments without an image (e.g. MixFormerV2's prediction tokens) are left out
    order = ["search", *[n for n in probs if n != "search" and n in images]]
    tiles = []
    for name in order:
        tile = _tile(images[name], probs[name], vmax, f"{name}: {100 * probs[name].sum():.1f}%")
        if name == "search":
            _, qh, qw = amap.query_segments[0]
            centre = (int((c + 0.5) * _TILE / qw), 22 + int((r + 0.5) * _TILE / qh))
            cv2.drawMarker(tile, centre, (255, 255, 255), cv2.MARKER_CROSS, 14, 2)
        tiles.append(tile)
    picture = np.hstack(tiles)
    footer = np.full((24, picture.shape[1], 3), 255, np.uint8)
    _, qh, qw = amap.query_segments[0]
    text = f"{amap.layer}: search query ({r}, {c}) of {qh}x{qw}, heads averaged"
    cv2.putText(footer, text, (4, 17), _FONT, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([picture, footer])


def render_frame(
    attention: TrackAttention,
    frame: np.ndarray,
    layer: int | str = -1,
    segment: str = "template",
) -> np.ndarray:
    """The frame with each search location coloured by its attention mass on ``segment``.

    Args:
        attention: a result's attention (not the ``init`` frame's).
        frame: the ``(H, W, 3)`` uint8 RGB frame of that result.
        layer: which block (see :func:`select_map`).
        segment: key segment whose mass is shown (default the first-frame template).
    Returns:
        ``(H + 40, W, 3)`` uint8 RGB: the frame, the search crop window's area coloured (JET
        from the smallest to the largest mass, both given in the footer), the window (white)
        and the tracker's box (green) drawn.
    """
    amap = select_map(attention, layer)
    mass = segment_mass(amap, segment)
    qh, qw = mass.shape
    x0, y0, side, _ = attention.crop_window
    h, w = frame.shape[:2]
    sx, sy = side / qw, side / qh
    # grid cell (i, j) covers image pixels [x0 + j * sx, x0 + (j + 1) * sx): centre-aligned map
    m = np.array([[sx, 0.0, x0 + 0.5 * sx - 0.5], [0.0, sy, y0 + 0.5 * sy - 0.5]])
    grid = cv2.warpAffine(mass, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=0.0)
    inside = cv2.warpAffine(np.ones_like(mass), m, (w, h), flags=cv2.INTER_NEAREST, borderValue=0.0)
    vmin, vmax = float(mass.min()), float(mass.max())
    heat = _heat(grid, vmax, vmin)
    out = frame.copy()
    sel = inside > 0
    out[sel] = (0.4 * frame[sel] + 0.6 * heat[sel]).astype(np.uint8)
    p0 = (int(round(x0)), int(round(y0)))
    cv2.rectangle(out, p0, (p0[0] + int(side), p0[1] + int(side)), (255, 255, 255), 1)
    bx, by, bw, bh = (int(round(v)) for v in attention.box)
    cv2.rectangle(out, (bx, by), (bx + bw, by + bh), (0, 200, 0), 2)
    footer = np.full((40, w, 3), 255, np.uint8)
    lines = (amap.layer, f"mass on {segment} keys: {100 * vmin:.1f}% (blue) - {100 * vmax:.1f}%")
    for k, text in enumerate(lines):
        cv2.putText(footer, text, (4, 15 + 18 * k), _FONT, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([out, footer])


def _write_png(path: Path, rgb: np.ndarray) -> None:
    ok, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"cannot encode {path} as PNG")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data.tobytes())
            f.flush()
            os.fsync(f.fileno())


def write_attention(
    directory: str | Path,
    stem: str,
    attention: TrackAttention,
    frame: np.ndarray,
    point: Sequence[float] | None = None,
    layer: int | str = -1,
) -> tuple[Path, Path]:
    """Write :func:`render_query` and :func:`render_frame` as ``<stem>_query.png`` and
    ``<stem>_frame.png`` in ``directory`` (created; each file written atomically).

    Returns:
        The two paths.
    """
    directory = Path(directory)
    query = directory / f"{stem}_query.png"
    whole = directory / f"{stem}_frame.png"
    _write_png(query, render_query(attention, frame, point, layer))
    _write_png(whole, render_frame(attention, frame, layer))
    return query, whole
