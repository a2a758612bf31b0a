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
from typing import Any

import torch

#: Networks with fewer parameters run one thread on the torch backend: a second one costs more
#: in OpenMP synchronisation than it saves (``mixformer-mbv3``, 1.7 M, 25-32 FPS on 1 thread
#: against 13-21 on 2; ``mixformerv2-s`` 9.5-10.2 against 12.8-13.8 FPS: ``mixformer benchmark
#: --threads N --frames 40``, alternating, 2-core AMD EPYC). OpenVINO and ONNX Runtime, with
#: their own thread pools, gain from the second thread on a quiet machine (``mixformer-mbv3``:
#: OpenVINO 101-105 against 72-73 FPS, ONNX Runtime 74 against 62; ``mixformer demo`` 40-42
#: against 32-35 FPS; 2-core Xeon), so the rule is the torch backend's only.
SMALL_NETWORK_PARAMS = 5_000_000

#: Backends whose second thread still pays while another job keeps one core busy, so that only
#: a load average of all the cores makes them take one: OpenVINO (2-core Xeon, one busy loop
#: beside it, ``mixformer benchmark --threads N --frames 40``, two runs each: MixFormerV2-S bf16
#: 84.3 / 85.1 FPS on 2 threads against 73.0 / 76.4 on 1, the default model 83.7 / 83.8 against
#: 84.4 / 87.5; with two busy loops 1 thread wins, 47-74 against 38-39 FPS). The 1-minute load
#: average also stays high for a minute after a job ends: right after a benchmark,
#: ``Tracker(mixformerv2-s)`` ran 1 thread at 74.6 FPS, and 2 threads at 140 FPS once it fell.
#: ONNX Runtime and torch lose from the second thread beside one busy loop (the default model
#: on ONNX Runtime: 36-58 against 68-69 FPS; torch: the 4-7 FPS collapse of the module
#: docstring), so half the cores busy makes them take one.
WHOLE_MACHINE_BUSY_BACKENDS = ("openvino",)


def is_small_network(model: Any) -> bool:
    """Whether ``model`` (a torch module, or anything with a ``model`` attribute that is one,
    e.g. an engine) has fewer than :data:`SMALL_NETWORK_PARAMS` parameters."""
    module = model if isinstance(model, torch.nn.Module) else getattr(model, "model", None)
    if not isinstance(module, torch.nn.Module):
        return False
    return sum(p.numel() for p in module.parameters()) < SMALL_NETWORK_PARAMS


def auto_threads(
    cores: int | None = None,
    load: float | None = None,
    model: Any = None,
    backend: str = "torch",
) -> int:
    """Default intra-op threads for one tracker: 2, or 1 on a busy or single-core machine or
    for a small network on the torch backend.

    ``min(2, cores)`` while the 1-minute load average is below half the cores (below all the
    cores for OpenVINO, :data:`WHOLE_MACHINE_BUSY_BACKENDS`), else 1; always 1 when ``model``
    is small (:func:`is_small_network`) and runs on torch (:data:`SMALL_NETWORK_PARAMS` says
    why).

    Args:
        cores: CPU cores this process may use (default: its affinity mask).
        load: 1-minute load average (default: ``os.getloadavg()``; 0 where unavailable).
        model: the network (or engine) the threads run, if known.
        backend: what runs it (``"torch"``, ``"openvino"``, ``"onnxruntime"``; resolved, not
            ``"auto"``).
    """
    if model is not None and backend == "torch" and is_small_network(model):
        return 1
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
    busy = cores if backend in WHOLE_MACHINE_BUSY_BACKENDS else cores / 2
    return 1 if cores < 2 or load >= busy else 2


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


def resolve_threads(threads: int | None, model: Any = None, backend: str = "torch") -> int:
    """A tracker's ``threads`` argument -> the count it runs with (0: torch's, untouched).

    ``None``: torch's setting if the program chose one (:func:`caller_chose_threads`), else
    :func:`auto_threads` for ``model`` on ``backend`` (decided once, when the tracker is built);
    ``0``: torch's setting;
    ``n >= 1``: ``n``.

    Raises:
        ValueError: a negative count or not an int.
    """
    if threads is None:
        return 0 if caller_chose_threads() else auto_threads(model=model, backend=backend)
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
