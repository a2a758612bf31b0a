"""On-disk cache of exported ONNX graphs, shared by the ONNX Runtime and OpenVINO backends.

Graphs of the same weights, config, opset, torch and mixformer versions (:func:`model_digest`)
are reused from ``$MIXFORMER_CACHE_DIR/onnx/<digest>`` (default ``$XDG_CACHE_HOME/mixformer`` or
``~/.cache/mixformer``), so only the first process pays the export (1.7 s for the default
model). An empty ``MIXFORMER_CACHE_DIR`` turns the cache off; an unwritable one falls back to a
temporary folder (:meth:`mixformer.export.onnx.ExportedGraphs.from_model`). Exports are written
atomically and the :data:`CACHE_KEEP` most recently used are kept.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import torch

from mixformer._version import __version__
from mixformer.export.onnx import DEFAULT_OPSET, GRAPH_REVISION, META_FILE, export_onnx
from mixformer.models.mixformer import MixFormer

log = logging.getLogger(__name__)

__all__ = ["CACHE_KEEP", "cached_export", "export_cache_dir", "model_digest"]

#: Exports kept in the cache (the least recently used beyond this are removed).
CACHE_KEEP = 8


def export_cache_dir() -> Path | None:
    """``$MIXFORMER_CACHE_DIR/onnx`` (default ``$XDG_CACHE_HOME/mixformer/onnx`` or
    ``~/.cache/mixformer/onnx``); None when ``MIXFORMER_CACHE_DIR`` is set but empty."""
    root = os.environ.get("MIXFORMER_CACHE_DIR")
    if root is None:
        xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        root = str(Path(xdg) / "mixformer")
    return Path(root) / "onnx" if root else None


def model_digest(model: MixFormer, opset: int = DEFAULT_OPSET) -> str:
    """SHA-256 (hex, 24 characters) of everything an export depends on: the model's name,
    config and every tensor of its state dict, the opset, the graphs' form
    (:data:`~mixformer.export.onnx.GRAPH_REVISION`), and the torch and mixformer versions."""
    h = hashlib.sha256()
    meta = [
        model.name,
        model.config.to_dict(),
        opset,
        GRAPH_REVISION,
        torch.__version__,
        __version__,
    ]
    h.update(json.dumps(meta, sort_keys=True, default=str).encode())
    for key, t in model.state_dict().items():
        h.update(key.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:24]


def cached_export(model: MixFormer, opset: int = DEFAULT_OPSET) -> Path | None:
    """The folder of ``model``'s exported graphs in the export cache, written on first use
    (atomically: exported next to it, then renamed), or None when the cache is off or cannot be
    written (a read-only or full disk): the caller then exports to a temporary folder."""
    root = export_cache_dir()
    if root is None:
        return None
    folder = root / model_digest(model, opset)
    if (folder / META_FILE).is_file():
        os.utime(folder)  # most recently used
        return folder
    tmp = None
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=root))
        export_onnx(model, tmp, opset=opset, check=False)
        for f in tmp.iterdir():
            f.chmod(0o644)
        tmp.chmod(0o755)
        try:
            tmp.rename(folder)
        except OSError:  # another process wrote it first
            if not (folder / META_FILE).is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except OSError as exc:
        log.info("ONNX export cache %s not usable (%s); exporting to a temporary folder", root, exc)
        return None
    finally:
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    _prune(root, keep=CACHE_KEEP)
    return folder


def _prune(root: Path, keep: int) -> None:
    """Remove all but the ``keep`` most recently used exports under ``root``."""
    done = [d for d in root.iterdir() if d.is_dir() and (d / META_FILE).is_file()]
    done.sort(key=lambda d: d.stat().st_mtime, reverse=True)
    for d in done[keep:]:
        shutil.rmtree(d, ignore_errors=True)
