"""``mixformer track``: track an object through a video file or a folder of frames."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from mixformer.cli import CLIError

log = logging.getLogger("mixformer.track")


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
    p.add_argument(
        "--model", default="mixformer-tiny", help="model preset (see `mixformer models`)"
    )
    p.add_argument(
        "--weights",
        default=None,
        help="weights file (release .pth.tar, this project's checkpoint); default: the weights "
        "shipped for the preset, else random weights (with a warning)",
    )
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda:0")


def add_plain_arg(p: argparse.ArgumentParser) -> None:
    """``--plain``: the reference arithmetic instead of the fast path (boxes agree to ~1e-4 px)."""
    p.add_argument(
        "--plain",
        action="store_true",
        help="run the plain reference network instead of the fast path "
        "(folded BN, fused attention; boxes agree to about 1e-4 px)",
    )


def resolve_weights(args: argparse.Namespace) -> Path | None:
    """The weights file the :func:`add_model_args` options name, or None for random weights.

    ``--weights FILE`` wins (``--weights default``: the shipped weights); without it the preset's
    shipped weights are used if there are any; otherwise a loud warning says they are random.

    Raises:
        CLIError: the named file does not exist.
    """
    from mixformer.models.factory import default_weights_path

    if args.weights is None:
        shipped = default_weights_path(args.model)
        if shipped is None:
            log.warning(
                "!!! NO WEIGHTS: %s has random weights, so the results are meaningless. "
                "Pass --weights FILE (e.g. a released mixformer_online_22k.pth.tar). !!!",
                args.model,
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
    """Build the model named by :func:`add_model_args` options (see :func:`resolve_weights`)."""
    from mixformer.models import build_model

    return build_model(args.model, weights=resolve_weights(args))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "track",
        help="track an object in a video or frame folder",
        description="Track the object in BOX through SOURCE. Writes one x,y,w,h line per frame "
        "and, with --output, an annotated video. Give --box several times to track several "
        "objects in one batched network call per frame; the lines are then "
        "frame,target,x,y,w,h (frame and target counted from 0, target in --box order).",
    )
    p.add_argument("source", help="video file or folder of frames (sorted by number)")
    p.add_argument(
        "--box",
        type=parse_box,
        required=True,
        action="append",
        help="initial box x,y,w,h in pixels; repeat for several objects",
    )
    add_model_args(p)
    p.add_argument("--output", type=Path, default=None, help="annotated video to write (.mp4)")
    p.add_argument("--boxes", type=Path, default=None, help="result file (default: stdout)")
    p.add_argument(
        "--preset", default="default", help="tracker settings preset (e.g. lasot, got10k_test)"
    )
    add_plain_arg(p)
    p.set_defaults(func=run)


def _stepper(args: argparse.Namespace, model):  # noqa: ANN001, ANN202 - lazy types
    """``step(i, frame) -> [(target, box, score)]`` with a Tracker, or a MultiTracker for K > 1."""
    from mixformer.tracking import MultiTracker, Tracker, TrackerConfig

    config = TrackerConfig.for_model(model, args.preset)
    if len(args.box) == 1:
        single = Tracker(model, config, args.device, fast=not args.plain)

        def step(i: int, frame):  # noqa: ANN001, ANN202
            res = single.init(frame, args.box[0]) if i == 0 else single.update(frame)
            return [(0, res.box, res.score)]

        return step
    multi = MultiTracker(model, config, args.device, fast=not args.plain)

    def step(i: int, frame):  # noqa: ANN001, ANN202
        if i == 0:
            return [(multi.add(frame, box), tuple(box), 1.0) for box in args.box]
        return [(t, r.box, r.score) for t, r in multi.update(frame).items()]

    return step


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from mixformer.data.frames import FrameSource
    from mixformer.tracking.render import PALETTE, VideoWriter, draw_box
    from mixformer.utils import atomic_write_text

    source = FrameSource(args.source)
    model = load_model_from_args(args)
    step = _stepper(args, model)
    several = len(args.box) > 1
    writer = VideoWriter(args.output, source.fps) if args.output else None
    lines: list[str] = []
    frames = 0
    bar = tqdm(total=source.num_frames, unit="frame", desc="tracking", dynamic_ncols=True)
    try:
        for i, frame in enumerate(source):
            for t, box, score in step(i, frame):
                prefix = f"{i},{t}," if several else ""
                lines.append(prefix + ",".join(f"{v:.2f}" for v in box))
                if writer:
                    label = f"{t}: {score:.2f}" if several else f"{score:.2f}"
                    frame = draw_box(frame, box, PALETTE[t % len(PALETTE)], label)
            if writer:
                writer.write(frame)
            frames += 1
            bar.update(1)
    except Exception:
        if args.boxes and lines:  # keep the frames already tracked
            atomic_write_text(args.boxes, "\n".join(lines) + "\n")
            log.error("stopped after %d frames; their boxes are in %s", frames, args.boxes)
        raise
    finally:
        bar.close()
        if writer:
            writer.close()
    if not lines:
        raise CLIError(f"no frames in {args.source}")
    text = "\n".join(lines) + "\n"
    if args.boxes:
        atomic_write_text(args.boxes, text)
        log.info("wrote %d frames x %d targets to %s", frames, len(args.box), args.boxes)
    else:
        print(text, end="")
    if args.output:
        log.info("wrote annotated video to %s", args.output)
    return 0
