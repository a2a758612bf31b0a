"""CUDA graphs for the search step: the default of the fast torch path on CUDA.

A tracker's search step is a few hundred small kernels per frame; on a GPU the time to launch
them from Python, not the arithmetic, sets the frame rate (the first H200 run: MixFormerV2-S's
network took 2.6 ms of CPU time per frame for well under a millisecond of GPU work). A CUDA graph
records the launches once and replays them with one call. :class:`GraphedSearch` keeps one
graph per input layout (batch, crop size, cache shapes, which outputs): the first call with a
layout captures it, later calls copy their inputs into the graph's static tensors (the template
cache only when it is a different cache object from the previous call's) and replay. Outputs
are cloned, since the next replay overwrites them.

Where capture fails (an operation a graph cannot hold), the engine logs it once and runs every
later call eagerly, as without graphs. ``MIXFORMER_CUDA_GRAPHS=0`` in the environment turns
graphs off (:func:`cuda_graphs_enabled`). Replays are serialised: trackers in several threads
may share an engine.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch

log = logging.getLogger(__name__)

__all__ = ["ENV_VAR", "GraphedSearch", "capture_cuda_graph", "cuda_graphs_enabled"]

#: Environment variable that turns CUDA graphs off when set to ``0`` (read per engine built).
ENV_VAR = "MIXFORMER_CUDA_GRAPHS"

#: ``capture(fn) -> (replay, outputs)``: run ``fn`` once into static outputs, and a callable
#: that re-runs the same work into the same outputs.
Capture = Callable[[Callable[[], Any]], tuple[Callable[[], None], Any]]


def cuda_graphs_enabled() -> bool:
    """Whether fast torch engines on CUDA replay their search step as CUDA graphs (default
    yes; ``MIXFORMER_CUDA_GRAPHS=0`` turns it off)."""
    return os.environ.get(ENV_VAR, "1").strip() not in ("0", "false", "no", "off")


def capture_cuda_graph(fn: Callable[[], Any], warmup: int = 2) -> tuple[Callable[[], None], Any]:
    """Capture ``fn`` (which reads only static tensors) as a CUDA graph.

    ``fn`` runs ``warmup`` times on a side stream first (cuDNN / cuBLAS choose their kernels and
    workspaces outside the capture, as CUDA graphs require), then once under capture.

    Returns:
        ``(replay, outputs)``: ``replay()`` re-runs the captured kernels, which rewrite
        ``outputs`` in place.
    """
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(warmup):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        outputs = fn()
    return graph.replay, outputs


def tree_map(fn: Callable[[torch.Tensor], Any], tree: Any) -> Any:
    """``tree`` with ``fn`` applied to every tensor in it (lists, tuples, dicts, dataclasses;
    other values kept as they are)."""
    if isinstance(tree, torch.Tensor):
        return fn(tree)
    if isinstance(tree, list | tuple):
        return type(tree)(tree_map(fn, v) for v in tree)
    if isinstance(tree, dict):
        return {k: tree_map(fn, v) for k, v in tree.items()}
    if dataclasses.is_dataclass(tree) and not isinstance(tree, type):
        out = copy.copy(tree)
        for f in dataclasses.fields(tree):
            object.__setattr__(out, f.name, tree_map(fn, getattr(tree, f.name)))
        return out
    return tree


def tensors_of(tree: Any) -> list[torch.Tensor]:
    """The tensors of ``tree`` in :func:`tree_map`'s order."""
    found: list[torch.Tensor] = []
    tree_map(found.append, tree)
    return found


def layout(tree: Any) -> tuple:
    """A hashable description of ``tree``: container types, tensor shapes, dtypes and
    devices, and the other values themselves (they become constants of a captured graph)."""
    if isinstance(tree, torch.Tensor):
        return ("T", tuple(tree.shape), tree.dtype, str(tree.device))
    if isinstance(tree, list | tuple):
        return (type(tree).__name__, *(layout(v) for v in tree))
    if isinstance(tree, dict):
        return ("dict", *((k, layout(v)) for k, v in tree.items()))
    if dataclasses.is_dataclass(tree) and not isinstance(tree, type):
        fields = dataclasses.fields(tree)
        return (type(tree).__name__, *((f.name, layout(getattr(tree, f.name))) for f in fields))
    return ("V", tree)


def _on_device(device: torch.device) -> contextlib.AbstractContextManager:
    """``device`` as the current CUDA device (graphs capture and replay on the current one;
    a tracker on ``cuda:1`` in a process whose current device is ``cuda:0`` needs this)."""
    if device.type == "cuda":
        return torch.cuda.device(device)
    return contextlib.nullcontext()


@dataclasses.dataclass
class _Graph:
    replay: Callable[[], None]
    inputs: tuple[Any, Any, Any]  # static (search, cache, prior)
    outputs: Any
    last_cache: Any = None  # the cache object whose values the static cache holds


class GraphedSearch:
    """Replays a search step ``step(search, cache, prior) -> dict of tensors`` as CUDA graphs,
    one per input layout (at most ``max_graphs``, least recently used dropped).

    Args:
        capture: how a graph is captured (default :func:`capture_cuda_graph`; the tests pass
            an emulation that runs on the CPU).
        max_graphs: graphs kept (each holds its static inputs, outputs and memory pool).
    """

    def __init__(self, capture: Capture | None = None, max_graphs: int = 8) -> None:
        self._capture = capture or capture_cuda_graph
        self.max_graphs = max_graphs
        self._graphs: OrderedDict[tuple, _Graph] = OrderedDict()
        self._lock = threading.Lock()
        self.failed: str | None = None
        """Why capture failed (every later call then runs eagerly), or None."""
        self.num_captures = 0
        self.num_replays = 0

    def __call__(
        self,
        step: Callable[[torch.Tensor, Any, torch.Tensor | None], dict[str, torch.Tensor]],
        search: torch.Tensor,
        cache: Any,
        prior: torch.Tensor | None,
        tag: Any = None,
    ) -> dict[str, torch.Tensor]:
        """``step(search, cache, prior)``, from a graph where possible.

        Args:
            step: the search step; it must read nothing but its arguments and the weights.
            search: ``(B, 3, S, S)``; cache: the template cache; prior: ``(B, 2, H*W)`` or None.
            tag: anything that changes what ``step`` computes (part of the graph's key).
        Returns:
            ``step``'s outputs (fresh tensors: later calls do not change them).
        """
        if self.failed is not None:
            return step(search, cache, prior)
        key = (tag, layout(search), layout(cache), layout(prior))
        with self._lock, _on_device(search.device):
            graph = self._graphs.get(key)
            if graph is None:  # its static inputs start as copies of this call's
                graph = self._new_graph(key, step, search, cache, prior)
                if graph is None:
                    return step(search, cache, prior)
            else:
                self._graphs.move_to_end(key)
                self._load(graph, search, cache, prior)
            graph.replay()  # also after capture, which records the kernels without running them
            self.num_replays += 1
            return tree_map(torch.clone, graph.outputs)

    def _new_graph(
        self, key: tuple, step: Callable, search: torch.Tensor, cache: Any, prior: Any
    ) -> _Graph | None:
        inputs = tree_map(torch.clone, (search, cache, prior))
        try:
            replay, outputs = self._capture(lambda: step(*inputs))
        except Exception as exc:  # noqa: BLE001 - any capture failure means: run eagerly
            self.failed = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
            self._graphs.clear()
            log.warning("CUDA graph capture failed; the search step runs eagerly: %s", self.failed)
            return None
        graph = _Graph(replay, inputs, outputs, last_cache=cache)
        self._graphs[key] = graph
        self.num_captures += 1
        while len(self._graphs) > self.max_graphs:
            self._graphs.popitem(last=False)
        return graph

    @staticmethod
    def _load(graph: _Graph, search: torch.Tensor, cache: Any, prior: Any) -> None:
        s_search, s_cache, s_prior = graph.inputs
        s_search.copy_(search)
        if prior is not None:
            s_prior.copy_(prior)
        if cache is not graph.last_cache:
            for dst, src in zip(tensors_of(s_cache), tensors_of(cache), strict=True):
                dst.copy_(src)
            graph.last_cache = cache
