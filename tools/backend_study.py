"""Every backend and precision against torch fp32, per preset: the precision study's numbers.

For each preset and each variant of :data:`mixformer.perf.precision.VARIANTS` (torch bf16, the
exported graphs on OpenVINO fp32 / bf16 / int8 and ONNX Runtime fp32 / int8, ...), runs
:func:`mixformer.perf.precision.precision_study` against the torch fast path in fp32: the same
composited sequences tracked by both, alternating frame by frame, so the time ratio is measured
side by side. The presets with shipped weights (``mixformer-mbv3``, ``mixformer-tiny``) use them
and their tuned tracker settings; the others random weights (seed 0) with the reference settings
(2 online templates, updates every 10 frames), so only their timing and the same-crop agreement
mean something::

    python tools/backend_study.py --out backends.json
    python tools/backend_study.py --presets mixformer-mbv3 --variants openvino-int8,onnxruntime-int8
    python tools/backend_study.py --presets mixformer-mbv3 --variants \
        openvino-fp32,openvino-bf16,openvino-int8,openvino-int8-whole \
        --sequences 8 --frames 80 --seed 777 --size 360x480 --out openvino.json

Results go to ``--out`` (JSON, rewritten atomically after every study; a rerun skips the
studies already there, so a killed run resumes) and a markdown table is printed at the end.
Needs the ``openvino`` and ``export`` extras for their variants.

``--realvideo ROOT`` instead tracks the hand-labelled real-video benchmark (``mixformer data
realvideo ROOT``) with the first preset (its shipped weights and the benchmark's tracker settings,
as ``mixformer evaluate --dataset realvideo`` does) in torch fp32 and in every variant, and
prints AUC / OP50 / OP75 over the labelled frames (integer boxes, as the result files) and the
median time per frame::

    python tools/backend_study.py --realvideo realvideo --presets mixformer-mbv3 --out rv.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from pathlib import Path

import torch

from mixformer import TrackerConfig, build_model
from mixformer.perf.precision import VARIANTS, precision_study
from mixformer.tracking.core import reference_config
from mixformer.utils import atomic_write_text

log = logging.getLogger("backend_study")

SHIPPED = ("mixformer-mbv3", "mixformer-tiny")
PRESETS = (
    "mixformer-mbv3",
    "mixformer-tiny",
    "mixformerv2-s",
    "mixformer-22k",
    "mixformerv2-b",
    "mixvit-b",
    "mixvit-convmae-b",
)
STUDIED = (
    "bf16",
    "openvino-fp32",
    "openvino-bf16",
    "openvino-int8",
    "onnxruntime-fp32",
    "onnxruntime-int8",
)


def _model_and_config(name: str) -> tuple[torch.nn.Module, TrackerConfig]:
    if name in SHIPPED:
        model = build_model(name, weights="default").eval()
        return model, TrackerConfig.for_model(model)
    torch.manual_seed(0)
    model = build_model(name).eval()
    cfg = reference_config(model).replace(online_size=2)
    return model, cfg.replace(update_interval=min(cfg.update_interval, 10))


def _row(r: dict) -> str:
    ratio = r["ms_reference"] / r["ms_dtype"]
    return (
        f"| `{r['model']}` | {r['dtype']} | {r['same_px_mean']:.3f} / {r['same_px_max']:.3f}, "
        f"{r['same_iou_min']:.4f} | {r['flips']} of {r['decisions']} | "
        f"{r['e2e_iou_mean']:.4f} | {r['auc_reference']:.2f} / {r['auc_dtype']:.2f} | "
        f"{r['ms_reference']:.1f} / {r['ms_dtype']:.1f} (x{ratio:.2f}) |"
    )


def table(results: dict[str, dict]) -> str:
    """The markdown table of ``results`` (study key -> report fields), in insertion order."""
    head = (
        "| preset | variant | same crops: deviation mean / max px, min IoU | decision flips | "
        "end to end: mean IoU vs fp32 | AUC fp32 / variant | ms per frame fp32 / variant |\n"
        "|---|---|---|---|---|---|---|"
    )
    return "\n".join([head, *(_row(r) for r in results.values())])


def real_video(preset: str, variants: list[str], root: Path, out: Path) -> str:
    """The ``--realvideo`` table (see the module docstring); results resumable in ``out``."""
    import numpy as np

    from mixformer import Tracker
    from mixformer.data.benchmarks import get_benchmark, load_benchmark
    from mixformer.evaluation.metrics import evaluate_sequence, summarize
    from mixformer.evaluation.runner import track_sequence
    from mixformer.perf.precision import variant_engine

    bench = get_benchmark("realvideo")
    sequences = load_benchmark(bench.name, root)
    model = build_model(preset, weights="default").eval()
    cfg = TrackerConfig.preset(bench.tracker_preset, preset, model.config)
    results: dict[str, dict] = json.loads(out.read_text()) if out.exists() else {}
    for variant in ["fp32", *variants]:
        key = f"{preset}/realvideo/{variant}"
        if key in results:
            continue
        engine = variant_engine(model, variant)
        scores, times = [], []
        for seq in sequences:
            boxes, secs, _ = track_sequence(Tracker(engine, cfg), seq)
            boxes = boxes.astype(np.int64).astype(np.float64)  # as the result files
            scores.append(
                evaluate_sequence(
                    boxes, seq.ground_truth, seq.visible, seq.name, exclude_invalid=True
                )
            )
            times.extend(secs[1:].tolist())
        summary = summarize(scores)
        results[key] = {
            "variant": variant,
            **{k: summary[k] for k in ("AUC", "OP50", "OP75")},
            "ms": 1e3 * float(np.median(times)),
            "per_sequence_auc": {sc.name: 100 * float(np.mean(sc.success)) for sc in scores},
        }
        atomic_write_text(out, json.dumps(results, indent=1))
        log.info("%s: %s", key, results[key])
    rows = [
        f"| {r['variant']} | {r['AUC']:.2f} | {r['OP50']:.2f} | {r['OP75']:.2f} | {r['ms']:.1f} |"
        for k, r in results.items()
        if k.startswith(f"{preset}/realvideo/")
    ]
    head = "| variant | AUC | OP50 | OP75 | ms per frame |\n|---|---|---|---|---|"
    return "\n".join([head, *rows])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default=",".join(PRESETS), help="comma-separated model names")
    ap.add_argument("--variants", default=",".join(STUDIED), help="comma-separated variants")
    ap.add_argument("--sequences", type=int, default=4, help="composited sequences per study")
    ap.add_argument("--frames", type=int, default=30, help="frames per sequence")
    ap.add_argument(
        "--large-sequences", type=int, default=2, help="sequences, random-weight presets but V2-S"
    )
    ap.add_argument(
        "--large-frames", type=int, default=12, help="frames, random-weight presets but V2-S"
    )
    ap.add_argument("--seed", type=int, default=0, help="first composited sequence's seed")
    ap.add_argument("--size", default="480x640", help="frame HEIGHTxWIDTH")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("backend_study.json"))
    ap.add_argument("--realvideo", type=Path, help="real-video benchmark folder (see above)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:  # NNCF sets its logger to INFO when imported: import it first, then quieten it
        import nncf  # noqa: F401
    except ImportError:
        pass
    for noisy in ("nncf", "root"):  # root: onnxruntime.quantization's advice
        logging.getLogger(noisy).setLevel(logging.ERROR)
    log.setLevel(logging.INFO)
    torch.set_num_threads(args.threads)
    variants = [v for v in args.variants.split(",") if v]
    try:
        size = tuple(int(v) for v in args.size.lower().split("x"))
        assert len(size) == 2 and min(size) > 0
    except (ValueError, AssertionError):
        raise SystemExit(f"--size must be HEIGHTxWIDTH, got {args.size!r}") from None
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant(s) {', '.join(unknown)}; use {', '.join(VARIANTS)}")
    if args.realvideo is not None:
        print(real_video(args.presets.split(",")[0], variants, args.realvideo, args.out))
        return
    results: dict[str, dict] = json.loads(args.out.read_text()) if args.out.exists() else {}
    jobs = [(p, v) for p in args.presets.split(",") if p for v in variants]
    todo = [(p, v) for p, v in jobs if f"{p}/{v}" not in results]
    log.info("%d studies, %d done before", len(jobs), len(jobs) - len(todo))
    t0 = time.perf_counter()
    for i, (preset, variant) in enumerate(todo):
        model, cfg = _model_and_config(preset)
        large = preset not in SHIPPED and preset not in ("mixformerv2-s",)
        report = precision_study(
            model,
            variant,
            num_sequences=args.large_sequences if large else args.sequences,
            num_frames=args.large_frames if large else args.frames,
            seed=args.seed,
            tracker_config=cfg,
            scene="photos",
            size=size,
            progress=False,
        )
        results[f"{preset}/{variant}"] = dataclasses.asdict(report)
        atomic_write_text(args.out, json.dumps(results, indent=1))
        done = time.perf_counter() - t0
        eta = done / (i + 1) * (len(todo) - i - 1)
        log.info("%s", _row(results[f"{preset}/{variant}"]))
        log.info("%d/%d studies, %.0f s, ETA %.0f s", i + 1, len(todo), done, eta)
    print(table({f"{p}/{v}": results[f"{p}/{v}"] for p, v in jobs}))


if __name__ == "__main__":
    main()
