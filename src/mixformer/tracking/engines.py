"""The engine: what runs the network for the trackers, one object with the whole protocol.

:func:`engine` (``mixformer.engine``) gives the :class:`Engine` of a model for a precision, a
backend and the fast flag; trackers over one model share it (the fast path copies the weights,
so one copy per tracker would multiply the memory by the number of trackers). An engine holds no
per-call state: everything a call produces (boxes, scores, attention maps, the head's input
features) is in what it returns, so trackers in several threads may share one engine (the
OpenVINO network serialises its calls: its infer requests are not thread-safe;
``tests/test_openvino.py``).

Protocol (all calls run under ``torch.inference_mode()``; fp32 calls on CUDA also with TF32 off,
:func:`exact_fp32`):

- :meth:`Engine.encode_templates` ``(template, online, *, attention=False)``: the template cache
  (with ``attention``: ``(cache, maps)``, the template-kind attention maps of that call);
- :meth:`Engine.track` ``(search, cache, corner_prior=None, *, attention=False,
  features=False)``: ``pred_boxes``, ``pred_scores`` and, when asked, ``"attention"`` (the
  search-kind maps of that call) and ``"features"`` (the corner head's input);
- :meth:`Engine.corner_maps` / :attr:`Engine.has_corner_maps` / :attr:`Engine.corner_grid`: the
  corner head's heat maps and coordinate grid (None for heads without corner maps);
- :attr:`Engine.max_batch` / :attr:`Engine.can_batch`, :attr:`Engine.dtype` /
  :attr:`Engine.precision`, :attr:`Engine.device`, :attr:`Engine.can_record_attention`.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import threading
import weakref
from collections.abc import Iterator
from typing import Any, Literal, overload

import torch
from torch import nn

from mixformer.models.attention import AttentionMap, MixedAttention, set_keep_attention
from mixformer.models.config import ModelConfig
from mixformer.models.mixformer import MixFormer
from mixformer.tracking.backends import (
    BACKENDS,
    DTYPE_SETTINGS,
    PRECISION_NAMES,
    Backend,
    DTypeSetting,
    Network,
    auto_bf16_of,
    build_network,
    cpu_has_native_bf16,
    resolve_dtype_setting,
    usable_backend,
)
from mixformer.tracking.cuda_graphs import GraphedSearch, cuda_graphs_enabled

log = logging.getLogger(__name__)

__all__ = [
    "BACKENDS",
    "DTYPE_SETTINGS",
    "Backend",
    "DTypeSetting",
    "Engine",
    "Network",
    "build_network",
    "cpu_has_native_bf16",
    "engine",
    "exact_fp32",
    "resolve_dtype_setting",
    "shared_engine",
]


def _fingerprint(module: Any) -> tuple[tuple[int, int, int], ...]:
    """Storage address and in-place version of every parameter and buffer.

    ``.to(device)``, ``load_state_dict`` and optimiser steps all change one of the two (torch
    bumps a tensor's version counter on every in-place write), so an engine built from older
    weights is never handed out.
    """
    if not isinstance(module, nn.Module):
        return ()
    tensors = [*module.parameters(), *module.buffers()]
    return tuple((t.data_ptr(), t._version, t.device.index or 0) for t in tensors)


_TF32_LOCK = threading.Lock()
_TF32_STATE: list[Any] = [0, None]  # [calls inside exact_fp32, the flags saved by the first]


@contextlib.contextmanager
def exact_fp32() -> Iterator[None]:
    """TF32 off for CUDA convolutions and matrix products inside the block, then restored.

    PyTorch runs fp32 convolutions on CUDA in TF32 by default
    (``torch.backends.cudnn.allow_tf32``), a 10-bit mantissa: on the first H200 run the
    shipped default model's fp32 boxes on CUDA then drifted up to 240 px from the CPU's on a
    photo scene, where the CPU's own fast and plain paths agree within 0.01 px
    (docs/speed.md#gpu). fp32 engines on CUDA therefore run their calls in here, so
    ``dtype="fp32"`` is the exact path on every device. Thread-safe: the flags are switched by
    the first of overlapping calls and restored by the last.
    """
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    with _TF32_LOCK:
        if _TF32_STATE[0] == 0:
            _TF32_STATE[1] = (cudnn.allow_tf32, matmul.allow_tf32)
            cudnn.allow_tf32 = matmul.allow_tf32 = False
        _TF32_STATE[0] += 1
    try:
        yield
    finally:
        with _TF32_LOCK:
            _TF32_STATE[0] -= 1
            if _TF32_STATE[0] == 0:
                cudnn.allow_tf32, matmul.allow_tf32 = _TF32_STATE[1]


def _device_of(module: Any) -> torch.device:
    if isinstance(module, nn.Module):
        for t in module.parameters():
            return t.device
        for t in module.buffers():
            return t.device
    return torch.device("cpu")


class Engine:
    """Runs one network for the trackers (see the module docstring for the protocol).

    Build it with :func:`engine` (shared per model, precision and backend); construct it
    directly only to run a network of your own (e.g. a quantised module).

    Args:
        network: what runs the calls (anything with the ``encode_templates`` / ``track``
            contract of :class:`~mixformer.models.MixFormer`).
        model: the plain network it was built from (crop sizes, presets, the corner grid);
            default: ``network`` itself.
        backend: ``"torch"``, ``"onnxruntime"`` or ``"openvino"`` (informative).
        fast: whether ``network`` is the fast path (informative).
    """

    def __init__(
        self, network: Network, model: Any = None, *, backend: str = "torch", fast: bool = True
    ) -> None:
        self.network = network
        """What runs the calls: the plain model, its fused copy, an ONNX Runtime model, ..."""
        self.model = network if model is None else model
        """The plain network (its config and preset name give the tracker settings)."""
        self.backend = backend
        self.fast = fast and network is not self.model
        dtype = getattr(network, "dtype", torch.float32)
        self.dtype: torch.dtype = dtype if isinstance(dtype, torch.dtype) else torch.float32
        """The compute dtype of the network (``torch.float32``, ``bfloat16`` or ``float16``)."""
        self.max_batch: int | None = getattr(network, "max_batch", None)
        """Largest batch one call takes (None: any; 1: one target per call, e.g. ONNX)."""
        self.device = _device_of(self.model)
        """The torch device of the inputs."""
        self.can_record_attention = isinstance(network, nn.Module)
        """Whether ``attention=True`` calls are possible (torch networks)."""
        head = getattr(self.model, "box_head", None)
        coord_x, coord_y = getattr(head, "coord_x", None), getattr(head, "coord_y", None)
        self.corner_grid: tuple[torch.Tensor, torch.Tensor] | None = (
            (coord_x, coord_y)
            if isinstance(coord_x, torch.Tensor) and isinstance(coord_y, torch.Tensor)
            else None
        )
        """``(coord_x, coord_y)`` float32 pixel coordinates of the corner heat-map cells in the
        search crop (the motion prior's grid), or None for heads without corner maps."""
        self._features = isinstance(network, MixFormer) and self.corner_grid is not None
        self.graphs: GraphedSearch | None = None
        """The search step's CUDA graphs (fast torch path on CUDA, :mod:`.cuda_graphs`;
        ``MIXFORMER_CUDA_GRAPHS=0`` turns them off), or None: eager calls."""
        if (
            self.fast
            and backend == "torch"
            and self.device.type == "cuda"
            and isinstance(network, nn.Module)
            and cuda_graphs_enabled()
        ):
            self.graphs = GraphedSearch()
        self._lock = threading.Lock()  # serialises the attention-recording twin's calls
        self._twin: tuple[Any, nn.Module] | None = None

    def __repr__(self) -> str:
        kind = "fast" if self.fast else "plain"
        if self.backend != "torch":
            kind = self.backend
        return f"Engine({type(self.network).__name__}, {kind}, {self.precision})"

    # -- what it is -----------------------------------------------------------------------------
    @property
    def config(self) -> ModelConfig:
        """The network's config."""
        return self.network.config

    @property
    def precision(self) -> str:
        """:attr:`dtype` as ``"fp32"``, ``"bf16"`` or ``"fp16"``."""
        return PRECISION_NAMES.get(self.dtype, str(self.dtype))

    @property
    def can_batch(self) -> bool:
        """Whether several targets may share one call (stacked template caches)."""
        return self.max_batch != 1

    @property
    def has_corner_maps(self) -> bool:
        """Whether ``track(..., features=True)`` returns features :meth:`corner_maps` takes."""
        return self._features

    # -- calls ----------------------------------------------------------------------------------
    @overload
    def encode_templates(
        self, template: torch.Tensor, online: torch.Tensor, *, attention: Literal[False] = ...
    ) -> Any: ...

    @overload
    def encode_templates(
        self, template: torch.Tensor, online: torch.Tensor, *, attention: Literal[True]
    ) -> tuple[Any, list[AttentionMap]]: ...

    def encode_templates(
        self, template: torch.Tensor, online: torch.Tensor, *, attention: bool = False
    ) -> Any:
        """The template cache of ``template (B, 3, T, T)`` and ``online (B, N, 3, T, T)``.

        Args:
            attention: also return the template-kind attention maps of this call (rows in batch
                order; the call then runs the explicit softmax).
        Returns:
            The cache, or ``(cache, maps)`` with ``attention``.
        """
        if attention:
            return self._recorded("template", lambda net: net.encode_templates(template, online))
        with self._calls():
            return self.network.encode_templates(template, online)

    def track(
        self,
        search: torch.Tensor,
        cache: Any,
        corner_prior: torch.Tensor | None = None,
        *,
        attention: bool = False,
        features: bool = False,
    ) -> dict[str, Any]:
        """The search step: ``pred_boxes (B, 1, 4)`` normalised cxcywh, ``pred_scores (B,)``.

        Args:
            search: ``(B, 3, S, S)`` search crops.
            cache: from :meth:`encode_templates` (batch ``B``).
            corner_prior: optional ``(B, 2, H*W)`` log-prior for the corner maps.
            attention: add ``"attention"``: the search-kind attention maps of this call.
            features: add ``"features"``: the corner head's input ``(B, C, H, W)``, for
                :meth:`corner_maps` (only where :attr:`has_corner_maps`).
        """
        features = features and self._features

        def step(net: Any, search: torch.Tensor, cache: Any, prior: Any) -> dict[str, Any]:
            if not features:
                return net.track(search, cache, corner_prior=prior)
            x = net.search_features(search, cache)
            out = net._heads(x, cache.template_feat, True, None, prior)
            out["features"] = x
            return out

        if attention:
            out, maps = self._recorded("search", lambda net: step(net, search, cache, corner_prior))
            out["attention"] = maps
            return out
        with self._calls():
            if self.graphs is not None:
                net = self.network
                return self.graphs(
                    lambda s, c, p: step(net, s, c, p), search, cache, corner_prior, features
                )
            return step(self.network, search, cache, corner_prior)

    def corner_maps(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The corner head's raw ``(tl, br)`` heat maps, each ``(B, 1, H, W)``, of the
        ``"features"`` a ``track(..., features=True)`` call returned."""
        if not self._features:
            raise NotImplementedError(f"{type(self.network).__name__} has no corner heat maps")
        with self._calls():
            return self.network.corner_maps(features)

    @contextlib.contextmanager
    def _calls(self) -> Iterator[None]:
        """What every network call runs under: inference mode, and :func:`exact_fp32` for
        fp32 on CUDA."""
        with contextlib.ExitStack() as stack:
            stack.enter_context(torch.inference_mode())
            if self.device.type == "cuda" and self.dtype == torch.float32:
                stack.enter_context(exact_fp32())
            yield

    # -- attention ------------------------------------------------------------------------------
    def _recorded(self, kind: str, fn: Any) -> tuple[Any, list[AttentionMap]]:
        """Run ``fn`` on the recording twin and return its output and the maps of ``kind``.

        The twin is a structural copy of the network that shares every parameter and buffer
        (no copy of the weights) with its layers recording permanently: the shared network's
        layers never switch, so calls without attention (other trackers, other threads) run
        and return exactly as alone. Twin calls are serialised (the layers keep the latest
        records until they are collected).
        """
        if not self.can_record_attention:
            raise ValueError(
                f"attention needs a torch network (backend='torch'); got "
                f"{type(self.network).__name__}"
            )
        with self._lock:
            twin = self._recording_twin()
            try:
                with self._calls():
                    out = fn(twin)
                maps = [
                    r
                    for m in twin.modules()
                    if isinstance(m, MixedAttention)
                    for k, r in m.records.items()
                    if k == kind
                ]
            finally:
                for m in twin.modules():
                    if isinstance(m, MixedAttention):
                        m.records = {}
        return out, maps

    def _recording_twin(self) -> nn.Module:
        net = self.network
        assert isinstance(net, nn.Module)
        stamp = _fingerprint(net)
        if self._twin is None or self._twin[0] != stamp:
            shared = {id(t): t for t in (*net.parameters(), *net.buffers())}
            twin = copy.deepcopy(net, shared)
            set_keep_attention(twin, True)
            self._twin = (stamp, twin)
        return self._twin[1]


# model -> {(dtype, backend, fast): (weights fingerprint, network, weakref to its Engine)}. Weak
# keys: a network lives as long as its model, and an engine as long as something holds it (it
# refers to its model: a strong value would keep the entry alive forever). The plain network is
# the model itself and is never stored.
_NETWORKS: weakref.WeakKeyDictionary[nn.Module, dict[tuple[str, str, bool], list[Any]]] = (
    weakref.WeakKeyDictionary()
)
_LOCK = threading.Lock()


def shared_engine(
    model: MixFormer, dtype: str = "fp32", backend: str = "torch", fast: bool | None = None
) -> Engine:
    """The engine of ``model`` for a resolved precision, built once per model.

    Trackers over the same ``model`` share it: the fast path's folded weights (or the exported
    ONNX graphs) exist once, however many trackers run. Keyed by the model's identity, ``dtype``,
    ``backend`` and ``fast``; rebuilt when the model's weights have changed since (moved to
    another device, loaded, trained), so a cached engine never runs stale weights.

    Args:
        model: the plain network (on its device, eval mode).
        dtype: ``"fp32"``, ``"bf16"`` or ``"fp16"``; backend, fast: as :func:`build_network`.
    Raises:
        ValueError / ImportError: as :func:`build_network`.
    """
    fast = True if fast is None else bool(fast)
    if backend == "torch" and not fast and dtype == "fp32":
        return Engine(model, model, backend=backend, fast=False)
    key = (dtype, backend, fast)
    stamp = _fingerprint(model)
    with _LOCK:
        per_model = _NETWORKS.setdefault(model, {})
        hit = per_model.get(key)
        if hit is not None and hit[0] == stamp:
            live = hit[2]()
            if live is not None:
                return live
            network = hit[1]
        else:
            network = build_network(model, dtype, backend, fast)
            if network is model:  # a custom plain network
                return Engine(model, model, backend=backend, fast=False)
            log.debug("built %s network (%s, fast=%s) for %s", backend, dtype, fast, model.name)
        built = Engine(network, model, backend=backend, fast=fast)
        per_model[key] = [stamp, network, weakref.ref(built)]
    return built


def engine(
    model: Any,
    *,
    dtype: DTypeSetting = "auto",
    backend: Backend | Literal["auto"] = "auto",
    fast: bool = True,
    device: str | torch.device | None = None,
) -> Engine:
    """The engine that runs ``model`` (``mixformer.engine``): shared by every tracker over it.

    Args:
        model: the plain network (put in eval mode), or an :class:`Engine` (returned as is).
        dtype: ``"auto"`` (default: bf16 on the fast CPU path with native bf16 matrix units,
            Intel AMX, unless the weights say otherwise as the default model's do; fp32
            elsewhere: :func:`resolve_dtype_setting`), ``"fp32"`` (the exact
            path), ``"bf16"`` or ``"fp16"`` (the fast path in that precision).
        backend: ``"auto"`` (default): what ``mixformer track`` runs, OpenVINO where it gives
            the torch fast path's boxes faster (installed, an x86-64 CPU in fp32, ``fast``),
            torch elsewhere (:func:`usable_backend`); ``"torch"``;
            ``"onnxruntime"`` (exported once per model; needs ``pip install onnx
            onnxruntime``); ``"openvino"`` (the same graphs compiled by OpenVINO for the CPU,
            fp32 or bf16; installed with the package on x86-64, elsewhere
            ``pip install 'mixformer[openvino]'``). OpenVINO and ONNX Runtime run
            one target per call (a :class:`~mixformer.MultiTracker` over them steps its targets
            one after the other; torch batches them).
        fast: the fast torch path (folded BatchNorm, fused attention; boxes within ~1e-4 px of
            the plain path); False: the plain reference arithmetic (fp32 only).
        device: move the model there first (default: where it is).
    Raises:
        ValueError: unknown or impossible settings, or settings other than the defaults with an
            :class:`Engine` (it is built already).
        ImportError: the onnxruntime or openvino backend without its packages.
    """
    if isinstance(model, Engine):
        backend = model.backend if backend == "auto" else backend  # an engine's is its own
        if (dtype, backend, fast) != ("auto", model.backend, True) and (
            resolve_dtype_setting(dtype, model.device, backend, fast, auto_bf16_of(model)),
            backend,
            fast,
        ) != (model.precision, model.backend, model.fast):
            raise ValueError(
                f"{model!r} is built already: dtype, backend and fast belong to "
                "mixformer.engine(model, ...)"
            )
        if device is not None and torch.device(device) != model.device:
            raise ValueError(f"{model!r} runs on {model.device}, not {device}")
        return model
    if backend not in BACKENDS and backend != "auto":
        raise ValueError(f"unknown backend {backend!r}; use one of auto, {', '.join(BACKENDS)}")
    if device is not None:
        model = model.to(torch.device(device))
    if isinstance(model, nn.Module):
        model.eval()
    device = _device_of(model)
    bf16_ok = auto_bf16_of(model)
    if backend == "auto":
        backend = usable_backend("auto", device=device, fast=fast, dtype=dtype, auto_bf16=bf16_ok)
    precision = resolve_dtype_setting(dtype, device, backend, fast, bf16_ok)
    return shared_engine(model, precision, backend, fast)
