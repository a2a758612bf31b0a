"""How many intra-op threads a tracker uses: one policy for the CLI and the library.

PyTorch's default (one thread per core) makes every op wait for descheduled OpenMP threads on a
busy machine: the demo ran at 4-7 FPS with it on a loaded 2-core machine and at 72 FPS with one
thread, and the README's Python snippet took 19.6 s instead of 2.15 s. :func:`auto_threads` is
the default of the CLI commands and of :class:`~mixformer.Tracker` /
:class:`~mixformer.MultiTracker` (``threads=None``); the trackers apply it around their own calls
only (:func:`intra_op_threads`), so the caller's torch setting is unchanged outside them.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch


def auto_threads(cores: int | None = None, load: float | None = None) -> int:
    """Default intra-op threads for one tracker: 2, or 1 on a busy or single-core machine.

    ``min(2, cores)`` while the 1-minute load average is below half the cores, else 1.

    Args:
        cores: CPU cores this process may use (default: its affinity mask).
        load: 1-minute load average (default: ``os.getloadavg()``; 0 where unavailable).
    """
    if cores is None:
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            cores = os.cpu_count() or 1
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):
            load = 0.0
    return 1 if cores < 2 or load >= cores / 2 else 2


# torch's intra-op thread count when mixformer was imported: a different count later means the
# program chose one (torch.set_num_threads), which the trackers then leave alone.
_AT_IMPORT = torch.get_num_threads()
_CHOSEN: list[int] = []  # set_process_threads' count


def set_process_threads(n: int) -> None:
    """``torch.set_num_threads(n)``, recorded as the program's choice: trackers built with
    ``threads=None`` then keep it (the CLI's ``--threads`` goes through here)."""
    torch.set_num_threads(n)
    _CHOSEN[:] = [n]


def caller_chose_threads() -> bool:
    """Whether the program chose torch's thread count: :func:`set_process_threads` was called,
    ``torch.set_num_threads`` changed it since mixformer was imported, or ``OMP_NUM_THREADS`` /
    ``MKL_NUM_THREADS`` is set."""
    return (
        bool(_CHOSEN)
        or torch.get_num_threads() != _AT_IMPORT
        or any(os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"))
    )


def resolve_threads(threads: int | None) -> int:
    """A tracker's ``threads`` argument -> the count it runs with (0: torch's, untouched).

    ``None``: torch's setting if the program chose one (:func:`caller_chose_threads`), else
    :func:`auto_threads` (decided once, when the tracker is built); ``0``: torch's setting;
    ``n >= 1``: ``n``.

    Raises:
        ValueError: a negative count or not an int.
    """
    if threads is None:
        return 0 if caller_chose_threads() else auto_threads()
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
        raise ValueError(f"threads must be None, 0 or a positive int, got {threads!r}")
    return threads


@contextlib.contextmanager
def intra_op_threads(n: int) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n)`` and restore the previous count after.

    ``n == 0`` (or the count already set) changes nothing.
    """
    old = torch.get_num_threads()
    if n <= 0 or n == old:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
