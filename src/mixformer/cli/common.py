"""Options and checks shared by the commands: the model and its weights, the device, threads,
progress bars, attention pictures and the GOT-10k-only schedules."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from mixformer.cli import CLIError
from mixformer.models.config import DEFAULT_MODEL
from mixformer.tracking.threads import auto_threads, set_process_threads

log = logging.getLogger("mixformer.cli")

__all__ = [
    "AUTO_THREADS_HELP",
    "add_attention_args",
    "add_got10k_arg",
    "add_model_args",
    "add_plain_arg",
    "add_progress_arg",
    "add_threads_arg",
    "check_attention_every",
    "check_device",
    "check_model_name",
    "got10k_trained",
    "load_model_from_args",
    "parse_box",
    "resolve_weights",
    "set_threads",
]


def parse_box(text: str) -> tuple[float, float, float, float]:
    """``"x,y,w,h"`` -> floats (commas or spaces)."""
    parts = text.replace(",", " ").split()
    try:
        vals = tuple(float(p) for p in parts)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"box must be x,y,w,h numbers, got {text!r}") from exc
    if len(vals) != 4:
        raise argparse.ArgumentTypeError(f"box must have 4 numbers x,y,w,h, got {text!r}")
    return vals  # type: ignore[return-value]


def add_model_args(p: argparse.ArgumentParser) -> None:
    """``--model`` / ``--weights`` / ``--device``, shared by commands that build a tracker."""
    p.add_argument("--model", default=DEFAULT_MODEL, help="model preset (see `mixformer models`)")
    p.add_argument(
        "--weights",
        default=None,
        help="weights file (release .pth.tar, this project's checkpoint); default: the weights "
        "shipped for the preset, else random weights (with a warning)",
    )
    p.add_argument(
        "--device",
        default="auto",
        help="torch device, e.g. cpu or cuda:0; auto (default): cuda where a CUDA device is "
        "visible (the search step then replays CUDA graphs), else cpu",
    )


def add_progress_arg(p: argparse.ArgumentParser) -> None:
    """``--no-progress``: no progress bar (every long command has it)."""
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_plain_arg(p: argparse.ArgumentParser) -> None:
    """``--plain``: the reference arithmetic instead of the fast path (boxes agree to ~1e-4 px).

    The one flag for the choice in every command that tracks (``track``, ``demo``,
    ``evaluate``, ``vot-server``, ``benchmark``, ``benchmark-multi``); the fast path is the
    default everywhere.
    """
    p.add_argument(
        "--plain",
        action="store_true",
        help="run the plain reference network (the executable specification) instead of the "
        "default fast path (folded BatchNorm, fused attention; boxes agree to about 1e-4 px)",
    )


def check_model_name(name: str) -> None:
    """Raise :class:`CLIError` for a model that is not a registered preset (lists them)."""
    from mixformer.models import list_models

    if name not in list_models():
        raise CLIError(f"unknown model {name!r}; choose from {', '.join(list_models())}")


def check_device(name: str) -> str:
    """Validate ``--device`` before anything is built; returns the device to use: ``name``
    itself, or for ``"auto"`` (the default) ``"cuda"`` where a CUDA device is visible, else
    ``"cpu"``.

    Raises:
        CLIError: not a torch device, or a CUDA/MPS device this PyTorch build or machine lacks.
    """
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError) as exc:
        raise CLIError(f"--device {name!r} is not a torch device (e.g. cpu, cuda:0)") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = (
                "this PyTorch build has no CUDA support"
                if torch.version.cuda is None
                else "no CUDA device is visible"
            )
            raise CLIError(f"--device {name}: {why}; use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise CLIError(
                f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) are visible"
            )
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise CLIError(f"--device {name}: MPS is not available here; use --device cpu")
    return name


#: ``--threads`` default of every command (see :func:`set_threads`: :func:`auto_threads`).
AUTO_THREADS_HELP = (
    "2, or 1 on a busy machine (1-minute load average at least half the cores; all the cores "
    "for OpenVINO) or for a small network such as the default model on the torch backend"
)


def add_threads_arg(p: argparse.ArgumentParser, default: str = AUTO_THREADS_HELP) -> None:
    """``--threads N``: torch (and ONNX Runtime) intra-op threads; ``default`` goes in the help."""
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help=f"intra-op CPU threads (default: {default})",
    )


def set_threads(threads: int | None, model: Any = None, backend: str = "torch") -> int:
    """Apply ``--threads`` (None: :func:`auto_threads` for ``model`` on ``backend``, the resolved
    ``--backend``) to torch; returns the count.

    Commands call it once, after :func:`load_model_from_args`, so that a small network on torch
    gets its one thread.

    Raises:
        CLIError: ``threads < 1``.
    """
    if threads is not None and threads < 1:
        raise CLIError(f"--threads must be >= 1, got {threads}")
    n = threads or auto_threads(model=model, backend=backend)
    set_process_threads(n)  # trackers built with threads=None keep it
    log.debug("%d intra-op thread(s)", n)
    return n


def add_attention_args(p: argparse.ArgumentParser) -> None:
    """``--attention DIR`` and ``--attention-every N`` (``track`` and ``demo``)."""
    p.add_argument(
        "--attention",
        type=Path,
        default=None,
        metavar="DIR",
        help="write attention pictures to DIR: per written frame, NAME_query.png (where the "
        "search location at the box centre looks in the search crop, the template and each "
        "online template) and NAME_frame.png (each search location's attention to the "
        "template, over the frame), for the last block; the attention then runs its explicit "
        "softmax (about the plain path's speed)",
    )
    p.add_argument(
        "--attention-every",
        type=int,
        default=10,
        metavar="N",
        help="with --attention: every N-th frame (default 10; frame 0 has no search step)",
    )


def check_attention_every(args: argparse.Namespace) -> None:
    """Raise :class:`CLIError` for ``--attention-every`` below 1."""
    if args.attention_every < 1:
        raise CLIError(f"--attention-every must be >= 1, got {args.attention_every}")


def add_got10k_arg(p: argparse.ArgumentParser) -> None:
    """``--got10k-trained``: the schedules of the reference's GOT-10k-only network."""
    p.add_argument(
        "--got10k-trained",
        action="store_true",
        help="the weights were trained on GOT-10k only: use the reference's baseline_got "
        "tracker schedules (automatic for the released GOT-10k-only files, e.g. "
        "mixformer_cvt_online_22k_got.pth.tar, by their names)",
    )


def got10k_trained(args: argparse.Namespace) -> bool:
    """``--got10k-trained``, or the ``--weights`` file is one of the preset's released
    GOT-10k-only files (:attr:`~mixformer.models.release.Release.got10k_trained`)."""
    if args.got10k_trained:
        return True
    if not args.weights or args.weights == "default":
        return False
    from mixformer.models import get_preset

    try:
        release = get_preset(args.model).release(args.weights)
    except KeyError:
        return False
    if release is not None and release.got10k_trained:
        log.info("%s is trained on GOT-10k only: its tracker schedules", release.file)
        return True
    return False


def resolve_weights(args: argparse.Namespace) -> Path | None:
    """The weights file the :func:`add_model_args` options name, or None for random weights.

    ``--weights FILE`` wins (``--weights default``: the shipped weights); without it the preset's
    shipped weights are used if there are any; otherwise a loud warning says they are random.

    Raises:
        CLIError: unknown ``--model`` (checked first) or the named file does not exist.
    """
    from mixformer.models.factory import default_weights_path

    check_model_name(args.model)
    if args.weights is None:
        shipped = default_weights_path(args.model)
        if shipped is None:
            from mixformer.cli.models import weights_line

            log.warning(
                "!!! NO WEIGHTS: %s has random weights, so the results are meaningless. "
                "Pass --weights FILE (%s). !!!",
                args.model,
                weights_line(args.model),
            )
        return shipped
    if args.weights == "default":
        shipped = default_weights_path(args.model)
        if shipped is None:
            raise CLIError(f"no default weights ship for {args.model!r}")
        return shipped
    path = Path(args.weights)
    if not path.is_file():
        raise CLIError(f"weights file not found: {args.weights}")
    return path


def load_model_from_args(args: argparse.Namespace):  # noqa: ANN201 - MixFormer, lazy import
    """Build the model named by :func:`add_model_args` options (see :func:`resolve_weights`).

    The model name and ``--device`` are checked before any weights are read.
    """
    from mixformer.models import build_model

    check_model_name(args.model)
    args.device = check_device(args.device)
    return build_model(args.model, weights=resolve_weights(args))
