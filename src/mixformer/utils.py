"""Small helpers without a better home: atomic file writes, checksums, stale temporary files.

Every atomic writer writes a hidden ``.<name>.<random>.tmp`` file beside the target and renames
it over the target; the file gets the permissions a plain ``open(path, "w")`` would give
(``0o666`` minus the umask), not ``mkstemp``'s private ``0o600``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: Key under which :func:`atomic_save_torch` (``checksum=True``) stores :func:`state_checksum`.
CHECKSUM_KEY = "checksum"
#: Temporary files of the atomic writers older than this are stale (their writer died).
STALE_TMP_SECONDS = 600.0

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask (read without changing it where ``/proc`` allows)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:  # os.umask can only be read by setting it
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def default_file_mode() -> int:
    """The mode ``open(path, "w")`` gives a new file: ``0o666 & ~umask``."""
    return 0o666 & ~current_umask()


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed over ``path``.

    The caller writes the complete file to the yielded path. On an exception the temporary file
    is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(name)
    try:
        os.fchmod(fd, default_file_mode())
        os.close(fd)
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` so readers see either the old file or the complete new one."""
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


def state_checksum(obj: Any) -> str:
    """SHA-256 over a checkpoint object: every tensor's dtype, shape and bytes, other values'
    ``repr``, in the object's own order (dicts, lists and tuples are walked).

    ``state_checksum(torch.load(f))`` equals the checksum of the object that was saved, so a
    flipped bit in a tensor or in a recorded value is noticed when the file is loaded.
    """
    h = hashlib.sha256()
    _feed(h, obj)
    return "sha256:" + h.hexdigest()


def _feed(h: Any, obj: Any) -> None:
    import torch

    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)};".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(obj, dict):
        h.update(f"D{len(obj)};".encode())
        for k, v in obj.items():
            _feed(h, k)
            _feed(h, v)
    elif isinstance(obj, list | tuple):
        h.update(f"L{len(obj)};".encode())
        for v in obj:
            _feed(h, v)
    else:
        h.update(f"{type(obj).__name__}:{obj!r};".encode())


def atomic_save_torch(obj: object, path: str | Path, checksum: bool = False) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename over it.

    Args:
        obj: what to save.
        path: the target file.
        checksum: ``obj`` is a dict: store :func:`state_checksum` of it under
            :data:`CHECKSUM_KEY` (checked by :func:`mixformer.models.weights.load_file`).
    """
    import torch

    if checksum:
        if not isinstance(obj, dict):
            raise TypeError("checksum=True needs a dict")
        body = {k: v for k, v in obj.items() if k != CHECKSUM_KEY}
        obj = {**body, CHECKSUM_KEY: state_checksum(body)}
    with atomic_path(path) as tmp:
        try:
            with open(tmp, "wb") as f:  # a file object: a failed write raises OSError in it
                torch.save(obj, f)
                f.flush()
                os.fsync(f.fileno())
        except RuntimeError as exc:  # torch's writer wraps the OSError (a full disk, EFBIG)
            err = _os_error_in(exc)
            if err is None:
                raise
            raise OSError(err.errno, err.strerror, str(path)) from exc


def _os_error_in(exc: BaseException) -> OSError | None:
    """The first ``OSError`` in ``exc``'s chain of causes and contexts, if any."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, OSError):
            return cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return None


def remove_stale_tmp(
    folder: str | Path, max_age_s: float = STALE_TMP_SECONDS, recursive: bool = True
) -> list[Path]:
    """Delete the atomic writers' leftovers (``.*.tmp``) older than ``max_age_s`` in ``folder``.

    A process killed inside an atomic write leaves its temporary file behind; nothing else ever
    removes it. Younger files may belong to a writer that is still running and are kept.

    Returns:
        The removed files.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    now = time.time()
    found = folder.rglob(".*.tmp") if recursive else folder.glob(".*.tmp")
    removed = []
    for p in found:
        try:
            if p.is_file() and now - p.stat().st_mtime > max_age_s:
                p.unlink()
                removed.append(p)
        except OSError:  # gone meanwhile, or not ours to delete
            continue
    if removed:
        log.info("removed %d stale temporary file(s) in %s", len(removed), folder)
    return removed
