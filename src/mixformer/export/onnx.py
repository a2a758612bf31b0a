"""ONNX export of the two inference graphs and an ONNX Runtime model with the Tracker contract.

``export_onnx(model, out_dir)`` writes, for a network of any family,

* ``template_encoder.onnx``: ``template (1, 3, Ht, Ht)``, ``online_templates (N, 3, Ht, Ht)``
  (any ``N >= 1``) -> ``template_feat (1, C, Gt, Gt)`` and, for every mixed-attention block ``j``
  of the backbone (stages in order), ``k{j}``, ``v{j}`` of shape ``(1, heads, (1+N)*m, d)``: the
  per-block key/value cache after the projections (SPEC 1.12, SPEC-MIXVIT 6.2);
* ``search_step.onnx``: ``search (1, 3, Hs, Hs)``, ``corner_prior (1, 2, F*F)`` (the log-prior
  added to the corner heat maps, :attr:`~mixformer.TrackerConfig.motion_prior`; zeros for the
  reference head; absent for heads without corner maps, MixFormerV2), ``template_feat`` and
  all ``k{j}``, ``v{j}`` -> ``pred_boxes (1, 1, 4)`` normalised cxcywh and ``pred_scores (1,)``
  logits;
* ``mixformer_onnx.json``: the model name and config, the number of blocks and the I/O names.

The ONNX Runtime and OpenVINO backends export through the on-disk cache of
:mod:`mixformer.export.cache` (:meth:`ExportedGraphs.from_model`).

(CvT: 128/320 crops, 8x8 / 20x20 maps, ``F = 20``; MixViT-B: 128/288, 8x8 / 18x18, ``F = 72``.)
Inputs are ImageNet-normalised float32 RGB crops. The graphs are traced from the fused
deployment copy (:func:`mixformer.models.fuse_model`) in fp32. ``onnx`` and ``onnxruntime`` are
imported only here (``pip install mixformer[export]``).
"""

from __future__ import annotations

import json
import logging
import tempfile
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mixformer.export.int8 import INT8_FLOAT_SCOPES, quantize_onnx_search_graph
from mixformer.models.attention import MixedAttention
from mixformer.models.config import ModelConfig
from mixformer.models.fuse import fuse_model
from mixformer.models.mixformer import MixFormer, TemplateCache

log = logging.getLogger(__name__)

TEMPLATE_GRAPH = "template_encoder.onnx"
SEARCH_GRAPH = "search_step.onnx"
META_FILE = "mixformer_onnx.json"
PRIOR_INPUT = "corner_prior"
DEFAULT_OPSET = 17
GRAPH_REVISION = 2
"""The form of the exported graphs for a given model and opset, part of the export cache's key
(:func:`mixformer.export.cache.model_digest`): raised whenever the export writes other graphs
(2: the attention as ``softmax(q k^T * scale) v``, not the exporter's form of the fused kernel)."""


def require_onnx() -> None:
    """Check that the ``export`` extra (onnx, onnxruntime) is installed.

    Raises:
        ImportError: one line naming the missing package and how to install it.
    """
    import importlib

    for name in ("onnx", "onnxruntime"):
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ImportError(
                f"{name} is not installed; ONNX export and the onnxruntime backend need "
                "pip install 'mixformer[export]' (onnx, onnxruntime)",
                name=name,
            ) from exc


class _TemplateEncoder(nn.Module):
    """``(template, online_templates) -> (template_feat, k0, v0, k1, v1, ...)`` for export."""

    def __init__(self, fast: MixFormer) -> None:
        super().__init__()
        self.fast = fast

    def forward(self, template: torch.Tensor, online: torch.Tensor) -> tuple[torch.Tensor, ...]:
        cache = self.fast.encode_templates(template, online[None])
        return (cache.template_feat, *[t for kv in cache.kv for t in kv])


class _SearchStep(nn.Module):
    """``(search, [corner_prior,] template_feat, k0, v0, ...) -> (pred_boxes, pred_scores)``;
    the prior input only for heads with corner maps (``with_prior``)."""

    def __init__(self, fast: MixFormer, with_prior: bool = True) -> None:
        super().__init__()
        self.fast = fast
        self.with_prior = with_prior

    def forward(
        self, search: torch.Tensor, *inputs: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        corner_prior = inputs[0] if self.with_prior else None
        template_feat, *kv = inputs[1:] if self.with_prior else inputs
        pairs = [(kv[2 * j], kv[2 * j + 1]) for j in range(len(kv) // 2)]
        cache = TemplateCache(kv=pairs, template_feat=template_feat, num_online=0)
        out = self.fast.track(search, cache, corner_prior=corner_prior)
        scores = out.get("pred_scores")
        if scores is None:  # models without a score head still get the output, as zeros
            scores = torch.zeros(search.shape[0], dtype=torch.float32)
        return out["pred_boxes"], scores


def _io_names(num_blocks: int) -> tuple[list[str], list[str]]:
    kv = [n for j in range(num_blocks) for n in (f"k{j}", f"v{j}")]
    return ["template_feat", *kv], kv


@torch.no_grad()
def export_onnx(
    model: MixFormer, out_dir: str | Path, opset: int = DEFAULT_OPSET, check: bool = True
) -> tuple[Path, Path]:
    """Write the template-encoder and search-step graphs of ``model`` to ``out_dir``.

    Args:
        model: plain network (fp32; traced from a CPU copy, the model itself is not moved).
        out_dir: folder to create or reuse.
        opset: ONNX opset (>= 14 for the fused attention).
        check: run ``onnx.checker`` on both graphs.
    Returns:
        ``(template_encoder.onnx, search_step.onnx)`` paths.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fast = fuse_model(model.eval(), "fp32").cpu()
    # The attention as softmax((q @ k^T) * scale) @ v: the exporter writes PyTorch's fused kernel
    # as sqrt(scale) on q and on an explicitly transposed k, which OpenVINO and ONNX Runtime run
    # slower (MixFormerV2-S, OpenVINO bf16, static shapes: 11.2 against 10.8 ms per step).
    for layer in fast.modules():
        if isinstance(layer, MixedAttention):
            layer.fused_attn = False
    num_blocks = model.config.backbone.num_blocks
    feat_and_kv, kv_names = _io_names(num_blocks)
    ts, ss = model.config.template_size, model.config.search_size
    template = torch.randn(1, 3, ts, ts)
    online = torch.randn(2, 3, ts, ts)
    search = torch.randn(1, 3, ss, ss)
    # Heads without corner maps (MixFormerV2's bin head) take no prior: no graph input.
    coord_x = getattr(fast.box_head, "coord_x", None)
    priors = [] if coord_x is None else [torch.zeros(1, 2, coord_x.numel())]
    prior_names = [PRIOR_INPUT] if priors else []

    t_path, s_path = out / TEMPLATE_GRAPH, out / SEARCH_GRAPH
    kv_axes = {n: {2: "kv_tokens"} for n in kv_names}
    cache = fast.encode_templates(template, online)
    flat = [t for kv in cache.kv for t in kv]
    with warnings.catch_warnings():
        # The TorchScript exporter (dynamo=False) is deprecated, but the torch.export-based one
        # needs onnxscript, which the ``export`` extra does not install; the graphs are checked.
        warnings.simplefilter("ignore", DeprecationWarning)
        # Tracing notes (shapes read as Python values, Slice steps not constant-folded) are
        # expected for these fixed-size graphs, and the graphs are checked: not the user's
        # concern when a tracker exports on its first use.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="Constant folding")
        torch.onnx.export(
            _TemplateEncoder(fast),
            (template, online),
            str(t_path),
            input_names=["template", "online_templates"],
            output_names=feat_and_kv,
            dynamic_axes={"online_templates": {0: "num_online"}, **kv_axes},
            opset_version=opset,
            dynamo=False,
        )
        torch.onnx.export(
            _SearchStep(fast, with_prior=bool(priors)),
            (search, *priors, cache.template_feat, *flat),
            str(s_path),
            input_names=["search", *prior_names, *feat_and_kv],
            output_names=["pred_boxes", "pred_scores"],
            dynamic_axes=kv_axes,
            opset_version=opset,
            dynamo=False,
        )
    meta = {
        "model": model.name,
        "config": model.config.to_dict(),
        "num_blocks": num_blocks,
        "opset": opset,
        "graph_revision": GRAPH_REVISION,
        "template_inputs": ["template", "online_templates"],
        "cache": feat_and_kv,
        "search_inputs": ["search", *prior_names, *feat_and_kv],
        "search_outputs": ["pred_boxes", "pred_scores"],
    }
    (out / META_FILE).write_text(json.dumps(meta, indent=2))
    if check:
        import onnx

        for p in (t_path, s_path):
            onnx.checker.check_model(str(p))
    log.info("wrote %s and %s", t_path, s_path)
    return t_path, s_path


@dataclass
class OnnxTemplateCache:
    """Template cache of :class:`OnnxRuntimeModel`: graph output name -> float32 array."""

    arrays: dict[str, np.ndarray]
    num_online: int


class ExportedGraphs:
    """The two exported graphs with the ``encode_templates`` / ``track`` contract, whatever runs
    them: the feeds, the cache and the corner prior are built here; a runtime subclass loads the
    graphs, sets ``_search_inputs`` (the input names the search graph takes) and implements
    :meth:`_run_template` and :meth:`_run_search`.

    Args:
        onnx_dir: folder written by :func:`export_onnx`.
    """

    max_batch = 1
    """The graphs take one target per call (their caches do not stack)."""

    def __init__(self, onnx_dir: str | Path) -> None:
        d = Path(onnx_dir)
        meta = json.loads((d / META_FILE).read_text())
        self.name: str | None = meta.get("model")
        self.config = ModelConfig.from_dict(meta["config"])
        self._cache_names: list[str] = meta["cache"]
        # Graphs exported before the prior input existed run only with the prior off.
        self._has_prior = PRIOR_INPUT in meta.get("search_inputs", [])
        self.onnx_dir = d
        self._zero_prior: np.ndarray | None = None
        # Inputs the search graph reads, set by the runtime: the exporter drops unread ones
        # (MixFormerV2's template_feat).
        self._search_inputs: set[str] = set()

    @classmethod
    def from_model(cls, model: MixFormer, **kwargs: Any) -> Any:
        """Load ``model``'s graphs from the export cache
        (:func:`mixformer.export.cache.cached_export`), exporting them first if needed; without
        a usable cache, into a temporary folder kept for the object's lifetime."""
        from mixformer.export.cache import cached_export

        cached = cached_export(model)
        if cached is not None:
            return cls(cached, **kwargs)
        tmp = tempfile.TemporaryDirectory(prefix="mixformer-onnx-")
        try:
            export_onnx(model, tmp.name, check=False)
        except OSError as exc:  # a full or read-only disk: name the folder, not only the errno
            tmp.cleanup()
            reason = f"cannot write the exported graphs ({exc.strerror or exc})"
            raise OSError(exc.errno, reason, tmp.name) from exc
        obj = cls(tmp.name, **kwargs)
        obj._tmp = tmp  # removed when the model is garbage-collected
        return obj

    def _run_template(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """The template graph's outputs named ``self._cache_names``, in that order."""
        raise NotImplementedError

    def _run_search(self, feeds: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """The search graph's ``(pred_boxes, pred_scores)``."""
        raise NotImplementedError

    @staticmethod
    def _np(x: torch.Tensor) -> np.ndarray:
        return np.ascontiguousarray(x.detach().cpu().float().numpy())

    def encode_templates(
        self, template: torch.Tensor, online_templates: torch.Tensor
    ) -> OnnxTemplateCache:
        """Run the template encoder.

        Args:
            template: ``(1, 3, Ht, Ht)`` normalised float32.
            online_templates: ``(N, 3, Ht, Ht)`` or ``(1, N, 3, Ht, Ht)``.
        """
        if online_templates.ndim == 5:
            if online_templates.shape[0] != 1:
                raise ValueError("the exported graphs take batch size 1")
            online_templates = online_templates[0]
        feeds = {"template": self._np(template), "online_templates": self._np(online_templates)}
        outs = self._run_template(feeds)
        return OnnxTemplateCache(dict(zip(self._cache_names, outs)), online_templates.shape[0])

    def search_feeds(
        self, search: torch.Tensor, cache: OnnxTemplateCache, corner_prior: torch.Tensor | None
    ) -> dict[str, np.ndarray]:
        """The search graph's inputs for one step (also the samples of int8 calibration).

        Raises:
            ValueError: a ``corner_prior`` for graphs exported without that input.
        """
        feeds = {"search": self._np(search)}
        feeds.update((k, a) for k, a in cache.arrays.items() if k in self._search_inputs)
        if self._has_prior:
            if corner_prior is None:
                if self._zero_prior is None:
                    cells = self.config.corner_map_size**2
                    self._zero_prior = np.zeros((search.shape[0], 2, cells), np.float32)
                feeds[PRIOR_INPUT] = self._zero_prior
            else:
                feeds[PRIOR_INPUT] = self._np(corner_prior)
        elif corner_prior is not None:
            raise ValueError(
                f"the ONNX graphs in {self.onnx_dir} have no corner_prior input (exported by an "
                "older version, or a model without corner maps): export them again, or set "
                "motion_prior=0"
            )
        return feeds

    def track(
        self,
        search: torch.Tensor,
        cache: OnnxTemplateCache,
        run_score_head: bool = True,
        corner_prior: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Run the search step: ``pred_boxes (1, 1, 4)`` cxcywh, ``pred_scores (1,)`` logits.

        Args:
            search: ``(1, 3, S, S)`` normalised float32 crop.
            cache: from :meth:`encode_templates`.
            run_score_head: also return ``pred_scores`` (models with a score module).
            corner_prior: optional ``(1, 2, H*W)`` log-prior for the corner maps, fed to the
                graph's ``corner_prior`` input (zeros when None: the reference head).
        Raises:
            ValueError: a ``corner_prior`` for graphs exported without that input.
        """
        boxes, scores = self._run_search(self.search_feeds(search, cache, corner_prior))
        out = {"pred_boxes": torch.from_numpy(np.asarray(boxes, np.float32))}
        if run_score_head and self.config.score_head:
            out["pred_scores"] = torch.from_numpy(np.asarray(scores, np.float32))
        return out


class OnnxRuntimeModel(ExportedGraphs):
    """The exported graphs run by ONNX Runtime, with the ``encode_templates`` / ``track`` contract.

    Args:
        onnx_dir: folder written by :func:`export_onnx`.
        threads: intra-op threads (default: ``torch.get_num_threads()``).
        providers: ONNX Runtime execution providers (default: CPU).
        precision: ``"fp32"``, or ``"int8"``: the search graph's mixed-attention blocks quantised
            by :func:`mixformer.export.int8.quantize_onnx_search_graph` (on ``calibration``) into
            a temporary file kept for the object's lifetime; the template encoder stays fp32.
        calibration: for ``"int8"``: search-step feeds (:meth:`ExportedGraphs.search_feeds`),
            e.g. :func:`mixformer.perf.calibration.calibration_feeds`.
        keep_float: for ``"int8"``: node-name patterns left in float (default
            :data:`mixformer.export.int8.INT8_FLOAT_SCOPES`, as OpenVINO's int8).
    Raises:
        ValueError: an unknown precision, or int8 without calibration data.
    """

    def __init__(
        self,
        onnx_dir: str | Path,
        threads: int | None = None,
        providers: list[str] | None = None,
        precision: str = "fp32",
        calibration: Iterable[dict[str, np.ndarray]] | None = None,
        keep_float: Sequence[str] = INT8_FLOAT_SCOPES,
    ) -> None:
        import onnxruntime as ort

        if precision not in ("fp32", "int8"):
            raise ValueError(f"unknown ONNX Runtime precision {precision!r}; use fp32 or int8")
        super().__init__(onnx_dir)
        self.precision = precision
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or torch.get_num_threads()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        prov = providers or ["CPUExecutionProvider"]
        self._template = ort.InferenceSession(
            str(self.onnx_dir / TEMPLATE_GRAPH), opts, providers=prov
        )
        search_path = self.onnx_dir / SEARCH_GRAPH
        if precision == "int8":
            if calibration is None:
                raise ValueError("ONNX Runtime int8 needs calibration search steps (calibration=)")
            self._int8_dir = tempfile.TemporaryDirectory(prefix="mixformer-int8-")
            search_path = quantize_onnx_search_graph(
                search_path,
                Path(self._int8_dir.name) / SEARCH_GRAPH,
                calibration,
                keep_float,
            )
        self._search = ort.InferenceSession(str(search_path), opts, providers=prov)
        self._search_inputs = {i.name for i in self._search.get_inputs()}

    def _run_template(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self._template.run(self._cache_names, feeds)

    def _run_search(self, feeds: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        boxes, scores = self._search.run(["pred_boxes", "pred_scores"], feeds)
        return boxes, scores
