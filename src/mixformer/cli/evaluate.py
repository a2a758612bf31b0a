"""``mixformer evaluate | report | pack | synth``: benchmark runs, reports, submissions, data."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING

from mixformer.cli import CLIError, Terminated
from mixformer.cli.common import (
    AUTO_THREADS_HELP,
    add_got10k_arg,
    add_model_args,
    add_plain_arg,
    add_progress_arg,
    add_threads_arg,
    check_device,
    got10k_trained,
    resolve_weights,
)
from mixformer.cli.dtype import (
    add_backend_arg,
    add_dtype_arg,
    resolve_backend_arg,
    resolve_dtype_arg,
)
from mixformer.tracking.threads import auto_threads

if TYPE_CHECKING:
    from mixformer.tracking import TrackerConfig

log = logging.getLogger("mixformer.evaluate")


def add_tracker_set_arg(p: argparse.ArgumentParser) -> None:
    """``--set KEY=VALUE`` (repeatable): tracker settings over the preset; see :func:`apply_set`."""
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a tracker setting of the preset, e.g. search_factor=4.5",
    )


def apply_set(config: TrackerConfig, items: list[str]) -> TrackerConfig:
    """``config`` with the ``--set KEY=VALUE`` items applied.

    Each value is parsed as the type of its :class:`~mixformer.tracking.TrackerConfig` field
    (an integer for ``int`` fields, a finite number for ``float`` fields).

    Raises:
        KeyError: an unknown key (naming the closest setting).
        CLIError: not ``KEY=VALUE``, or a value of the wrong type.
    """
    if not items:
        return config
    types = {f.name: f.type for f in dataclasses.fields(config)}
    out: dict[str, object] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise CLIError(f"--set expects KEY=VALUE (e.g. search_factor=4.5), got {item!r}")
        if key not in types:
            config.replace(**{key: None})  # raises KeyError naming the closest setting
        out[key] = _typed_value(key, value.strip(), types[key])
    return config.replace(**out)


def _typed_value(key: str, text: str, kind: object) -> object:
    """``text`` as a value of a field annotated ``kind`` (``"int"``, ``"float"``, ...)."""
    kind = getattr(kind, "__name__", kind)
    if kind == "int":
        try:
            return int(text)
        except ValueError:
            raise CLIError(f"--set {key}: expects an integer, got {text!r}") from None
    if kind == "float":
        try:
            number = float(text)
        except ValueError:
            raise CLIError(f"--set {key}: expects a number, got {text!r}") from None
        if not math.isfinite(number):
            raise CLIError(f"--set {key}: expects a finite number, got {text!r}")
        return number
    if kind == "bool":
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise CLIError(f"--set {key}: expects true or false, got {text!r}")
    return text


def _sequence_names(text: str | None) -> list[str] | None:
    if not text:
        return None
    if Path(text).is_file():
        return [s.strip() for s in Path(text).read_text().splitlines() if s.strip()]
    return [s.strip() for s in text.split(",") if s.strip()]


def _add_dataset_args(p: argparse.ArgumentParser) -> None:
    from mixformer.data.benchmarks import BENCHMARKS

    p.add_argument("--dataset", required=True, choices=sorted(BENCHMARKS), help="benchmark")
    p.add_argument("--root", required=True, type=Path, help="the benchmark's folder")
    p.add_argument(
        "--sequences", default=None, help="only these sequences: comma list or a file of names"
    )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="run a tracker over a benchmark (resumable, parallel, sharded)",
        description="Track every sequence of a benchmark and write one result file per "
        "sequence (reference format) plus settings.json. Finished sequences are skipped, so an "
        "interrupted run continues where it stopped.",
    )
    _add_dataset_args(p)
    add_model_args(p)
    p.add_argument(
        "--results", type=Path, default=None, help="results folder (default results/DATASET/MODEL)"
    )
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    add_threads_arg(p, f"1 per worker with --workers > 1, else {AUTO_THREADS_HELP}")
    add_got10k_arg(p)
    p.add_argument(
        "--shard",
        default=None,
        help="I/N: run the I-th of N shares (0-based); default from torchrun's RANK/WORLD_SIZE",
    )
    add_tracker_set_arg(p)
    add_plain_arg(p)
    add_dtype_arg(p)
    add_backend_arg(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_evaluate)

    p = sub.add_parser(
        "report",
        help="score result folders: table, Markdown, CSV, success/precision plots",
        description="Score one or more trackers. Each RESULTS is a folder of result files, or "
        "NAME=DIR[,DIR...] to name a tracker and merge the shards of a run.",
    )
    p.add_argument("results", nargs="+", help="result folder(s): DIR or NAME=DIR[,DIR...]")
    _add_dataset_args(p)
    p.add_argument("--out", type=Path, default=None, help="folder for report.md/.csv and plots")
    p.add_argument(
        "--allow-missing", action="store_true", help="score the sequences that have results"
    )
    add_allow_incomplete_arg(p, "score")
    p.set_defaults(func=run_report)

    p = sub.add_parser(
        "pack",
        help="zip results for the GOT-10k / TrackingNet evaluation server",
        description="Write the server's submission archive. The results are only read.",
    )
    p.add_argument("server", choices=["got10k", "trackingnet"])
    p.add_argument("results", type=Path, help="results folder of `mixformer evaluate`")
    p.add_argument("out", type=Path, help="archive to write (.zip)")
    p.add_argument(
        "--root",
        type=Path,
        default=None,
        help="the test split's folder: check that each result has one line per frame "
        "(without it, each is checked against its _time.txt)",
    )
    add_allow_incomplete_arg(p, "pack")
    p.set_defaults(func=run_pack)

    p = sub.add_parser(
        "synth",
        help="write a synthetic benchmark (generic layout)",
        description="Procedural sequences: textured targets that move, change scale and aspect, "
        "pass behind occluders, leave and re-enter the view, with distractors.",
    )
    p.add_argument("out", type=Path, help="output folder")
    p.add_argument("--sequences", type=int, default=10, help="number of sequences (10)")
    p.add_argument("--frames", type=int, default=100, help="frames per sequence (100)")
    p.add_argument("--seed", type=int, default=0, help="random seed (0)")
    p.add_argument("--height", type=int, default=240, help="frame height (240)")
    p.add_argument("--width", type=int, default=320, help="frame width (320)")
    add_progress_arg(p)
    p.set_defaults(func=run_synth)


def add_allow_incomplete_arg(p: argparse.ArgumentParser, verb: str) -> None:
    """``--allow-incomplete``: a result file of the wrong length is a warning, not an error."""
    p.add_argument(
        "--allow-incomplete",
        action="store_true",
        help=f"{verb} result files with more or fewer lines than the sequence has frames "
        "(empty, cut short, another dataset's) with a one-line warning each; by default such "
        f"a file is an error and nothing is {verb}{'d' if verb.endswith('e') else 'ed'}",
    )


def _weights_identity(args: argparse.Namespace) -> tuple[str | None, str]:
    """``(weights to load, sha256 or "random")`` resolved like ``load_model_from_args``."""
    from mixformer.evaluation.settings import file_sha256

    path = resolve_weights(args)
    if path is None:
        return None, "random"
    return str(path), file_sha256(path)


def run_evaluate(args: argparse.Namespace) -> int:
    from mixformer.data.benchmarks import get_benchmark, load_benchmark
    from mixformer.evaluation.runner import (
        Interrupted,
        parse_shard,
        result_paths,
        run_benchmark,
        shard_from_env,
        shard_sequences,
    )
    from mixformer.evaluation.settings import RunSettings
    from mixformer.models import list_models
    from mixformer.models.factory import preset_config
    from mixformer.models.weights import read_checkpoint
    from mixformer.tracking import TrackerConfig

    if args.model not in list_models():
        raise CLIError(f"unknown model {args.model!r}; choose from {', '.join(list_models())}")
    if args.workers < 1:
        raise CLIError(f"--workers must be >= 1, got {args.workers}")
    if args.threads is not None and args.threads < 1:
        raise CLIError(f"--threads must be >= 1, got {args.threads}")
    threads = args.threads or (1 if args.workers > 1 else auto_threads())
    args.device = check_device(args.device)
    backend = resolve_backend_arg(args)
    dtype = resolve_dtype_arg(args, backend)
    bench = get_benchmark(args.dataset)
    shard = parse_shard(args.shard) if args.shard else (shard_from_env() or (0, 1))
    device = args.device
    if device == "cuda" and os.environ.get("LOCAL_RANK", "").isdigit():
        device = f"cuda:{os.environ['LOCAL_RANK']}"  # one GPU per torchrun process
    weights, sha = _weights_identity(args)
    # Crop sizes belong to the network the workers will build.
    mc = preset_config(args.model, read_checkpoint(weights) if weights else None)
    config = TrackerConfig.preset(bench.tracker_preset, args.model, mc, got10k_trained(args))
    config = apply_set(config, args.overrides)
    # Read and validate the whole benchmark before tracking anything.
    sequences = load_benchmark(bench.name, args.root, _sequence_names(args.sequences))
    settings = RunSettings(
        bench.name,
        args.model,
        sha,
        dataclasses.asdict(config),
        weights,
        threads=threads,
        fast=not args.plain,
        dtype=dtype,
        backend=backend,
    )
    results = args.results or Path("results") / bench.name / args.model
    print(
        f"evaluate {bench.name}: {len(sequences)} sequences, shard {shard[0]}/{shard[1]}, "
        f"{args.workers} worker(s) x {threads} thread(s), "
        f"{'plain' if args.plain else 'fast'} path in {dtype} on {backend}, results in {results}"
    )
    print("tracker settings: " + ", ".join(f"{k}={v}" for k, v in settings.tracker.items()))
    try:
        summary = run_benchmark(
            sequences,
            bench,
            results,
            settings,
            workers=args.workers,
            shard=shard,
            device=device,
            progress=not args.no_progress,
        )
    except Interrupted as exc:
        mine = shard_sequences(sequences, *shard)
        done = sum(result_paths(results, bench, s.name)[0].is_file() for s in mine)
        msg = (
            f"{done} of {len(mine)} sequences done (kept in {results}); run the same command "
            "again to continue"
        )
        if exc.signum == signal.SIGTERM:
            raise Terminated(msg) from None
        raise KeyboardInterrupt(msg) from None
    fps = summary.frames / summary.seconds if summary.seconds > 0 else 0.0
    print(
        f"done {len(summary.done)}, skipped (already done) {len(summary.skipped)}, "
        f"failed {len(summary.failed)}; {summary.frames} frames in {summary.seconds:.1f} s "
        f"({fps:.1f} fps)"
    )
    if summary.failed:
        print(f"failed sequences (tracebacks in {results / 'errors'}):")
        for name, err in summary.failed.items():
            print(f"  {name}: {err}")
        return 1
    if bench.metric == "server":
        server = "got10k" if bench.name.startswith("got10k") else "trackingnet"
        print(f"submit: mixformer pack {server} {results} {server}_submission.zip")
    elif shard[1] == 1:
        from mixformer.evaluation.report import evaluate_tracker, format_table

        rep = evaluate_tracker(args.model, [results], sequences, bench)
        print(format_table([rep]), end="")
    return 0


def _parse_tracker(spec: str) -> tuple[str, list[Path]]:
    name, sep, dirs = spec.partition("=")
    if sep and not Path(spec).exists():
        folders = [Path(d) for d in dirs.split(",") if d]
        return name, folders
    folders = [Path(d) for d in spec.split(",") if d]
    label = folders[0].name
    if label in ("got10k", "trackingnet"):
        label = folders[0].parent.name
    return label, folders


def run_report(args: argparse.Namespace) -> int:
    from mixformer.data.benchmarks import get_benchmark, load_benchmark
    from mixformer.evaluation.report import evaluate_tracker, format_table, write_report

    bench = get_benchmark(args.dataset)
    sequences = load_benchmark(bench.name, args.root, _sequence_names(args.sequences))
    trackers = [_parse_tracker(s) for s in args.results]
    names = [n for n, _ in trackers]
    if len(set(names)) != len(names):
        raise CLIError(f"tracker names must differ ({', '.join(names)}); use NAME=DIR")
    reports = [
        evaluate_tracker(name, folders, sequences, bench, args.allow_missing, args.allow_incomplete)
        for name, folders in trackers
    ]
    print(f"{bench.name}: {len(sequences)} sequences (scores in %)")
    print(format_table(reports), end="")
    for r in reports:
        if r.missing:
            print(f"{r.name}: {len(r.missing)} sequences without results were skipped")
    if args.out:
        files = write_report(reports, args.out, title=bench.name)
        print("wrote " + ", ".join(str(p) for p in files.values()))
    return 0


def run_pack(args: argparse.Namespace) -> int:
    from mixformer.evaluation.pack import pack_results

    frames = None
    if args.root is not None:
        from mixformer.data.benchmarks import load_benchmark

        dataset = "got10k_test" if args.server == "got10k" else "trackingnet"
        frames = {seq.name: len(seq) for seq in load_benchmark(dataset, args.root)}
    names = pack_results(
        args.server, args.results, args.out, frames=frames, allow_incomplete=args.allow_incomplete
    )
    print(f"wrote {args.out} with {len(names)} sequences")
    return 0


def run_synth(args: argparse.Namespace) -> int:
    from mixformer.datagen.synthetic import write_benchmark

    if args.frames < 1 or args.sequences < 1:
        raise CLIError("--sequences and --frames must be >= 1")
    folders = write_benchmark(
        args.out,
        args.sequences,
        args.frames,
        args.seed,
        height=args.height,
        width=args.width,
        progress=not args.no_progress,
    )
    print(f"wrote {len(folders)} sequences to {args.out} (evaluate with --dataset generic)")
    return 0
