"""Locks on a results folder, so that one evaluate run (or the shards of one split) writes
into it at a time (``fcntl.flock``; dropped by the system when the process dies)."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

__all__ = ["LOCK_FILE", "results_lock", "settings_lock"]

LOCK_FILE = ".evaluate.lock"


def _flock(path: Path, mode: int, blocking: bool) -> int | None:
    """Open ``path`` (created) and ``flock`` it; returns the fd, or None when it is held."""
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, mode if blocking else mode | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def results_lock(results_dir: str | Path, shard: tuple[int, int] = (0, 1)) -> Iterator[Path]:
    """Hold ``results_dir`` (created) for one run while in the block; never waits for a run.

    An unsharded run locks ``.evaluate.lock`` exclusively. A run of shard ``I/N`` shares that
    lock with the other shards (they write disjoint sequences, e.g. the processes of one
    ``torchrun``), shares ``.evaluate.split-N.lock`` with the shards of its own split and locks
    ``.evaluate.shard-I-of-N.lock`` exclusively; it refuses while a shard of another split
    (``M != N``, whose sequences overlap its own) holds the folder. Runs join one at a time
    (``.evaluate.join.lock``, held for milliseconds), so two splits starting together cannot
    both slip in. Each run writes its process id into its exclusive lock file; a refusal names
    the holders. The locks are ``fcntl.flock`` locks: the system drops them when the process
    dies. Without ``fcntl`` (not POSIX) nothing is locked.

    Yields:
        The lock file that makes this run exclusive.

    Raises:
        ValueError: another run holds the folder (or this shard of it, or it is split into
            another number of shards); the message names the folder and the holders.
    """
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    main = results_dir / LOCK_FILE
    try:
        import fcntl
    except ImportError:
        yield main
        return
    held: list[int] = []
    try:
        guard = _flock(results_dir / ".evaluate.join.lock", fcntl.LOCK_EX, blocking=True)
        try:
            mine = _join(results_dir, shard, held)
        finally:
            if guard is not None:
                os.close(guard)
        yield mine
    finally:
        for fd in held:
            os.close(fd)  # releases the lock


def _join(results_dir: Path, shard: tuple[int, int], held: list[int]) -> Path:
    """Take a run's locks (see :func:`results_lock`; the caller holds the join lock and closes
    the descriptors appended to ``held``); returns the exclusive lock file."""
    import fcntl

    index, count = shard
    main = results_dir / LOCK_FILE
    sharded = count > 1
    fd = _flock(main, fcntl.LOCK_SH if sharded else fcntl.LOCK_EX, blocking=False)
    if fd is None:
        raise ValueError(
            f"{results_dir} is in use by another evaluate run ({_holders(results_dir)}; lock "
            f"{main} is held); wait for it to finish or use another --results folder"
        )
    held.append(fd)
    mine = main
    if sharded:
        for other in sorted(results_dir.glob(".evaluate.split-*.lock")):
            m = re.fullmatch(r"\.evaluate\.split-(\d+)\.lock", other.name)
            if m is None or int(m.group(1)) == count or not _is_held(other):
                continue
            split = int(m.group(1))
            raise ValueError(
                f"{results_dir} is in use by an evaluate run split into {split} shards "
                f"({_holders(results_dir)}); this run is split into {count} (--shard "
                f"{index}/{count}) and would track their sequences again; use --shard I/{split} "
                "or another --results folder"
            )
        fd = _flock(results_dir / f".evaluate.split-{count}.lock", fcntl.LOCK_SH, blocking=False)
        if fd is None:  # only a prober (under the join lock) holds it exclusively
            raise ValueError(f"{results_dir}: could not lock the split of {count} shards")
        held.append(fd)
        mine = results_dir / f".evaluate.shard-{index}-of-{count}.lock"
        fd = _flock(mine, fcntl.LOCK_EX, blocking=False)
        if fd is None:
            raise ValueError(
                f"{results_dir}: shard {index}/{count} is in use by another evaluate run "
                f"({_holders(results_dir)}; lock {mine} is held); wait for it to finish or use "
                "another --results folder"
            )
        held.append(fd)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return mine


def _is_held(path: Path, mode: int | None = None) -> bool:
    """Whether another open file holds a ``flock`` on ``path`` that excludes ``mode``
    (default exclusive: any lock)."""
    import fcntl

    fd = _flock(path, fcntl.LOCK_EX if mode is None else mode, blocking=False)
    if fd is None:
        return True
    os.close(fd)
    return False


def _recorded_pid(path: Path) -> str:
    try:
        return path.read_text().strip() or "?"
    except OSError:
        return "?"


def _holders(results_dir: Path) -> str:
    """The runs holding ``results_dir`` now, e.g. ``shard 0/2 (pid 123), shard 1/2 (pid 9)``."""
    import fcntl

    out = []
    main = results_dir / LOCK_FILE
    if main.is_file() and _is_held(main, fcntl.LOCK_SH):
        out.append(f"an unsharded run (pid {_recorded_pid(main)})")
    shards = []
    for path in results_dir.glob(".evaluate.shard-*-of-*.lock"):
        m = re.fullmatch(r"\.evaluate\.shard-(\d+)-of-(\d+)\.lock", path.name)
        if m is not None and _is_held(path):
            shards.append((int(m.group(2)), int(m.group(1)), path))
    for count, index, path in sorted(shards):
        out.append(f"shard {index}/{count} (pid {_recorded_pid(path)})")
    return "held by " + (", ".join(out) if out else "a process that did not record its id")


@contextlib.contextmanager
def settings_lock(results_dir: Path) -> Iterator[None]:
    """Serialise the settings check of concurrent shards (brief, blocking)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    fd = _flock(results_dir / ".settings.lock", fcntl.LOCK_EX, blocking=True)
    try:
        yield
    finally:
        if fd is not None:
            os.close(fd)
