"""``mixformer train CONFIG.yaml [key=value ...] [--resume] [--dry-run-data]``.

Single process: ``mixformer train tiny-synthetic-stage1.yaml --output runs/s1``.
Several processes / GPUs / nodes: ``torchrun --nproc_per_node N -m mixformer.cli train ...``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from mixformer.cli import CLIError
from mixformer.cli.evaluate import add_tracker_set_arg, apply_set
from mixformer.models.config import DEFAULT_MODEL


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
    p.add_argument("config", nargs="?", help="YAML config file, shipped config name or preset name")
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

    q = subparsers.add_parser(
        "train-eval",
        help="score trained weights on held-out data: synthetic (AUC vs static box, SPM "
        "accuracy) or benchmark folders (--bench: AUC, static box, score AUROC)",
        description=(
            "Track synthetic sequences generated from SEED (as `mixformer synth --seed SEED` "
            "writes them) and report the success AUC next to a static-box baseline (the first "
            "box repeated), plus the score module's accuracy on positive/negative samples."
        ),
    )
    q.add_argument("weights", help="weights file, or 'default' for the shipped weights")
    q.add_argument("--model", default=DEFAULT_MODEL, help="model preset (for --weights default)")
    q.add_argument("--seed", type=int, default=12345, help="held-out seed (12345)")
    q.add_argument("--sequences", type=int, default=30, help="number of sequences (30)")
    q.add_argument("--frames", type=int, default=100, help="frames per sequence (100)")
    q.add_argument("--score-samples", type=int, default=200, help="SPM samples (200)")
    q.add_argument("--no-progress", action="store_true", help="hide progress bars")
    q.add_argument(
        "--bench",
        type=Path,
        nargs="+",
        default=None,
        metavar="DIR",
        help="instead of synthetic data, track these benchmark folders (generic or OTB layout, "
        "e.g. from 'mixformer data bench') and report AUC, OP50, precision, the static box and "
        "the score's AUROC for IoU > 0.5",
    )
    q.add_argument(
        "--results",
        type=Path,
        default=None,
        help="with --bench: write <seq>.txt result files under RESULTS/<bench name>/",
    )
    q.add_argument(
        "--labelled-only",
        action="store_true",
        help="with --bench: score only frames that have a ground-truth box (sparsely labelled "
        "benchmarks such as 'mixformer data realvideo'; otherwise unlabelled frames are misses)",
    )
    q.add_argument(
        "--per-sequence",
        action="store_true",
        help="with --bench: also print each sequence's success AUC under its benchmark's row",
    )
    q.add_argument(
        "--calibrate-score",
        type=Path,
        default=None,
        metavar="OUT",
        help="with --bench: fit Platt scaling of the score (P(IoU > 0.5)) on the tracked frames "
        "of all the benchmarks, fold it into the score module's last layer and write the "
        "weights to OUT (fit on validation data, e.g. the val composites)",
    )
    q.add_argument(
        "--calibration-prior",
        choices=("balanced", "observed"),  # heldout.CALIBRATION_PRIORS, not imported at start-up
        default="balanced",
        help="with --calibrate-score: balanced weighs frames on and off the target as equal "
        "halves, so a score below 0.5 means 'more likely lost than not' whatever the "
        "benchmark's proportion; observed: plain Platt scaling (default: balanced)",
    )
    add_tracker_set_arg(q)
    q.set_defaults(func=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    """Run the ``train-eval`` subcommand."""
    import torch

    from mixformer.models import build_model
    from mixformer.tracking import TrackerConfig
    from mixformer.train.heldout import heldout_report

    if args.sequences < 1 or args.frames < 2:
        raise CLIError("--sequences must be >= 1 and --frames >= 2")
    if args.calibrate_score and not args.bench:
        raise CLIError("--calibrate-score needs --bench (the frames it is fitted on)")
    torch.set_num_threads(1)
    name = args.model if args.weights == "default" else None
    model = build_model(name, weights=args.weights)
    preset = model.name or args.model
    tracker = apply_set(TrackerConfig.for_model(model), args.overrides)
    if args.bench:
        from mixformer.train.heldout import benchmark_report

        print(
            f"{'benchmark':24s} {'AUC':>6s} {'OP50':>6s} {'Prec':>6s} {'static':>6s} "
            f"{'AUROC':>6s} {'on':>5s} {'off':>5s} {'off<.5':>6s} {'fps':>6s}"
        )
        reports = []
        for root in args.bench:
            out = args.results / root.name if args.results else None
            b = benchmark_report(
                model,
                root,
                tracker,
                out,
                progress=not args.no_progress,
                labelled_only=args.labelled_only,
            )
            print(
                f"{root.name:24s} {b.auc:6.1f} {b.op50:6.1f} {b.precision:6.1f} "
                f"{b.static_auc:6.1f} {b.score_auroc:6.3f} {b.on_target_score:5.2f} "
                f"{b.off_target_score:5.2f} {b.off_target_low:6.2f} {b.fps:6.1f}"
            )
            reports.append(b)
            if args.per_sequence:
                for seq_name, auc in b.per_sequence.items():
                    print(f"  {seq_name:22s} {auc:6.1f}")
        if args.calibrate_score:
            _calibrate(model, reports, args.calibrate_score, args.calibration_prior)
        return 0
    r = heldout_report(
        model,
        preset,
        args.seed,
        args.sequences,
        args.frames,
        args.score_samples,
        progress=not args.no_progress,
        tracker=tracker,
    )
    print(f"held-out synthetic benchmark: seed {args.seed}, {r.sequences} x {args.frames} frames")
    print(f"AUC tracker    {r.tracker_auc:5.1f}   (OP50 {r.tracker_op50:5.1f})")
    print(f"AUC static box {r.static_auc:5.1f}")
    if r.score_accuracy is not None:
        print(
            f"score module accuracy {r.score_accuracy:5.1f} on {r.score_samples} samples "
            f"(positives {r.positive_accuracy:5.1f}, negatives {r.negative_accuracy:5.1f})"
        )
    return 0


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
    if not args.config:
        raise CLIError("a CONFIG is required (see --list for the shipped presets)")
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


def _calibrate(model: object, reports: list, out: Path, prior: str) -> None:
    """Fit the score calibration on ``reports``' frames, fold it in, write the weights."""
    import numpy as np

    from mixformer.models import save_weights
    from mixformer.train.heldout import (
        calibrate_score,
        calibrated_scores,
        fit_score_calibration,
    )

    scores = np.concatenate([r.scores for r in reports])
    hits = np.concatenate([r.hits for r in reports])
    try:
        a, b = fit_score_calibration(scores, hits, prior)
        calibrate_score(model, a, b)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    s, c = scores, calibrated_scores(scores, a, b)
    try:
        save_weights(model, out)
    except OSError as exc:
        raise CLIError(f"cannot write {out}: {exc}") from None
    print(
        f"score calibration ({prior} prior) a={a:.3f} b={b:+.3f} on {len(s)} frames: "
        f"mean score on/off the target {s[hits].mean():.2f}/{s[~hits].mean():.2f} -> "
        f"{c[hits].mean():.2f}/{c[~hits].mean():.2f}; off-target frames below 0.5: "
        f"{(s[~hits] < 0.5).mean():.2f} -> "
        f"{(c[~hits] < 0.5).mean():.2f}; written to {out}"
    )
