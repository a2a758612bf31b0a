"""What determines a run's result files, recorded in ``<results>/settings.json``: a run with other
settings refuses to write into the folder (:func:`check_settings`)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mixformer.utils import atomic_write_text

__all__ = ["SETTINGS_FILE", "RunSettings", "check_settings", "file_sha256"]

SETTINGS_FILE = "settings.json"
_SETTINGS_VERSION = 1


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class RunSettings:
    """Everything that determines the result files of a run; recorded in ``settings.json``.

    Attributes:
        dataset: benchmark key.
        model: model preset name.
        weights_sha256: SHA-256 of the weights file, or ``"random"`` (seeded random weights).
        tracker: :class:`~mixformer.TrackerConfig` fields.
        weights: the weights path as given (informational; not compared).
        threads: torch intra-op threads per worker (informational; not compared: results do
            not depend on it). None: ``max(1, cpu_count // workers)``.
        fast: the fast inference path (default) or, False, the plain reference arithmetic
            (``--plain``). Compared: the two paths' boxes differ by float rounding, which can
            move a written integer box by a pixel. Records written before this field existed
            were made on the plain path and read as ``False``.
        dtype: the network precision the boxes were made in, resolved (``"fp32"``,
            ``"bf16"`` or ``"fp16"``; ``--dtype auto`` is recorded as what it resolved to).
            Compared, like ``fast``. Records written before this field existed read as
            ``"fp32"`` (the only precision of the CLI then).
        backend: what ran the network, resolved (``"torch"``, ``"onnxruntime"`` or
            ``"openvino"``; ``--backend auto`` is recorded as what it resolved to). Compared:
            OpenVINO's fp32 boxes equal torch's within float rounding, which can move a written
            integer box by a pixel. Records written before this field existed read as
            ``"torch"``.
    """

    dataset: str
    model: str
    weights_sha256: str
    tracker: dict[str, Any]
    weights: str | None = None
    threads: int | None = None
    fast: bool = True
    dtype: str = "fp32"
    backend: str = "torch"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (with a format version)."""
        return {"version": _SETTINGS_VERSION, **dataclasses.asdict(self)}

    def differences(self, other: RunSettings) -> list[str]:
        """Human-readable differences that matter (everything except ``weights``, ``threads``)."""
        out = []
        a, b = dataclasses.asdict(self), dataclasses.asdict(other)
        for key in ("dataset", "model", "weights_sha256"):
            if a[key] != b[key]:
                out.append(f"{key}: {a[key]!r} (recorded) vs {b[key]!r} (now)")
        if a["fast"] != b["fast"]:
            path = {True: "fast", False: "plain (--plain)"}
            out.append(f"inference path: {path[a['fast']]} (recorded) vs {path[b['fast']]} (now)")
        for key in ("dtype", "backend"):  # `evaluate --dtype/--backend X` continues such a run
            if a[key] != b[key]:
                out.append(
                    f"{key}: {a[key]} (recorded; --{key} {a[key]} continues it) vs {b[key]} (now)"
                )
        for key in sorted(set(a["tracker"]) | set(b["tracker"])):
            va, vb = a["tracker"].get(key), b["tracker"].get(key)
            if va != vb:
                out.append(f"tracker.{key}: {va!r} (recorded) vs {vb!r} (now)")
        return out


def check_settings(results_dir: str | Path, settings: RunSettings) -> None:
    """Record ``settings`` in ``results_dir``, or check them against the recorded ones.

    Raises:
        ValueError: the folder holds results of different settings, or results without a
            settings record; the message lists the differences.
    """
    results_dir = Path(results_dir)
    path = results_dir / SETTINGS_FILE
    if path.is_file():
        try:
            data = json.loads(path.read_text())
            data.pop("version", None)
            data.setdefault("fast", False)  # older records: the plain path was the only one
            data.setdefault("dtype", "fp32")  # older records: fp32 was the only precision
            data.setdefault("backend", "torch")  # older records: torch was the only backend
            old = RunSettings(**data)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{path}: unreadable settings record ({exc})") from exc
        diff = old.differences(settings)
        if diff:
            raise ValueError(
                f"{results_dir} holds results made with other settings ("
                + "; ".join(diff)
                + "). Use another --results folder."
            )
        return
    if results_dir.is_dir() and any(results_dir.rglob("*.txt")):
        raise ValueError(
            f"{results_dir} already holds result files but no {SETTINGS_FILE}; refusing to mix. "
            "Use another --results folder."
        )
    atomic_write_text(path, json.dumps(settings.to_dict(), indent=2, sort_keys=True) + "\n")
