"""Submission archives for the GOT-10k and TrackingNet evaluation servers (SPEC 4.4).

The archive is built in memory from the result files and written atomically; the result
folders are only read (the reference scripts delete them, SPEC 5 item 33).
"""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path

from mixformer.data.io import format_boxes, read_boxes
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


def pack_results(
    server: str, results: str | Path, out_zip: str | Path, expected: int | None = None
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

    Returns:
        The packed sequence names.

    Raises:
        ValueError: unknown server, no results, malformed box file, or a missing GOT-10k time file.
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
    out_zip.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_zip) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, name in zip(files, names):
            boxes = read_boxes(path)
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
