"""``--dtype``: the network precision of every command that tracks (one option, one default)."""

from __future__ import annotations

import argparse

from mixformer.cli import CLIError

DTYPE_CHOICES = ("auto", "fp32", "bf16", "fp16")


def add_dtype_arg(p: argparse.ArgumentParser) -> None:
    """``--dtype {auto,fp32,bf16,fp16}`` (default ``auto``)."""
    p.add_argument(
        "--dtype",
        choices=DTYPE_CHOICES,
        default="auto",
        help="network precision; auto (default): bf16 on CPUs with AMX (about 2x faster there, "
        "same tracking), else fp32; fp32: the exact path (the reference tracker's boxes)",
    )


def resolve_dtype_arg(args: argparse.Namespace, backend: str = "torch") -> str:
    """``args.dtype`` resolved for ``args.device`` and ``args.plain`` (``"fp32" | "bf16" |
    "fp16"``), by :func:`mixformer.tracking.backends.resolve_dtype_setting`.

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
    return resolve_dtype_setting(dtype, getattr(args, "device", "cpu"), backend, not plain)
