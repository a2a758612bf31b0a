"""``mixformer demo``: generate a video, track it, write an annotated video and a success plot."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from mixformer.cli.common import (
    add_attention_args,
    add_model_args,
    add_plain_arg,
    add_progress_arg,
    add_threads_arg,
    check_attention_every,
    check_device,
    check_model_name,
    load_model_from_args,
    set_threads,
)
from mixformer.cli.dtype import (
    add_backend_arg,
    add_dtype_arg,
    resolve_backend_arg,
    resolve_dtype_arg,
)

log = logging.getLogger("mixformer.demo")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="track a generated video with the shipped model (no data or weights needed)",
        description="Generate a short video (default: an object cut from a real photo, moving, "
        "turning and changing size over another real photo seen by a moving camera; "
        "--scene synthetic: a procedural textured scene with occluders and distractors), track "
        "it, and write the annotated video (green: tracker, white: ground truth), a success plot "
        "against a static-box baseline, and the boxes. Prints the success AUC.",
    )
    p.add_argument(
        "--scene",
        choices=("photos", "synthetic"),
        default="photos",
        help="photos: composited from the real photos shipped with the package (default); "
        "synthetic: the procedural scenes",
    )
    p.add_argument("--out", type=Path, default=Path("mixformer-demo"), help="output folder")
    p.add_argument("--frames", type=int, default=80, help="video length in frames")
    p.add_argument("--seed", type=int, default=7, help="seed of the generated video")
    add_model_args(p)
    add_threads_arg(p)
    add_plain_arg(p)
    add_dtype_arg(p)
    add_backend_arg(p)
    add_attention_args(p)
    add_progress_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    from tqdm import tqdm

    from mixformer.datagen.composite import Corpus, demo_photos, make_composite_scene
    from mixformer.datagen.synthetic import SyntheticSequence, generate_sequence
    from mixformer.evaluation.metrics import auc, success_curve
    from mixformer.evaluation.plots import plot_success
    from mixformer.tracking import Tracker, TrackerConfig
    from mixformer.tracking.attention import write_attention
    from mixformer.tracking.render import VideoWriter, draw_box
    from mixformer.utils import atomic_write_text

    if args.frames < 2:
        raise ValueError(f"--frames must be at least 2, got {args.frames}")
    check_attention_every(args)
    check_model_name(args.model)
    args.device = check_device(args.device)
    backend = resolve_backend_arg(args)
    dtype = resolve_dtype_arg(args, backend)
    if args.scene == "synthetic":
        seq = generate_sequence(args.seed, num_frames=args.frames, name=f"demo-{args.seed}")
    else:
        scene = make_composite_scene(
            Corpus(demo_photos(), "all"),
            args.seed,
            "plain",
            args.frames,
            288,
            384,
            name=f"demo-{args.seed}",
        )
        frames = [scene.render(i) for i in range(len(scene))]
        seq = SyntheticSequence(scene.name, frames, scene.boxes, scene.visible)
    model = load_model_from_args(args)
    threads = set_threads(args.threads, model, backend)  # default: auto_threads
    config = TrackerConfig.for_model(model)
    tracker = Tracker(
        model,
        config,
        device=args.device,
        fast=not args.plain,
        keep_attention=bool(args.attention),
        dtype=dtype,
        backend=backend,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    writer = VideoWriter(args.out / "demo.mp4", fps=15)
    boxes = []
    t0 = time.perf_counter()
    try:
        bar = tqdm(seq.frames, unit="frame", desc="tracking", disable=args.no_progress)
        for i, frame in enumerate(bar):
            res = tracker.init(frame, seq.boxes[0]) if i == 0 else tracker.update(frame)
            boxes.append(res.box)
            if res.attention is not None and i and i % args.attention_every == 0:
                write_attention(args.attention, f"frame{i:06d}", res.attention, frame)
            shown = draw_box(frame, seq.boxes[i], color=(255, 255, 255))
            writer.write(draw_box(shown, res.box, label=f"{res.score:.2f}"))
    except BaseException:
        partial = writer.close(complete=False)
        if partial:
            log.warning("stopped after %d frames; partial video in %s", len(boxes), partial)
        raise
    writer.close()
    fps = (len(seq.frames) - 1) / max(time.perf_counter() - t0, 1e-9)
    pred = np.asarray(boxes, dtype=np.float64)
    static = np.repeat(seq.boxes[:1], len(seq.boxes), axis=0)
    curves = {
        f"MixFormer ({args.model})": success_curve(pred, seq.boxes, seq.visible),
        "static box": success_curve(static, seq.boxes, seq.visible),
    }
    aucs = {k: 100 * auc(v[1]) for k, v in curves.items()}
    plot_success(curves, args.out / "success.png", aucs=aucs, title=f"Demo sequence {seq.name}")
    atomic_write_text(
        args.out / "boxes.txt", "".join(",".join(f"{v:.2f}" for v in b) + "\n" for b in boxes)
    )
    for name, value in aucs.items():
        print(f"AUC {name:28s} {value:5.1f}")
    print(
        f"{len(boxes)} frames at {fps:.1f} FPS ({threads} thread{'s' if threads > 1 else ''}, "
        f"{'' if backend == 'torch' else backend + ' '}{dtype}); "
        f"wrote {args.out}/demo.mp4, success.png, boxes.txt"
        + (f"; attention pictures in {args.attention}" if args.attention else "")
    )
    return 0
