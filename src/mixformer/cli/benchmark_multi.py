"""``mixformer benchmark-multi``: MultiTracker vs K separate Trackers, time per frame."""

from __future__ import annotations

import argparse
import platform

from mixformer.cli.common import (
    add_model_args,
    add_plain_arg,
    add_threads_arg,
    check_device,
    load_model_from_args,
    set_threads,
)


def _ks(text: str) -> list[int]:
    try:
        ks = [int(v) for v in text.replace(",", " ").split()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected numbers like 1,4,16, got {text!r}") from exc
    if not ks or min(ks) < 1:
        raise argparse.ArgumentTypeError(f"numbers of targets must be >= 1, got {text!r}")
    return ks


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "benchmark-multi",
        help="time MultiTracker against K separate Trackers",
        description="Track K objects in a synthetic video with K separate Trackers and with one "
        "MultiTracker (one batched network call per frame), timing both on every frame side by "
        "side, and print milliseconds per frame, the speed-up and the largest box difference.",
    )
    add_model_args(p)
    p.add_argument("--targets", type=_ks, default=[1, 4, 16], help="values of K (1,4,16)")
    p.add_argument("--frames", type=int, default=10, help="timed frames per K (10)")
    p.add_argument("--warmup", type=int, default=2, help="untimed frames first (2)")
    p.add_argument("--size", default="640x480", help="frame size WxH (640x480)")
    add_threads_arg(p)
    add_plain_arg(p)
    p.add_argument("--max-batch", type=int, default=None, help="MultiTracker batch limit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from mixformer.cli import CLIError
    from mixformer.perf.multi_benchmark import benchmark_multi, format_table

    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError as exc:
        raise CLIError(f"--size must be WxH, e.g. 640x480, got {args.size!r}") from exc
    args.device = check_device(args.device)
    model = load_model_from_args(args).to(args.device)
    set_threads(args.threads, model)  # default: auto_threads (torch: small networks get 1)
    rows = benchmark_multi(
        model,
        args.targets,
        args.frames,
        args.warmup,
        height=height,
        width=width,
        fast=not args.plain,
        max_batch=args.max_batch,
    )
    print(
        f"model {args.model} ({'plain' if args.plain else 'fast'} path), {width}x{height} frames, "
        f"{args.frames} timed frames per K, max batch {args.max_batch or 'K'}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{platform.processor() or platform.machine()}"
    )
    print(format_table(rows))
    return 0
