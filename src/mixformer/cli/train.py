"""``mixformer train CONFIG.yaml [key=value ...] [--resume] [--dry-run-data]``.

Single process: ``mixformer train tiny-synthetic-stage1.yaml --output runs/s1``.
Several processes / GPUs / nodes: ``torchrun --nproc_per_node N -m mixformer.cli train ...``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from mixformer.cli import CLIError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train`` subcommand."""
    p = subparsers.add_parser(
        "train",
        help="train a model (stage 1 or 2) from a YAML config",
        description=(
            "Train MixFormer. CONFIG is a YAML file (or the name of a shipped one, e.g. "
            "tiny-synthetic-stage1.yaml, or a preset name); key=value pairs override its keys "
            "(e.g. epochs=2 lr=1e-3 data_roots.lasot=/data/lasot)."
        ),
    )
    p.add_argument("config", help="YAML config file, shipped config name or preset name")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    p.add_argument("--output", "-o", help="run folder (default: runs/<config name>)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint")
    p.add_argument(
        "--dry-run-data",
        nargs="?",
        const=10,
        type=int,
        metavar="BATCHES",
        help="only time the data pipeline over BATCHES batches (default 10) and report samples/s",
    )
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--list", action="store_true", help="list the training presets and exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the ``train`` subcommand."""
    from mixformer.train import (
        NonFiniteLossError,
        Trainer,
        list_train_configs,
        load_train_config,
        measure_data,
        parse_key_values,
    )
    from mixformer.train.distributed import init_distributed, shutdown_distributed

    if args.list:
        print("\n".join(list_train_configs()))
        return 0
    try:
        cfg, name = load_train_config(args.config, parse_key_values(args.overrides))
    except KeyError as exc:
        raise CLIError(exc.args[0]) from exc
    if args.dry_run_data is not None:
        if args.dry_run_data < 1:
            raise CLIError("--dry-run-data needs at least 1 batch")
        r = measure_data(cfg, args.dry_run_data, progress=not args.no_progress)
        print(
            f"data: {int(r['samples'])} samples in {r['seconds']:.1f} s = "
            f"{r['samples_per_s']:.2f} samples/s with num_workers={cfg.num_workers} "
            f"({int(r['corrupt_images'])} unreadable frames skipped)"
        )
        return 0
    out = Path(args.output or Path("runs") / name)
    info = init_distributed(args.device)
    if not info.is_main:
        logging.getLogger().setLevel(logging.WARNING)
    try:
        trainer = Trainer(
            cfg, out, resume=args.resume, info=info, progress=not args.no_progress, name=name
        )
        final = trainer.fit()
    except NonFiniteLossError as exc:
        print(f"mixformer train: stopped: {exc}")
        return 1
    finally:
        shutdown_distributed()
    if final is not None:
        print(f"final weights: {final}")
        print(f"log: {out / 'log.csv'}")
    return 0
