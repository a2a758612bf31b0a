"""Submission archives for the GOT-10k and TrackingNet evaluation servers (SPEC 4.4).

The archive is built in memory from the result files and written atomically; the result
folders are only read (the reference scripts delete them, SPEC 5 item 33).
"""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path

from mixformer.data.io import format_boxes, read_boxes
from mixformer.evaluation.report import length_problem, refuse_incomplete
from mixformer.utils import atomic_path

log = logging.getLogger(__name__)

#: Number of test sequences each server expects.
EXPECTED = {"got10k": 180, "trackingnet": 511}


def _result_files(results: Path, server: str) -> list[Path]:
    base = results / server if (results / server).is_dir() else results
    if not base.is_dir():
        raise ValueError(f"result folder not found: {results}")
    files = sorted(p for p in base.glob("*.txt") if not p.stem.endswith("_time") and p.is_file())
    if not files:
        raise ValueError(f"no <seq>.txt result files in {base}")
    return files


def _line_count(path: Path) -> int:
    with open(path, encoding="utf-8", errors="replace") as f:
        return sum(1 for line in f if line.strip())


def _length_problem(path: Path, lines: int, frames: dict[str, int] | None) -> str | None:
    """A result file's wrong length: against the sequence's frames when known, else against
    its time file (one line per frame too), else only an empty file."""
    name = path.stem
    if frames is not None and name in frames:
        return length_problem(path, lines, frames[name], f"one per frame of {name}")
    tpath = path.with_name(f"{name}_time.txt")
    if tpath.is_file():
        return length_problem(path, lines, _line_count(tpath), f"as many as {tpath.name}")
    if lines == 0:
        return f"{path}: 0 lines, expected at least 1 (one per frame)"
    return None


def pack_results(
    server: str,
    results: str | Path,
    out_zip: str | Path,
    expected: int | None = None,
    frames: dict[str, int] | None = None,
    allow_incomplete: bool = False,
) -> list[str]:
    """Write the server's submission archive.

    GOT-10k: ``<seq>/<seq>_001.txt`` (comma-separated integer boxes) and ``<seq>/<seq>_time.txt``
    (copied unchanged; required). TrackingNet: ``<seq>.txt`` (comma-separated integers).

    Args:
        server: ``"got10k"`` or ``"trackingnet"``.
        results: results folder (the one given to ``mixformer evaluate``, or its ``got10k/`` /
            ``trackingnet/`` subfolder).
        out_zip: the archive to write (must not lie inside ``results``).
        expected: number of sequences the server wants (default :data:`EXPECTED`); a different
            count only logs a warning.
        frames: sequence name -> frame count (from the test split); without it a result file is
            checked against its time file, or only for being empty.
        allow_incomplete: pack a result file of the wrong length with a one-line warning
            naming it instead of raising.

    Returns:
        The packed sequence names.

    Raises:
        ValueError: unknown server, no results, malformed box file, a box file of the wrong
            length (unless ``allow_incomplete``; nothing is written), or a missing GOT-10k time
            file.
    """
    if server not in EXPECTED:
        raise ValueError(f"unknown server {server!r}; choose got10k or trackingnet")
    results, out_zip = Path(results).resolve(), Path(out_zip).resolve()
    if out_zip.suffix.lower() != ".zip":
        raise ValueError(f"output must be a .zip file, got {out_zip}")
    if results in out_zip.parents:
        raise ValueError(f"write the archive outside the results folder {results}")
    files = _result_files(results, server)
    names = [p.stem for p in files]
    boxes_of = [read_boxes(path) for path in files]
    problems = [
        problem
        for path, boxes in zip(files, boxes_of)
        if (problem := _length_problem(path, len(boxes), frames)) is not None
    ]
    if not allow_incomplete:
        refuse_incomplete(problems, "pack")
    for problem in problems:
        log.warning("%s", problem)
    out_zip.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_zip) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, name, boxes in zip(files, names, boxes_of):
            text = format_boxes(boxes, ",", integer=True)
            if server == "got10k":
                tpath = path.with_name(f"{name}_time.txt")
                if not tpath.is_file():
                    raise ValueError(f"GOT-10k needs the time file {tpath}")
                zf.writestr(f"{name}/{name}_001.txt", text)
                zf.writestr(f"{name}/{name}_time.txt", tpath.read_bytes())
            else:
                zf.writestr(f"{name}.txt", text)
    want = EXPECTED[server] if expected is None else expected
    if len(names) != want:
        log.warning("%s: packed %d sequences, the server expects %d", server, len(names), want)
    log.info("wrote %s (%d sequences)", out_zip, len(names))
    return names
