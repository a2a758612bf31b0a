"""``--dtype``: the network precision of every command that tracks (one option, one default);
``--backend``: what runs the network in ``track``, ``demo``, ``evaluate``, ``benchmark`` and
``app``."""

from __future__ import annotations

import argparse

from mixformer.cli import CLIError

DTYPE_CHOICES = ("auto", "fp32", "bf16", "fp16")


def add_dtype_arg(p: argparse.ArgumentParser) -> None:
    """``--dtype {auto,fp32,bf16,fp16}`` (default ``auto``)."""
    _add_auto_choice(
        p,
        "--dtype",
        DTYPE_CHOICES,
        "network precision; auto (default): bf16 on CPUs with AMX for models that track as "
        "well in it (not the default model: fp32 everywhere; others about 2x faster there, "
        "same tracking), else fp32; fp32: the exact path (the reference tracker's boxes)",
    )


def _add_auto_choice(
    p: argparse.ArgumentParser, flag: str, choices: tuple[str, ...], help: str
) -> None:
    """An option among ``choices`` whose default is ``"auto"``."""
    p.add_argument(flag, choices=choices, default="auto", help=help)


def auto_bf16_arg(args: argparse.Namespace) -> bool:
    """Whether ``auto`` may run ``args.model``'s weights in bf16 (its preset's
    :attr:`~mixformer.models.TrackingDefaults.auto_bf16`; True without a known preset)."""
    from mixformer.models import get_config

    try:
        return get_config(args.model).tracking.auto_bf16
    except (AttributeError, KeyError, TypeError):
        return True


def resolve_dtype_arg(args: argparse.Namespace, backend: str = "torch") -> str:
    """``args.dtype`` resolved for ``args.device``, ``args.plain`` and ``args.model``'s weights
    (``"fp32" | "bf16" | "fp16"``), by :func:`mixformer.tracking.backends.resolve_dtype_setting`.

    Raises:
        CLIError: a precision that ``--plain`` (fp32) or the backend does not run
            (:data:`~mixformer.tracking.backends.BACKEND_PRECISIONS`).
    """
    from mixformer.tracking.backends import BACKEND_PRECISIONS, resolve_dtype_setting

    dtype = getattr(args, "dtype", "auto")
    plain = bool(getattr(args, "plain", False))
    runs = ("fp32",) if plain else BACKEND_PRECISIONS[backend]
    if dtype != "auto" and dtype not in runs:
        what = "--plain" if plain else f"--backend {backend}"
        raise CLIError(
            f"{what} runs {' or '.join(runs)} only (use --dtype {' or '.join(runs)} or auto)"
        )
    device = getattr(args, "device", "cpu")
    return resolve_dtype_setting(dtype, device, backend, not plain, auto_bf16_arg(args))


def add_backend_arg(p: argparse.ArgumentParser) -> None:
    """``--backend {auto,torch,onnxruntime,openvino}`` (default ``auto``; ``track``, ``demo``,
    ``evaluate``, ``benchmark``, ``app``)."""
    from mixformer.tracking.backends import BACKEND_SETTINGS

    _add_auto_choice(
        p,
        "--backend",
        BACKEND_SETTINGS,
        "what runs the network; auto (default): openvino where it is installed (a "
        "dependency on x86-64) and it runs the same arithmetic faster (an x86-64 CPU in fp32, "
        "or in bf16 with AMX; no --attention, not --plain), else torch; onnxruntime needs the "
        "export extra",
    )


def resolve_backend_arg(args: argparse.Namespace) -> str:
    """``args.backend`` resolved (:func:`mixformer.tracking.backends.usable_backend`: ``auto``
    falls back to torch with a warning where openvino is installed but broken).

    Raises:
        CLIError: a named backend whose packages are missing, or one that cannot run
            ``--plain`` or ``--attention`` (torch only).
    """
    from mixformer.tracking.backends import usable_backend

    plain = bool(getattr(args, "plain", False))
    attention = getattr(args, "attention", None) is not None
    try:
        backend = usable_backend(
            args.backend,
            device=getattr(args, "device", "cpu"),
            fast=not plain,
            dtype=getattr(args, "dtype", "auto"),
            attention=attention,
            auto_bf16=auto_bf16_arg(args),
        )
    except ImportError as exc:
        raise CLIError(str(exc)) from None
    if backend != "torch" and (plain or attention):
        raise CLIError(f"--{'plain' if plain else 'attention'} needs --backend torch")
    return backend
