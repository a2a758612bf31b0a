"""OpenVINO runtime for the exported graphs: fp32, bf16 and int8 with the Tracker contract.

:class:`OpenVinoModel` loads the two ONNX graphs of :func:`~mixformer.export.onnx.export_onnx`
(template encoder, search step) into OpenVINO's CPU plugin and runs them with the
``encode_templates`` / ``track`` contract of :class:`~mixformer.models.MixFormer` (batch 1, like
the ONNX Runtime engine). Precisions:

* ``"fp32"``: ``INFERENCE_PRECISION_HINT=f32`` (OpenVINO's own kernels; not bit-identical to
  torch, see ``docs/speed.md``);
* ``"bf16"``: ``INFERENCE_PRECISION_HINT=bf16``: AMX / AVX512-BF16 matrix units where the CPU has
  them (OpenVINO's own default on such CPUs);
* ``"int8"``: the search graph's mixed-attention blocks quantised after training with NNCF
  (:func:`quantize_search_graph`, on a calibration set of real search steps); the embedding
  (MobileNetV3 stages, patch embeddings), the box head and the score module stay in float
  (:data:`mixformer.export.int8.INT8_FLOAT_SCOPES`, shared with ONNX Runtime's int8):
  quantising them too halved the default model's AUC. The
  template encoder, run once per template update, stays in bf16/fp32.

``openvino`` (and ``nncf`` for int8, ``onnx`` for the export) are imported only here. ``openvino``
and ``onnx`` are dependencies of the package on x86-64 CPUs; elsewhere, and ``nncf`` for int8:
``pip install 'mixformer[openvino]'``.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mixformer.export.int8 import INT8_FLOAT_SCOPES
from mixformer.export.onnx import SEARCH_GRAPH, TEMPLATE_GRAPH, ExportedGraphs

log = logging.getLogger(__name__)

__all__ = [
    "OPENVINO_PRECISIONS",
    "OpenVinoModel",
    "quantize_search_graph",
    "require_openvino",
]

OPENVINO_PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "int8")
STATIC_GRAPHS = 4
"""How many static-shape compilations of the search graph an :class:`OpenVinoModel` keeps (one
per template-cache length met, least recently used dropped)."""

_Search = tuple[Any, dict[str, np.ndarray]]
"""A compiled search graph's infer request and the arrays bound to its inputs now (held, so
that the memory the request shares outlives the binding)."""


def require_openvino(int8: bool = False) -> None:
    """Check that ``openvino`` and ``onnx`` are installed (``nncf`` too for ``int8``).

    Raises:
        ImportError: one line naming the missing package and how to install it.
    """
    for name in ("openvino", "onnx", *(("nncf",) if int8 else ())):
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ImportError(
                f"{name} is not installed; the openvino backend needs "
                "pip install 'mixformer[openvino]' (openvino, nncf, onnx)",
                name=name,
            ) from exc


def _hint(precision: str, native_bf16: bool) -> str:
    if precision == "fp32":
        return "f32"
    # int8 graphs: the layers NNCF left in float run in bf16 where the CPU has matrix units.
    return "bf16" if precision == "bf16" or native_bf16 else "f32"


def _cpu_has_bf16(core: Any) -> bool:
    return "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")


class OpenVinoModel(ExportedGraphs):
    """The exported graphs compiled by OpenVINO for the CPU.

    Thread-safe like the torch engines: trackers in several threads may share one (an OpenVINO
    infer request is not, so each graph's calls are serialised by a lock).

    Args:
        onnx_dir: folder written by :func:`~mixformer.export.onnx.export_onnx`.
        precision: ``"fp32"``, ``"bf16"`` or ``"int8"`` (needs ``calibration``).
        threads: inference threads (default: ``torch.get_num_threads()``).
        calibration: for ``"int8"``: search-step feeds (dicts of graph input name -> float32
            array, as :meth:`~mixformer.export.onnx.ExportedGraphs.search_feeds` builds them)
            from real tracking, e.g. :func:`mixformer.perf.calibration_feeds`.
        keep_float: for ``"int8"``: node-name patterns left in float (default
            :data:`~mixformer.export.int8.INT8_FLOAT_SCOPES`; ``()``: the whole graph in int8).
        static_shapes: compile the search graph for the exact input shapes of each call (its
            only free axis is the template cache's length, fixed by the tracker's number of
            online templates): a copy per length met (compiled on first use, about 0.3 s; up to
            :data:`STATIC_GRAPHS` kept). OpenVINO picks faster kernels for static shapes
            (MixFormerV2-S in bf16 on a 2-core Xeon with AMX: 11.3 against 12.9 ms per search
            step, ``docs/speed.md#openvino``); ``False`` compiles the dynamic graph once.
    Raises:
        ValueError: an unknown precision, or int8 without calibration data.
        ImportError: the ``openvino`` extra is missing.
    """

    def __init__(
        self,
        onnx_dir: str | Path,
        precision: str = "fp32",
        threads: int | None = None,
        calibration: Iterable[dict[str, np.ndarray]] | None = None,
        keep_float: tuple[str, ...] = INT8_FLOAT_SCOPES,
        static_shapes: bool = True,
    ) -> None:
        if precision not in OPENVINO_PRECISIONS:
            raise ValueError(
                f"unknown OpenVINO precision {precision!r}; use one of "
                f"{', '.join(OPENVINO_PRECISIONS)}"
            )
        require_openvino(int8=precision == "int8")
        import openvino as ov

        super().__init__(onnx_dir)
        self.precision = precision
        # the activations' precision as torch names it (int8 graphs: their float layers)
        self.dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        core = ov.Core()
        props = {
            "INFERENCE_PRECISION_HINT": _hint(precision, _cpu_has_bf16(core)),
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": "1",
            "INFERENCE_NUM_THREADS": str(threads or torch.get_num_threads()),
        }
        search = core.read_model(str(self.onnx_dir / SEARCH_GRAPH))
        if precision == "int8":
            if calibration is None:
                raise ValueError("OpenVINO int8 needs calibration search steps (calibration=)")
            search = quantize_search_graph(search, calibration, keep_float)
        template = core.read_model(str(self.onnx_dir / TEMPLATE_GRAPH))
        self._template = core.compile_model(template, "CPU", props).create_infer_request()
        self._core, self._props, self._search_model = core, props, search
        # every name of every input: OpenVINO keeps the ONNX input's name among several
        # (get_any_name() may give an internal one such as "/Cast_1_output_0")
        self._search_inputs = {n for p in search.inputs for n in p.get_names()}
        self.static_shapes = static_shapes
        # (infer request, the arrays bound to its inputs now) of the dynamic graph (compiled on
        # first use) and of each static compilation
        self._dynamic: _Search | None = None
        self._static: OrderedDict[tuple[tuple[int, ...], ...], _Search] = OrderedDict()
        self._template_lock, self._search_lock = threading.Lock(), threading.Lock()

    @property
    def compiled_search_shapes(self) -> tuple[tuple[tuple[int, ...], ...], ...]:
        """The feed shapes (in feed order) of each static compilation of the search graph kept
        now, least recently used first; ``()`` with ``static_shapes=False``."""
        with self._search_lock:
            return tuple(self._static)

    def _search_request(self, feeds: dict[str, np.ndarray]) -> _Search:
        """The infer request for these feeds' shapes and its bound arrays (call under the
        search lock)."""
        if not self.static_shapes:
            if self._dynamic is None:
                self._dynamic = self._compile(self._search_model)
            return self._dynamic
        key = tuple(tuple(a.shape) for a in feeds.values())
        request = self._static.get(key)
        if request is None:
            model = self._search_model.clone()
            model.reshape({name: list(a.shape) for name, a in feeds.items()})
            request = self._static[key] = self._compile(model)
            log.debug("compiled the search graph for input shapes %s", key)
            while len(self._static) > STATIC_GRAPHS:
                self._static.popitem(last=False)
        self._static.move_to_end(key)
        return request

    def _compile(self, model: Any) -> _Search:
        return self._core.compile_model(model, "CPU", self._props).create_infer_request(), {}

    def _run_template(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        with self._template_lock:  # one infer request: one call at a time, outputs copied
            by_name = _by_name(self._template.infer(feeds))
        return [by_name[n] for n in self._cache_names]

    def _run_search(self, feeds: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        import openvino as ov

        with self._search_lock:
            request, bound = self._search_request(feeds)
            # The feeds are contiguous float32 arrays nobody writes to during the call: shared,
            # not copied (the template cache is ~2.4 MB per step for MixFormerV2-S), and bound
            # to the request only when the array changes (the cache's once per template
            # update), which saves about 0.2 ms per step against passing every feed per call.
            for name, array in feeds.items():
                if bound.get(name) is not array:
                    request.set_tensor(name, ov.Tensor(array, shared_memory=True))
                    bound[name] = array  # held, so the shared memory outlives the binding
            request.infer()
            return (
                np.array(request.get_tensor("pred_boxes").data),
                np.array(request.get_tensor("pred_scores").data),
            )


def _by_name(results: Any) -> dict[str, np.ndarray]:
    """An infer request's outputs under every name of each output (copies: OpenVINO reuses its
    output buffers on the next call)."""
    return {n: np.array(v) for port, v in results.items() for n in port.get_names()}


def quantize_search_graph(
    model: Any,
    calibration: Iterable[dict[str, np.ndarray]],
    keep_float: tuple[str, ...] = INT8_FLOAT_SCOPES,
) -> Any:
    """The search graph ``model`` (an ``openvino.Model``) quantised to int8 by NNCF's
    post-training quantisation, its ranges measured on ``calibration`` (search-step feeds).

    Args:
        model: the search graph.
        calibration: search-step feeds.
        keep_float: node-name patterns left in float (default
            :data:`~mixformer.export.int8.INT8_FLOAT_SCOPES`; ``()`` quantises every layer NNCF
            can).

    Raises:
        ValueError: an empty calibration set.
    """
    import nncf

    samples = list(calibration)
    if not samples:
        raise ValueError("int8 calibration needs at least one search step")
    log.info("quantising the search graph to int8 on %d calibration steps", len(samples))
    scope = nncf.IgnoredScope(patterns=list(keep_float), validate=False) if keep_float else None
    return nncf.quantize(
        model,
        nncf.Dataset(samples),
        subset_size=len(samples),
        model_type=nncf.ModelType.TRANSFORMER,
        **({"ignored_scope": scope} if scope else {}),
    )
