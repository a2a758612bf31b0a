"""The constructor and read-only properties :class:`~mixformer.Tracker` and
:class:`~mixformer.MultiTracker` share: one place for the engine, settings and threads."""

from __future__ import annotations

from typing import Any, Literal

import torch

from mixformer.models.mixformer import MixFormer
from mixformer.tracking.backends import auto_bf16_of, usable_backend
from mixformer.tracking.config import TrackerConfig
from mixformer.tracking.core import TrackingCore
from mixformer.tracking.engines import Engine, engine
from mixformer.tracking.threads import intra_op_threads, resolve_threads

__all__ = ["TrackerBase"]


class TrackerBase:
    """What :class:`~mixformer.Tracker` and :class:`~mixformer.MultiTracker` share: the
    constructor (the engine, settings and threads) and the read-only properties.

    Args:
        model_or_engine: the network (put in eval mode; moved to ``device``), or an
            :class:`~mixformer.tracking.engines.Engine` (:func:`mixformer.engine`) to run.
        config: tracker settings (default: ``TrackerConfig.for_model(model)``, the model's own
            default preset with its crop sizes, as the CLI uses).
        device: torch device for the network (default: ``"cpu"``, or the engine's device).
        color: channel order of the frames passed in (``"rgb"`` or ``"bgr"`` for OpenCV frames).
        dtype, backend, fast: the engine's settings, passed to :func:`mixformer.engine`
            (defaults: ``"auto"``, ``"auto"``, True: the fast path, bf16 on CPUs with AMX and
            fp32 elsewhere and for the default model's weights; ``dtype="fp32"`` is the exact
            path, ``fast=False`` the plain reference arithmetic). ``backend="auto"`` (default)
            runs what ``mixformer track`` runs: OpenVINO where it gives the torch fast path's
            boxes faster (``openvino`` installed: a dependency on x86-64; an x86-64 CPU, fp32:
            the default model everywhere, other models without AMX; no ``keep_attention``, not
            ``fast=False``), torch elsewhere
            (:func:`~mixformer.tracking.backends.usable_backend`); ``backend="torch"`` always
            runs torch (corner heat maps in ``observe=True`` observations, which OpenVINO does
            not return). Not used with an engine.
        keep_attention: every result carries the mixed-attention probabilities of every block
            (:attr:`TrackResult.attention`, a :class:`~mixformer.tracking.results.TrackAttention`;
            torch backend only). The calls of this tracker then run the explicit softmax (about
            the plain path's speed); other trackers sharing the engine are not affected. Each
            result holds the probability matrices (stage 0 of a 320 px search crop: 6400
            queries x their keys, tens of MB).
        threads: torch intra-op threads for this tracker's own calls. None (default): if the
            program chose a count (``torch.set_num_threads``, ``OMP_NUM_THREADS``, the CLI's
            ``--threads``) that one; otherwise the CLI's default, picked once here
            (:func:`~mixformer.tracking.threads.auto_threads`: 2, or 1 on a busy or one-core
            machine or for a small network on torch; OpenVINO and ONNX Runtime take the same
            count). An int sets the count; 0 leaves torch's setting alone. torch's previous
            count is restored after every call.
    Raises:
        ValueError: bad settings (see :func:`mixformer.engine`), crop sizes that do not match
            the model, ``keep_attention`` with an engine that cannot record attention.
    """

    _core: TrackingCore
    _core_class: type[TrackingCore] = TrackingCore

    def __init__(
        self,
        model_or_engine: Any,
        config: TrackerConfig | None = None,
        *,
        device: str | torch.device | None = None,
        color: Literal["rgb", "bgr"] = "rgb",
        dtype: Literal["auto", "fp32", "bf16", "fp16"] = "auto",
        backend: Literal["torch", "onnxruntime", "openvino", "auto"] = "auto",
        fast: bool = True,
        keep_attention: bool = False,
        threads: int | None = None,
        **core_options: Any,
    ) -> None:
        if device is None and not isinstance(model_or_engine, Engine):
            device = "cpu"
        if backend == "auto" and not isinstance(model_or_engine, Engine):
            backend = usable_backend(  # with what only the tracker knows
                "auto",
                device=device,
                fast=fast,
                dtype=dtype,
                attention=keep_attention,
                auto_bf16=auto_bf16_of(model_or_engine),
            )
        runs_on = model_or_engine.backend if isinstance(model_or_engine, Engine) else backend
        self.threads = resolve_threads(threads, model_or_engine, runs_on)
        """Intra-op threads of this tracker's calls (0: torch's setting)."""
        with intra_op_threads(self.threads):
            runner = engine(model_or_engine, dtype=dtype, backend=backend, fast=fast, device=device)
            self._core = self._core_class(
                runner, config, color, keep_attention=keep_attention, **core_options
            )

    @property
    def config(self) -> TrackerConfig:
        """The tracker settings (shared by all targets)."""
        return self._core.config

    @property
    def model(self) -> MixFormer:
        """The plain network."""
        return self._core.model

    @property
    def engine(self) -> Engine:
        """What runs the network (shared with every tracker over the model with the same
        settings); ``engine.network`` is the model itself on the plain path."""
        return self._core.engine

    @property
    def dtype(self) -> str:
        """The precision the network runs in: ``"fp32"``, ``"bf16"`` or ``"fp16"``."""
        return self._core.engine.precision

    @property
    def device(self) -> torch.device:
        """The network's torch device."""
        return self._core.device

    @property
    def color(self) -> str:
        """Channel order of the frames passed in."""
        return self._core.color

    @property
    def keep_attention(self) -> bool:
        """Whether results carry attention probabilities."""
        return self._core.keep_attention
