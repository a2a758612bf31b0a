"""Which network implementation runs a model: plain, fast (fp32/bf16/fp16) or ONNX Runtime.

Every network has the contract of :class:`~mixformer.models.MixFormer`:
``encode_templates(template (B, 3, T, T), online (B, N, 3, T, T)) -> cache`` once per template
update, and ``track(search (B, 3, S, S), cache, corner_prior=None) -> {"pred_boxes" (B, 1, 4)
normalised cxcywh, "pred_scores" (B,) logits}`` per frame. Inputs are ImageNet-normalised float32.
The ONNX Runtime network takes ``B == 1`` only (``max_batch = 1``).

:func:`build_network` constructs one; :func:`resolve_dtype_setting` is the one place where a
``dtype`` setting (``"auto"`` by default) becomes a precision: bf16 on CPUs with native bf16
matrix units (Intel AMX-BF16) for weights that track as well in bf16 (not the default model's:
:func:`auto_bf16_of`), fp32 elsewhere; :func:`resolve_backend_setting` is the one place
where ``backend="auto"`` (the default of the commands and of the trackers) becomes a backend, and
:func:`usable_backend` checks that choice against what imports.
:class:`~mixformer.tracking.engines.Engine` wraps a network for the trackers.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import platform
from typing import Any, Literal, Protocol

import torch

from mixformer.models.config import ModelConfig
from mixformer.models.mixformer import MixFormer

log = logging.getLogger(__name__)

Backend = Literal["torch", "onnxruntime", "openvino"]
BACKENDS: tuple[str, ...] = ("torch", "onnxruntime", "openvino")
#: The precisions each backend runs (the one place that says so: the engine and the CLI check it).
BACKEND_PRECISIONS: dict[str, tuple[str, ...]] = {
    "torch": ("fp32", "bf16", "fp16"),
    "onnxruntime": ("fp32",),
    "openvino": ("fp32", "bf16"),
}
#: torch dtype -> precision name.
PRECISION_NAMES: dict[torch.dtype, str] = {
    torch.float32: "fp32",
    torch.bfloat16: "bf16",
    torch.float16: "fp16",
}
DTypeSetting = Literal["auto", "fp32", "bf16", "fp16"]
DTYPE_SETTINGS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices natively (AMX-BF16) and oneDNN can use it.

    Reads the ``amx_bf16`` flag from ``torch.cpu.get_capabilities()`` (cpuinfo) or, where that
    is missing, ``/proc/cpuinfo``, and requires ``torch.ops.mkldnn._is_mkldnn_bf16_supported()``.
    CPUs with AVX512-BF16 but no AMX are not counted (not measured); AVX2 CPUs emulate bf16
    (``F.linear`` about 8x slower than fp32).
    """
    flag = False
    try:
        flag = bool(torch.cpu.get_capabilities().get("amx_bf16", False))
    except (AttributeError, RuntimeError):
        try:
            with open("/proc/cpuinfo") as f:
                flag = any(line.startswith("flags") and "amx_bf16" in line.split() for line in f)
        except OSError:
            flag = False
    if not flag:
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _check_setting(what: str, value: str, choices: tuple[str, ...]) -> None:
    """Raise ``ValueError`` naming ``value`` and the ``choices`` when it is not one of them."""
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; use one of {', '.join(choices)}")


def auto_bf16_of(model: Any) -> bool:
    """Whether ``dtype="auto"`` may run ``model``'s weights in bf16: its config's
    :attr:`~mixformer.models.TrackingDefaults.auto_bf16` (an :class:`Engine`: its plain
    network's; True for anything without one)."""
    model = getattr(model, "model", model)  # an Engine's plain network
    tracking = getattr(getattr(model, "config", None), "tracking", None)
    return bool(getattr(tracking, "auto_bf16", True))


def resolve_dtype_setting(
    dtype: str = "auto",
    device: str | torch.device = "cpu",
    backend: str = "torch",
    fast: bool | None = True,
    auto_bf16: bool = True,
) -> str:
    """The precision a tracker runs for its ``dtype`` setting: ``"fp32" | "bf16" | "fp16"``.

    ``"auto"`` (the default of :class:`~mixformer.Tracker`, :class:`~mixformer.MultiTracker` and
    the CLI) is ``"bf16"`` on the fast torch path on a CPU with native bf16 matrix units
    (:func:`cpu_has_native_bf16`: Intel AMX), where it runs up to ~2x faster and tracks like
    fp32 (``mixformer benchmark --precision``), and on the OpenVINO backend on such CPUs;
    ``"fp32"`` everywhere else (other CPUs, CUDA and other devices, the plain path, ONNX
    Runtime), and for weights whose tracking suffers in bf16 (``auto_bf16=False``: the model's
    :attr:`~mixformer.models.TrackingDefaults.auto_bf16`, False for the default model). Other
    values are returned as given (validated), so ``"fp32"`` always means the exact path.

    Raises:
        ValueError: an unknown setting.
    """
    _check_setting("dtype", dtype, DTYPE_SETTINGS)
    if dtype != "auto":
        return dtype
    if not auto_bf16:
        return "fp32"
    if backend == "openvino":  # OpenVINO's own default on CPUs with bf16 matrix units
        return "bf16" if cpu_has_native_bf16() else "fp32"
    if backend != "torch" or fast is False or torch.device(device).type != "cpu":
        return "fp32"
    return "bf16" if cpu_has_native_bf16() else "fp32"


#: ``--backend`` of ``track``, ``demo``, ``evaluate`` and ``benchmark``, ``backend=`` of the
#: trackers and :func:`mixformer.engine`: a backend or ``"auto"`` (:func:`resolve_backend_setting`).
BACKEND_SETTINGS: tuple[str, ...] = ("auto", *BACKENDS)


def resolve_backend_setting(
    backend: str = "auto",
    *,
    device: str | torch.device = "cpu",
    fast: bool = True,
    dtype: str = "auto",
    attention: bool = False,
    auto_bf16: bool = True,
) -> str:
    """The backend that runs for a ``backend`` setting (the commands that track, the trackers).

    ``"auto"`` is ``"openvino"`` where that backend runs the same arithmetic faster:
    ``openvino`` and ``onnx`` importable (dependencies of the package on x86-64), the fast path
    on an x86-64 CPU (the only kind measured), no attention maps (torch only), and a precision
    of fp32, or bf16 on a CPU with native bf16 matrix units (AMX: ``dtype="auto"`` is bf16 there
    for presets with ``auto_bf16``). OpenVINO fp32 gave the torch fast path's boxes (mean IoU
    1.0000 on every preset) 1.4-3.0x faster end to end on a 2-core AMD EPYC, and several
    targets one call each beat torch's batch of them (a ``MultiTracker``: the default model
    about 2x faster with 2-16 targets, ``mixformer-22k`` 1.25x with 4); on a 2-core Xeon with
    AMX, OpenVINO bf16 ran 1.2-2.4x faster than torch bf16 on six presets with boxes as close
    to fp32's (``docs/speed.md#amx``). Anything else (fp16, bf16 without AMX) is ``"torch"``;
    a named backend is returned as given.

    Raises:
        ValueError: an unknown setting.
    """
    _check_setting("backend", backend, BACKEND_SETTINGS)
    if backend != "auto":
        return backend
    if not fast or attention or torch.device(device).type != "cpu":
        return "torch"
    precision = resolve_dtype_setting(dtype, device, "torch", fast, auto_bf16)
    if precision != "fp32" and not (precision == "bf16" and cpu_has_native_bf16()):
        return "torch"
    if platform.machine().lower() not in ("x86_64", "amd64"):  # e.g. arm64: not measured
        return "torch"
    return "openvino" if openvino_installed() else "torch"


def openvino_installed() -> bool:
    """Whether the OpenVINO backend is installed (``openvino`` and ``onnx`` can be found;
    not imported): the last condition of ``backend="auto"``'s rule."""
    return all(importlib.util.find_spec(name) is not None for name in ("openvino", "onnx"))


def usable_backend(backend: str = "auto", **context: Any) -> str:
    """:func:`resolve_backend_setting` (``context``: its keyword arguments ``device``,
    ``fast``, ``dtype``, ``attention``, ``auto_bf16``), checked against what imports: the backend
    that runs.

    ``backend="auto"`` (``Tracker(model, backend="auto")``, the CLI's ``--backend auto``) whose
    choice cannot be imported although installed (a broken ``openvino``: the user did not ask
    for it) logs a warning and runs torch; a named backend whose packages are missing raises.

    Raises:
        ValueError: an unknown setting.
        ImportError: a named ``"onnxruntime"`` / ``"openvino"`` without its packages.
    """
    chosen = resolve_backend_setting(backend, **context)
    if chosen == "torch":
        return chosen
    try:
        if chosen == "openvino":
            from mixformer.export.openvino import require_openvino

            require_openvino()
        else:
            from mixformer.export.onnx import require_onnx

            require_onnx()
    except ImportError as exc:
        if backend != "auto":
            raise
        log.warning("%s; running on torch", exc)
        return "torch"
    return chosen


class Network(Protocol):
    """What an :class:`~mixformer.tracking.engines.Engine` runs: anything with the
    ``encode_templates`` / ``track`` contract of :class:`MixFormer` (the plain network, its fused
    copy, an ONNX Runtime model, a quantised module). A network whose caches are not
    :class:`~mixformer.models.mixformer.TemplateCache` (no batching) sets ``max_batch = 1``."""

    config: ModelConfig

    def encode_templates(self, template: torch.Tensor, online_templates: torch.Tensor) -> Any:
        """Template cache for ``template (B, 3, S, S)`` and ``online_templates (B, N, 3, S, S)``
        (or ``(N, 3, S, S)`` when ``B == 1``)."""
        ...

    def track(
        self, search: torch.Tensor, cache: Any, corner_prior: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """``pred_boxes (B, 1, 4)`` normalised cxcywh and ``pred_scores (B,)`` logits.

        ``corner_prior``: optional ``(B, 2, H*W)`` log-prior for the corner maps
        (:func:`mixformer.models.heads.corner_prior`); every engine takes it (the ONNX
        search graph has a ``corner_prior`` input).
        """
        ...


def check_backend_precision(backend: str, precision: str) -> None:
    """Raise ``ValueError`` when ``backend`` does not run ``precision`` (``"fp32" | "bf16" |
    "fp16"``; :data:`BACKEND_PRECISIONS`), naming the ones it runs."""
    runs = BACKEND_PRECISIONS[backend]
    if precision not in runs:
        raise ValueError(
            f"the {backend} backend runs {' or '.join(runs)} only "
            f"(use dtype={' or '.join(repr(r) for r in runs)})"
        )


def build_network(
    model: MixFormer,
    dtype: str = "fp32",
    backend: str = "torch",
    fast: bool | None = None,
) -> Network:
    """Choose the implementation that runs ``model``.

    Args:
        model: the plain network (already on its device, eval mode).
        dtype: ``"fp32"``, ``"bf16"`` or ``"fp16"`` (the latter two imply the fast path).
        backend: ``"torch"``, ``"onnxruntime"`` (exports the network to a temporary folder;
            fp32 only; needs the ``export`` extra: ``pip install onnx onnxruntime``) or
            ``"openvino"`` (the same graphs compiled by OpenVINO for the CPU, fp32 or bf16;
            installed with the package on x86-64, elsewhere ``pip install
            'mixformer[openvino]'``; int8: :class:`mixformer.export.openvino.OpenVinoModel`
            with calibration data).
        fast: use the fast torch path (folded BatchNorm, fused attention; boxes within ~1e-4 px
            of the plain path); None (default) and True: fast, False: ``model`` itself, the
            plain reference arithmetic (fp32 only). Ignored by the onnxruntime backend.
    Returns:
        ``model`` itself, its fused copy (a :class:`~mixformer.models.MixFormer` too) or an ONNX
        Runtime model.
    Raises:
        ValueError: unknown dtype or backend, or a combination that does not exist.
        ImportError: the onnxruntime (openvino) backend without the ``export`` (``openvino``)
            extra.
    """
    from mixformer.models.fuse import fuse_model, resolve_dtype

    dt = resolve_dtype(dtype)
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    precision = PRECISION_NAMES[dt]
    check_backend_precision(backend, precision)
    if backend == "onnxruntime":
        from mixformer.export.onnx import OnnxRuntimeModel, require_onnx

        require_onnx()
        return OnnxRuntimeModel.from_model(model)
    if backend == "openvino":
        from mixformer.export.openvino import OpenVinoModel, require_openvino

        require_openvino()
        return OpenVinoModel.from_model(model, precision=precision)
    if fast is None:
        fast = True
    if not fast:
        if dt != torch.float32:
            raise ValueError(f"dtype {dtype!r} needs the fast path (fast=True)")
        return model
    return fuse_model(model, dt)
