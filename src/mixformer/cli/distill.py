"""``mixformer distill --teacher FILE|default --data ROOTS --output DIR [--student STEM]``.

Chains the four MixFormerV2 distillation runs of a preset family (SPEC-DISTILL 1):
``STEM-stage1`` (dense-to-sparse from the teacher), ``STEM-stage2`` (layer removal; its final
weights are the converted shallower student), ``STEM-stage2-finetune`` and ``STEM-score`` (the
score head). Each run starts from the previous run's ``model_final.pth`` and writes into
``DIR/<run>``; the teacher of runs 2 and 3 is the stage-1 student. ``--resume`` continues an
interrupted chain (finished runs are skipped). The final student is ``DIR/student.pth``, which
``mixformer track --model <the student's preset> --weights DIR/student.pth`` loads.
"""

from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path
from typing import Any

from mixformer.cli import CLIError

log = logging.getLogger(__name__)

DEFAULT_STUDENT = "mbv3-distill-v2"
RUNS = ("stage1", "stage2", "stage2-finetune", "score")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``distill`` subcommand."""
    p = subparsers.add_parser(
        "distill",
        help="distil a corner-head tracker into a MixFormerV2 student (4 chained runs)",
        description=(
            "MixFormerV2 distillation: dense-to-sparse from the teacher, progressive removal of "
            "student blocks, fine-tuning of the shallower student, then its score head. "
            "key=value pairs override the keys of every run (e.g. epochs=2 batch_size=8)."
        ),
    )
    p.add_argument(
        "--teacher",
        required=True,
        help="teacher weights file, or 'default' for the shipped weights of --teacher-model",
    )
    p.add_argument(
        "--teacher-model",
        default=None,
        help="the teacher's model preset (default: the recipe's, or the one the file records)",
    )
    p.add_argument(
        "--data",
        nargs="+",
        default=["synthetic"],
        metavar="ROOT",
        help="training data: 'synthetic' (generated on the fly), a corpus folder of "
        "`mixformer data corpus` (composites), or NAME=PATH dataset roots (lasot=/data/lasot)",
    )
    p.add_argument("--output", "-o", required=True, help="output folder (one subfolder per run)")
    p.add_argument(
        "--student",
        default=DEFAULT_STUDENT,
        help="recipe: the stem of the STEM-stage1/-stage2/-stage2-finetune/-score presets "
        "(mbv3-distill-v2, mixformerv2-b-distill, mixformerv2-s-distill)",
    )
    p.add_argument("overrides", nargs="*", metavar="key=value", help="overrides for every run")
    p.add_argument("--resume", action="store_true", help="continue an interrupted chain")
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.set_defaults(func=run)


def _data_overrides(items: list[str]) -> dict[str, Any]:
    """``--data`` values as config keys (datasets, data_roots)."""
    roots: dict[str, str] = {}
    datasets: list[str] = []
    for item in items:
        if item == "synthetic":
            datasets.append("synthetic")
        elif "=" in item:
            name, path = item.split("=", 1)
            if not Path(path).exists():
                raise CLIError(f"data root {path} not found")
            roots[name] = path
        else:
            if not Path(item).is_dir():
                raise CLIError(f"data folder {item} not found")
            roots["corpus"] = item
    out: dict[str, Any] = {}
    if roots:
        out["data_roots"] = roots
    if datasets and not roots:
        out.update(datasets=["synthetic"], dataset_ratio=[1.0], val_datasets=["synthetic"])
    return out


def chain_configs(
    stem: str,
    teacher: str,
    teacher_model: str | None,
    data: list[str],
    output: Path,
    overrides: dict[str, Any],
) -> list[tuple[str, Any, Path]]:
    """``(run name, TrainConfig, run folder)`` of the four runs, chained through ``output``."""
    from mixformer.train import apply_overrides, get_train_config, list_train_configs

    names = [f"{stem}-{r}" for r in RUNS]
    missing = [n for n in names if n not in list_train_configs()]
    if missing:
        stems = sorted(
            {
                n[: -len("-stage1")]
                for n in list_train_configs()
                if "distill" in n and n.endswith("-stage1")
            }
        )
        raise CLIError(f"no distillation recipe {stem!r} (recipes: {', '.join(stems)})")
    common = {**_data_overrides(data), **overrides}
    dirs = [output / r for r in RUNS]
    finals = [d / "model_final.pth" for d in dirs]
    out = []
    for i, (name, folder) in enumerate(zip(names, dirs, strict=True)):
        try:
            cfg = apply_overrides(get_train_config(name), common)
        except KeyError as exc:
            raise CLIError(exc.args[0]) from exc
        if i == 0:
            chain: dict[str, Any] = {"teacher_checkpoint": teacher}
            if teacher_model is not None:
                chain["teacher_model"] = teacher_model
        elif i in (1, 2):
            chain = {
                "init_checkpoint": str(finals[i - 1]),
                "teacher_checkpoint": str(finals[0]),
                "teacher_model": "",
                "teacher_overrides": {},
            }
        else:
            chain = {"stage1_checkpoint": str(finals[2])}
        out.append((name, cfg.replace(**chain), folder))
    return out


def _recorded_model(path: str) -> str | None:
    """``""`` (use the recorded config) when ``path`` is a file of this project that records
    its model config, else None (the recipe's teacher preset)."""
    from mixformer.models.weights import CheckpointError, read_checkpoint

    if not Path(path).is_file():
        raise CLIError(f"teacher file {path} not found")
    try:
        ckpt = read_checkpoint(path)
    except CheckpointError as exc:
        raise CLIError(f"teacher {path}: {exc.args[0] if exc.args else exc}") from exc
    return "" if ckpt.config is not None else None


def _check_teacher(teacher: str, teacher_model: str) -> Any:
    """One-line errors for a teacher that cannot work, before anything trains; returns it."""
    from mixformer.models import MixFormerV2, build_model
    from mixformer.models.weights import CheckpointError

    if teacher != "default" and not Path(teacher).is_file():
        raise CLIError(f"teacher file {teacher} not found")
    try:
        model = build_model(teacher_model or None, weights=teacher)
    except (CheckpointError, KeyError) as exc:
        msg = exc.args[0] if exc.args else str(exc)
        raise CLIError(f"teacher {teacher}: {msg}") from exc
    if isinstance(model, MixFormerV2) or not hasattr(model.box_head, "score_maps"):
        raise CLIError(
            f"teacher {teacher} ({model.name or model.config.family}) has no corner head: "
            "the dense-to-sparse stage needs a corner-head teacher (CvT, MobileNetV3, MixViT)"
        )
    return model


def _fit_to_teacher(name: str, cfg: Any, teacher: Any) -> Any:
    """Run 1 adapted to a teacher other than the recipe's: without its feature pairs when the
    teacher cannot give them (a CvT teacher, or blocks of another width than the student's),
    and from the student's own initialisation when it shares no tensor with the teacher."""
    import torch

    from mixformer.models import build_model
    from mixformer.train.distill import check_feature_layers, shared_tensors

    with torch.device("meta"):  # names and shapes only
        student = build_model(cfg.model, **cfg.model_overrides)
    if cfg.distill_layers_teacher:
        try:
            check_feature_layers(teacher, student, cfg.distill_layers_teacher)
        except ValueError as exc:
            log.info("%s: no feature term (%s)", name, exc)
            cfg = cfg.replace(distill_layers_student=(), distill_layers_teacher=())
    if cfg.init_from_teacher:
        if not shared_tensors(student, teacher):
            log.info("%s: the student starts from its own initialisation (it shares no tensor "
                     "with the teacher)", name)  # fmt: skip
            cfg = cfg.replace(init_from_teacher=False)
    return cfg


def run(args: argparse.Namespace) -> int:
    """Run the ``distill`` subcommand."""
    from mixformer.train import NonFiniteLossError, Trainer, parse_key_values
    from mixformer.train.checkpoint import list_checkpoints
    from mixformer.train.distributed import init_distributed, shutdown_distributed

    output = Path(args.output)
    teacher_model = args.teacher_model
    if teacher_model is None and args.teacher != "default":
        teacher_model = _recorded_model(args.teacher)
    runs = chain_configs(
        args.student,
        args.teacher,
        teacher_model,
        args.data,
        output,
        parse_key_values(args.overrides),
    )
    name, first, folder = runs[0]
    teacher = _check_teacher(args.teacher, first.teacher_model)
    runs[0] = (name, _fit_to_teacher(name, first, teacher), folder)
    del teacher
    if not args.resume and any(list_checkpoints(folder) for _, _, folder in runs):
        raise CLIError(f"{output} already holds runs; pass --resume to continue them")
    info = init_distributed(args.device)
    if not info.is_main:
        logging.getLogger().setLevel(logging.WARNING)
    try:
        for name, cfg, folder in runs:
            final = folder / "model_final.pth"
            if args.resume and final.is_file():
                log.info("%s: done already (%s)", name, final)
                continue
            log.info("%s -> %s", name, folder)
            trainer = Trainer(
                cfg,
                folder,
                resume=args.resume,
                info=info,
                progress=not args.no_progress,
                name=name,
            )
            trainer.fit()
    except NonFiniteLossError as exc:
        print(f"mixformer distill: stopped: {exc}")
        return 1
    finally:
        shutdown_distributed()
    if not info.is_main:
        return 0
    student = output / "student.pth"
    shutil.copyfile(runs[-1][2] / "model_final.pth", student)
    preset = runs[-1][1].model
    print(f"student: {student}")
    print(f"track with: mixformer track --model {preset} --weights {student} VIDEO")
    return 0
