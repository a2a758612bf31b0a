"""Post-training int8 of the exported search graph: which layers stay in float, and ONNX Runtime's
static quantisation.

Both int8 runtimes quantise the same layers of ``search_step.onnx``: the mixed-attention blocks.
:data:`INT8_FLOAT_SCOPES` lists, as regular expressions over the graph's node names, the layers
left in float (embeddings, MobileNetV3 stages, box heads, score modules): on ``mixformer-mbv3``
(8 composited sequences, ``docs/speed.md``) quantising the whole search graph gave AUC 38.5
against 70.1 in fp32, the blocks alone 69.7.

* OpenVINO: :func:`mixformer.export.openvino.quantize_search_graph` (NNCF);
* ONNX Runtime: :func:`quantize_onnx_search_graph` (``onnxruntime.quantization``: QDQ format,
  signed int8 activations and per-channel weights, min-max ranges over calibration search steps),
  run by :class:`~mixformer.export.onnx.OnnxRuntimeModel` with ``precision="int8"``.

The calibration set is a list of search-step feeds (graph input name -> float32 array), e.g.
:func:`mixformer.perf.calibration.calibration_feeds`. ``onnx`` and ``onnxruntime`` are imported
only inside the functions (``pip install 'mixformer[export]'``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["INT8_FLOAT_SCOPES", "float_node_names", "quantize_onnx_search_graph"]

#: Node-name patterns (regular expressions over the exported graph's node names, matched from
#: the start) that int8 leaves in float: embeddings, box heads, score modules.
INT8_FLOAT_SCOPES: tuple[str, ...] = (
    "/features/.*",
    "/patch_embed.*",
    "/embed_proj.*",
    "/box_head/.*",
    "/score_branch/.*",
    "/score_head/.*",
    "/layers\\..*",
)

#: The operators ONNX Runtime quantises: the matrix products (linear layers, attention, convs).
ORT_INT8_OPS: tuple[str, ...] = ("MatMul", "Gemm", "Conv")


def float_node_names(node_names: Iterable[str], patterns: Sequence[str]) -> list[str]:
    """The names among ``node_names`` that one of ``patterns`` matches (``re.match``)."""
    compiled = [re.compile(p) for p in patterns]
    return [n for n in node_names if any(c.match(n) for c in compiled)]


class _Feeds:
    """ONNX Runtime's ``CalibrationDataReader`` protocol over a list of feeds."""

    def __init__(self, feeds: list[dict[str, np.ndarray]], inputs: set[str]) -> None:
        self._it = iter([{k: v for k, v in f.items() if k in inputs} for f in feeds])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


def quantize_onnx_search_graph(
    src: str | Path,
    dst: str | Path,
    calibration: Iterable[dict[str, np.ndarray]],
    keep_float: Sequence[str] = INT8_FLOAT_SCOPES,
) -> Path:
    """Write ``dst``: the ONNX search graph ``src`` quantised to int8 for ONNX Runtime.

    QDQ format (QuantizeLinear / DequantizeLinear pairs that ONNX Runtime fuses into integer
    kernels), signed int8 activations, per-channel int8 weights of the operators in
    :data:`ORT_INT8_OPS`; activation ranges are the min-max over ``calibration``.

    Args:
        src: the fp32 ``search_step.onnx``.
        dst: the file to write (its folder must exist).
        calibration: search-step feeds; inputs the graph does not read are dropped.
        keep_float: node-name patterns left in float (default :data:`INT8_FLOAT_SCOPES`; ``()``
            quantises every matching operator).
    Returns:
        ``dst`` as a ``Path``.
    Raises:
        ValueError: an empty calibration set.
    """
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    samples = list(calibration)
    if not samples:
        raise ValueError("int8 calibration needs at least one search step")
    graph: Any = onnx.load(str(src))
    inputs = {i.name for i in graph.graph.input}
    exclude = float_node_names((n.name for n in graph.graph.node), keep_float)
    log.info(
        "quantising %s to int8 (ONNX Runtime) on %d calibration steps, %d nodes kept in float",
        Path(src).name,
        len(samples),
        len(exclude),
    )
    quantize_static(
        graph,
        str(dst),
        _Feeds(samples, inputs),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=list(ORT_INT8_OPS),
        per_channel=True,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=exclude,
        extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
    )
    return Path(dst)
