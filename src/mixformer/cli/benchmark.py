"""``mixformer benchmark``: end-to-end tracking speed on a generated sequence."""

from __future__ import annotations

import argparse

from mixformer.cli import CLIError
from mixformer.cli.common import (
    add_model_args,
    add_plain_arg,
    add_progress_arg,
    add_threads_arg,
    load_model_from_args,
    set_threads,
)
from mixformer.cli.dtype import (
    add_backend_arg,
    add_dtype_arg,
    resolve_backend_arg,
    resolve_dtype_arg,
)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``benchmark`` subcommand."""
    p = sub.add_parser(
        "benchmark",
        help="measure end-to-end tracking speed (FPS, parts, GMACs, matmul peak)",
        description="Track a generated 640x480 sequence with the default tracker (fast path) "
        "and print medians per frame after warm-up: total time and FPS, crop/preprocessing, "
        "network, template updates (amortised), post-processing, the network's GMACs and "
        "achieved GFLOP/s next to this machine's matmul peak measured in the same run, and "
        "peak memory. --compare runs the reference tracker side by side (its per-frame work "
        "in the plain fp32 arithmetic: the joint forward every frame where the reference runs "
        "it, i.e. MixFormerV2 and one online template).",
    )
    add_model_args(p)
    add_dtype_arg(p)
    add_backend_arg(p)
    add_threads_arg(p)
    p.add_argument("--frames", type=int, default=20, help="timed frames")
    p.add_argument("--warmup", type=int, default=3, help="untimed frames first")
    p.add_argument(
        "--compare",
        action="store_true",
        help="also run the reference tracker (plain fp32 arithmetic, the reference's per-frame "
        "protocol), alternating frame by frame, and print the speed ratio and the mean IoU of "
        "the boxes",
    )
    p.add_argument(
        "--compare-dtype",
        choices=("fp32", "bf16", "fp16"),
        default=None,
        help="with --compare: run the fast path in this dtype side by side instead of the "
        "reference (e.g. --dtype bf16 --compare --compare-dtype fp32)",
    )
    add_plain_arg(p)
    p.add_argument(
        "--preset",
        default=None,
        help="tracker settings preset of the model (e.g. lasot); default: the reference "
        "defaults with template updates every 10 frames, 2 online templates",
    )
    p.add_argument(
        "--scene",
        choices=("synthetic", "photos"),
        default="synthetic",
        help="synthetic: procedural frames (default); photos: composited from the real photos "
        "shipped with the package (the demo's scene)",
    )
    p.add_argument("--seed", type=int, default=0, help="generated sequence seed")
    p.add_argument(
        "--accuracy",
        type=int,
        default=0,
        metavar="N",
        help="instead of timing, track N generated 240x320 sequences with fp32, --dtype (if not "
        "fp32) and int8 dynamic quantisation, and print each one's AUC and mean IoU vs fp32",
    )
    p.add_argument(
        "--accuracy-frames", type=int, default=40, help="frames per sequence for --accuracy"
    )
    p.add_argument(
        "--precision",
        type=int,
        default=0,
        metavar="N",
        help="instead of timing, the precision study: track N generated 640x480 sequences "
        "(--scene) with an fp32 and a --dtype tracker (auto: bf16) side by side and print the "
        "box deviation (px, IoU) on the same crops and end to end, how often the online-template "
        "decision (score vs threshold) flips, the AUC of each and the time per frame",
    )
    p.add_argument(
        "--precision-frames",
        type=int,
        default=30,
        help="frames per sequence for --precision (template updates every min(preset's, 10) "
        "frames so that short sequences exercise them)",
    )
    add_progress_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the benchmark and print the report."""
    from mixformer.perf.benchmark import run_benchmark

    if args.frames < 1 or args.warmup < 0:
        raise CLIError("--frames must be >= 1 and --warmup >= 0")
    if args.device not in ("cpu", "auto"):
        raise CLIError(
            "the benchmark runs on the CPU only (--device cpu); on a GPU use tools/device_check.py"
        )
    args.device = "cpu"
    if args.plain and args.compare:
        raise CLIError("--plain measures the plain torch fp32 path alone (not with --compare)")
    if args.compare_dtype and not args.compare:
        raise CLIError("--compare-dtype goes with --compare")
    if args.precision < 0 or (args.precision and args.precision_frames < 2):
        raise CLIError("--precision must be >= 0 and --precision-frames >= 2")
    args.backend = resolve_backend_arg(args)  # auto: what `track` runs
    dtype = resolve_dtype_arg(args, args.backend)

    model = load_model_from_args(args)
    threads = set_threads(args.threads, model, args.backend)  # default: auto_threads
    if args.accuracy:
        return _accuracy(model, args, dtype)
    config = None
    if args.preset:
        from mixformer.tracking import TrackerConfig

        config = TrackerConfig.for_model(model, args.preset)
    if args.precision:
        return _precision(model, args, config)
    report = run_benchmark(
        model,
        dtype=dtype,
        backend=args.backend,
        threads=threads,
        frames=args.frames,
        warmup=args.warmup,
        compare=args.compare,
        tracker_config=config,
        seed=args.seed,
        plain=args.plain,
        scene=args.scene,
        compare_dtype=args.compare_dtype,
        progress=not args.no_progress,
    )
    print(report.format())
    return 0


def _precision(model: object, args: argparse.Namespace, config: object) -> int:
    from mixformer.perf.precision import precision_study
    from mixformer.tracking.core import reference_config

    dtype = "bf16" if args.dtype in ("auto", "fp32") else args.dtype
    cfg = config or reference_config(model).replace(online_size=2)
    cfg = cfg.replace(update_interval=min(cfg.update_interval, 10))
    report = precision_study(
        model,
        dtype,
        num_sequences=args.precision,
        num_frames=args.precision_frames,
        seed=args.seed,
        tracker_config=cfg,
        scene=args.scene,
        progress=not args.no_progress,
    )
    print(report.format())
    return 0


def _accuracy(model: object, args: argparse.Namespace, dtype: str) -> int:
    from mixformer.perf.precision import precision_study
    from mixformer.tracking.core import reference_config

    variants = tuple(v for v in (dtype, "int8") if v != "fp32")
    reports = [
        precision_study(
            model,
            v,
            num_sequences=args.accuracy,
            num_frames=args.accuracy_frames,
            seed=args.seed,
            tracker_config=reference_config(model),
            size=(240, 320),
            progress=not args.no_progress,
        )
        for v in variants
    ]
    print(
        f"{args.accuracy} generated sequences x {args.accuracy_frames} frames; IoU vs fp32 on the "
        "same crops (numerical cost) and end to end (own trajectory)"
    )
    print(f"{'variant':<8}{'AUC %':>8}{'IoU same crops':>16}{'IoU end-to-end':>16}")
    print(f"{'fp32':<8}{reports[0].auc_reference:>8.2f}{1.0:>16.4f}{1.0:>16.4f}")
    for r in reports:
        print(f"{r.dtype:<8}{r.auc_dtype:>8.2f}{r.same_iou_mean:>16.4f}{r.e2e_iou_mean:>16.4f}")
    return 0
