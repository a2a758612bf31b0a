"""Run a tracker over a benchmark: resumable, sharded, parallel, one result file per sequence.

Result files follow the reference format (SPEC 4.1): ``<dir>/<seq>.txt`` (GOT-10k:
``<dir>/got10k/<seq>.txt``, TrackingNet: ``<dir>/trackingnet/<seq>.txt``), one tab-separated
``x y w h`` line per frame with integers truncated toward zero (frame 0 = the initial box), and
``<seq>_time.txt`` with the seconds per frame (``%f``). Both are written atomically once the
sequence is finished; the box file marks a sequence as done, so an interrupted run loses at most
the sequences in flight. ``<dir>/settings.json`` records the model, weights and tracker settings;
a run with different settings refuses to write into the folder. A sequence that raises has its
traceback written to ``<dir>/errors/<seq>.txt`` and the run continues.

A run holds an exclusive lock on ``<dir>/.evaluate.lock`` (``fcntl.flock``; the shards of one
sharded run share it and lock their shard, and shards of another split are refused), so a
second run into the same folder fails at once, naming the run that holds it, instead of
tracking everything again or slipping past the settings check; a run removes the stale
temporary files (``.*.tmp``, older than 10 minutes) a killed run left there. SIGTERM stops a
run like Ctrl-C (finished sequences are kept, the workers are stopped) and raises
:class:`Interrupted`, and worker processes end when the run that started them dies, even by
SIGKILL.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mixformer.data.benchmarks import Benchmark
from mixformer.data.frames import read_image
from mixformer.data.io import format_boxes
from mixformer.data.sequence import Sequence
from mixformer.evaluation.locks import results_lock, settings_lock
from mixformer.evaluation.settings import RunSettings, check_settings
from mixformer.utils import atomic_write_text, remove_stale_tmp

log = logging.getLogger(__name__)

ERRORS_DIR = "errors"


def result_paths(results_dir: str | Path, benchmark: Benchmark, name: str) -> tuple[Path, Path]:
    """``(box_file, time_file)`` of sequence ``name`` in a results folder (SPEC 4.1)."""
    base = Path(results_dir)
    if benchmark.result_subdir:
        base = base / benchmark.result_subdir
    return base / f"{name}.txt", base / f"{name}_time.txt"


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` (0-based ``I < N``) -> ``(I, N)``.

    Raises:
        ValueError: malformed text or out-of-range index.
    """
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError as exc:
        raise ValueError(f"--shard must look like I/N (e.g. 0/4), got {text!r}") from exc
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"--shard {text}: need 0 <= I < N")
    return i, n


def shard_from_env() -> tuple[int, int] | None:
    """``(RANK, WORLD_SIZE)`` from the environment set by ``torchrun``, if present."""
    rank, world = os.environ.get("RANK"), os.environ.get("WORLD_SIZE")
    if rank is None or world is None:
        return None
    return parse_shard(f"{rank}/{world}")


def shard_sequences(sequences: list[Sequence], index: int, count: int) -> list[Sequence]:
    """Every ``count``-th sequence starting at ``index`` (a stable split of the dataset order)."""
    return sequences[index::count]


def track_sequence(tracker: Any, seq: Sequence) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Track ``seq`` from its first ground-truth box.

    Args:
        tracker: a fresh :class:`mixformer.Tracker` (anything with ``init`` / ``update``);
            run by :func:`mixformer.track_video`.
        seq: the sequence.

    Returns:
        ``boxes`` ``(T, 4)`` float64 ``(x, y, w, h)`` pixels (row 0 = the initial box),
        ``times`` ``(T,)`` float64 seconds spent in ``init`` / ``update`` per frame and
        ``scores`` ``(T,)`` float64 tracker scores (row 0: the initialisation's).
    """
    from mixformer.tracking import track_video

    boxes = np.zeros((len(seq), 4), dtype=np.float64)
    times = np.zeros(len(seq), dtype=np.float64)
    scores = np.zeros(len(seq), dtype=np.float64)
    images = (read_image(path) for path in seq.frames)
    for frame in track_video(images, seq.init_box, tracker=tracker):
        boxes[frame.index] = frame.result.box
        times[frame.index] = frame.seconds
        scores[frame.index] = frame.result.score
    return boxes, times, scores


def write_result(box_path: Path, time_path: Path, boxes: np.ndarray, times: np.ndarray) -> None:
    """Write one sequence's result atomically: time file first, the box file (done mark) last."""
    atomic_write_text(time_path, "".join(f"{t:f}\n" for t in times))
    atomic_write_text(box_path, format_boxes(boxes, "\t", integer=True))


# --------------------------------------------------------------------------- worker side


@dataclass(frozen=True)
class _Job:
    model: str
    weights: str | None
    tracker: dict[str, Any]
    device: str
    threads: int
    parent_pid: int = 0
    fast: bool = True
    dtype: str = "fp32"
    backend: str = "torch"


_WORKER: dict[str, Any] = {}
_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int, poll_s: float = 1.0) -> None:
    """End this worker process when the process ``parent_pid`` that started it dies.

    Linux: ``prctl(PR_SET_PDEATHSIG, SIGKILL)``; everywhere: a daemon thread that polls
    ``os.getppid()`` (a dead parent's children are re-parented) and exits the process.
    """
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):  # no prctl: the thread below still watches
            pass
    if os.getppid() != parent_pid:  # died before prctl took effect
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(poll_s)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _init_worker(job: _Job) -> None:
    import multiprocessing

    import torch

    if job.parent_pid:
        _die_with_parent(job.parent_pid)
        # Ctrl-C reaches the whole process group: the run stops its workers itself.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    if job.threads > 0:
        torch.set_num_threads(job.threads)
    device = job.device
    ident = multiprocessing.current_process()._identity
    if device.startswith("cuda") and ":" not in device and ident and torch.cuda.device_count() > 1:
        device = f"cuda:{(ident[0] - 1) % torch.cuda.device_count()}"
    from mixformer.models import build_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # identical random weights in every worker when none are given
        _WORKER["model"] = build_model(job.model, weights=job.weights)
    _WORKER["job"] = job
    _WORKER["device"] = device


def _run_one(seq: Sequence, box_path: Path, time_path: Path, err_path: Path) -> dict[str, Any]:
    from mixformer.tracking import Tracker, TrackerConfig

    job: _Job = _WORKER["job"]
    t0 = time.perf_counter()
    try:
        config = TrackerConfig(**job.tracker)
        tracker = Tracker(
            _WORKER["model"],
            config,
            device=_WORKER["device"],
            fast=job.fast,
            dtype=job.dtype,
            backend=job.backend,
            threads=0,
        )
        boxes, times, _ = track_sequence(tracker, seq)
        write_result(box_path, time_path, boxes, times)
    except Exception as exc:
        text = f"sequence {seq.name}: {type(exc).__name__}: {exc}\n\n{traceback.format_exc()}"
        atomic_write_text(err_path, text)
        return {"name": seq.name, "frames": 0, "error": f"{type(exc).__name__}: {exc}"}
    err_path.unlink(missing_ok=True)
    return {"name": seq.name, "frames": len(seq), "seconds": time.perf_counter() - t0}


# --------------------------------------------------------------------------- driver


@dataclass
class RunSummary:
    """What a run did.

    Attributes:
        done: sequences tracked in this run.
        skipped: sequences whose result already existed.
        failed: sequence name -> one-line error (traceback in ``errors/<seq>.txt``).
        frames: frames tracked in this run.
        seconds: wall-clock seconds of the run.
    """

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    frames: int = 0
    seconds: float = 0.0


def run_benchmark(
    sequences: Iterable[Sequence],
    benchmark: Benchmark,
    results_dir: str | Path,
    settings: RunSettings,
    workers: int = 1,
    shard: tuple[int, int] = (0, 1),
    device: str = "cpu",
    progress: bool = True,
) -> RunSummary:
    """Track every unfinished sequence of this shard and write its result files.

    Args:
        sequences: the benchmark's sequences (all of them: the shard is taken here).
        benchmark: the benchmark (result layout).
        results_dir: output folder (created); checked against ``settings`` first.
        settings: model, weights and tracker settings (``settings.weights`` is what is loaded:
            a path, ``"default"`` or None for seeded random weights).
        workers: processes (``<= 1``: track in this process). Each uses ``settings.threads``
            torch threads (None: ``max(1, cpu_count // workers)``, and a run in this process
            keeps its threads); with ``device="cuda"`` the workers are spread over the visible
            GPUs.
        shard: ``(index, count)``: this machine's share of the sequences.
        device: torch device.
        progress: show a tqdm bar over frames (frames per second, ETA, sequences done).

    Returns:
        A :class:`RunSummary`.

    Raises:
        ValueError: another run holds ``results_dir`` (see :func:`results_lock`), or the
            folder holds results of other settings.
        Interrupted: Ctrl-C or SIGTERM (a ``KeyboardInterrupt``); the finished sequences'
            files are kept and the workers stopped.
    """
    results_dir = Path(results_dir)
    seqs = shard_sequences(list(sequences), *shard)
    with results_lock(results_dir, shard), _StopSignals() as signals:
        remove_stale_tmp(results_dir)  # left by killed runs (a live write takes milliseconds)
        return _run_locked(
            seqs, benchmark, results_dir, settings, workers, device, progress, signals
        )


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped :func:`run_benchmark`; the finished sequences are kept.

    Attributes:
        signum: the signal (``signal.SIGINT`` for Ctrl-C, ``signal.SIGTERM``).
        summary: what the run did before it stopped.
    """

    def __init__(self, signum: int, summary: RunSummary | None = None) -> None:
        super().__init__(f"signal {signum}")
        self.signum = signum
        self.summary = summary if summary is not None else RunSummary()


class _StopSignals:
    """SIGTERM as :class:`Interrupted` while in the block (main thread only).

    The first signal raises where the main thread is, unless :meth:`deferred`: then it is only
    recorded, and :meth:`check` raises it at a point of the caller's choosing (a signal must not
    land inside ``concurrent.futures`` bookkeeping). Later signals are only recorded, so that
    the cleanup after the first one runs to its end.
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self._defer = False
        self._main = threading.current_thread() is threading.main_thread()
        self._old: Any = None

    def _handler(self, signum: int, frame: Any) -> None:
        first = self.received is None
        self.received = self.received or signum
        if first and not self._defer:
            self._defer = True
            raise Interrupted(signum)

    def __enter__(self) -> _StopSignals:
        if self._main:
            self._old = signal.signal(signal.SIGTERM, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._main:
            signal.signal(signal.SIGTERM, self._old)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """Only record SIGTERM and SIGINT (Ctrl-C) in the block; :meth:`check` raises them."""
        old_int = signal.signal(signal.SIGINT, self._handler) if self._main else None
        self._defer = True
        try:
            yield
        finally:
            if self._main:
                signal.signal(signal.SIGINT, old_int)

    def check(self) -> None:
        """Raise :class:`Interrupted` if a signal came."""
        if self.received is not None:
            raise Interrupted(self.received)


def _stop_workers(ex: ProcessPoolExecutor) -> None:
    """Terminate the pool's processes now instead of waiting for their sequences to finish.

    The futures are not cancelled: the pool's manager thread then marks every pending one as
    broken, and a cancelled one made it fail with ``InvalidStateError`` (a traceback on stderr).
    """
    for proc in list((getattr(ex, "_processes", None) or {}).values()):
        with contextlib.suppress(Exception):
            proc.terminate()


def _run_locked(
    seqs: list[Sequence],
    benchmark: Benchmark,
    results_dir: Path,
    settings: RunSettings,
    workers: int,
    device: str,
    progress: bool,
    signals: _StopSignals,
) -> RunSummary:
    from tqdm import tqdm

    with settings_lock(results_dir):
        check_settings(results_dir, settings)
    summary = RunSummary()
    todo = []
    for seq in seqs:
        box_path, time_path = result_paths(results_dir, benchmark, seq.name)
        if box_path.is_file():
            summary.skipped.append(seq.name)
        else:
            todo.append((seq, box_path, time_path, results_dir / ERRORS_DIR / f"{seq.name}.txt"))
    if summary.skipped:
        log.info("resuming: %d of %d sequences already done", len(summary.skipped), len(seqs))
    if not todo:
        return summary

    ncpu = os.cpu_count() or 1
    n_workers = max(1, min(workers, len(todo)))
    job = _Job(
        settings.model,
        settings.weights,
        settings.tracker,
        device,
        settings.threads or max(1, ncpu // n_workers),
        parent_pid=os.getpid(),
        fast=settings.fast,
        dtype=settings.dtype,
        backend=settings.backend,
    )
    t_start = time.perf_counter()
    lengths = {seq.name: len(seq) for seq, *_ in todo}
    bar = tqdm(
        total=sum(lengths.values()),
        unit="frame",
        desc=benchmark.name,
        dynamic_ncols=True,
        disable=not progress,
    )
    bar.set_postfix(seqs=f"0/{len(todo)}")

    def record(out: dict[str, Any]) -> None:
        if "error" in out:
            summary.failed[out["name"]] = out["error"]
            log.error("%s failed: %s", out["name"], out["error"])
        else:
            summary.done.append(out["name"])
            summary.frames += out["frames"]
        finished = len(summary.done) + len(summary.failed)
        bar.set_postfix(seqs=f"{finished}/{len(todo)}", failed=len(summary.failed), refresh=False)
        bar.update(lengths[out["name"]])

    try:
        if n_workers == 1:
            # In this process: no parent watch; its threads unless the settings name some.
            _init_worker(dataclasses.replace(job, threads=settings.threads or 0, parent_pid=0))
            for item in todo:
                record(_run_one(*item))
        else:
            import multiprocessing

            ctx = multiprocessing.get_context("spawn")
            pool = ProcessPoolExecutor(n_workers, ctx, initializer=_init_worker, initargs=(job,))
            with signals.deferred(), pool as ex:
                # Longest first, so that one long sequence does not finish alone at the end.
                order = sorted(todo, key=lambda item: -len(item[0]))
                pending = {ex.submit(_run_one, *item) for item in order}
                try:
                    while pending:
                        signals.check()
                        done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                        for fut in done:
                            signals.check()
                            try:
                                out = fut.result()
                            except BrokenProcessPool:
                                signals.check()  # workers killed with the run (a process group)
                                raise
                            record(out)
                except BaseException:
                    _stop_workers(ex)  # in-flight sequences are lost, finished ones kept
                    raise
    except KeyboardInterrupt as exc:
        summary.seconds = time.perf_counter() - t_start
        raise Interrupted(getattr(exc, "signum", signal.SIGINT), summary) from None
    finally:
        bar.close()
        _WORKER.clear()
    summary.seconds = time.perf_counter() - t_start
    return summary
