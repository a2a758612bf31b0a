"""``mixformer track``: track an object through a video file or a folder of frames."""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from mixformer.cli import CLIError
from mixformer.cli.common import (
    add_attention_args,
    add_got10k_arg,
    add_model_args,
    add_plain_arg,
    add_progress_arg,
    add_threads_arg,
    check_attention_every,
    check_device,
    check_model_name,
    got10k_trained,
    load_model_from_args,
    parse_box,
    set_threads,
)
from mixformer.cli.dtype import (
    add_backend_arg,
    add_dtype_arg,
    resolve_backend_arg,
    resolve_dtype_arg,
)

if TYPE_CHECKING:
    from mixformer.tracking.render import VideoWriter

log = logging.getLogger("mixformer.track")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "track",
        help="track an object in a video or frame folder",
        description="Track the object in BOX through SOURCE. Writes one x,y,w,h line per frame "
        "and, with --out, an annotated video. Give --box several times to track several "
        "objects in one batched network call per frame; the lines are then "
        "frame,target,x,y,w,h (frame and target counted from 0, target in --box order). "
        "Boxes are written as frames finish (to BOXES.XXXXXXXX.partial, renamed to BOXES at "
        "the end, so even a killed run leaves them). Ctrl-C or SIGTERM keeps the frames "
        "tracked so far: their boxes are written and the video is finished as "
        "NAME.partial.mp4. A box may start with a minus sign (--box -5,-5,40,40).",
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
    p.add_argument(
        "--out",
        "--output",
        dest="output",
        type=Path,
        default=None,
        help="annotated video to write (.mp4)",
    )
    p.add_argument("--boxes", type=Path, default=None, help="result file (default: stdout)")
    p.add_argument(
        "--preset", default="default", help="tracker settings preset (e.g. lasot, got10k_test)"
    )
    add_got10k_arg(p)
    add_threads_arg(p)
    add_plain_arg(p)
    add_dtype_arg(p)
    add_backend_arg(p)
    add_attention_args(p)
    add_progress_arg(p)
    p.set_defaults(func=run)


def _video(args: argparse.Namespace, model, frames):  # noqa: ANN001, ANN202 - lazy types
    """The :func:`~mixformer.track_video` loop of the command's boxes and settings."""
    from mixformer.tracking import TrackerConfig, track_video

    config = TrackerConfig.for_model(model, args.preset, got10k_trained(args))
    backend = args.backend  # resolved by _validate
    return track_video(
        frames,
        args.box,
        model,
        config=config,
        device=args.device,
        fast=not args.plain,
        keep_attention=args.attention is not None,
        dtype=resolve_dtype_arg(args, backend),
        backend=backend,
    )


def _same_file(a: Path, b: Path) -> bool:
    """True when ``a`` and ``b`` name the same file (or would, once ``a`` is created)."""
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
        return a.resolve() == b.resolve()
    except OSError:
        return False


def _check_output_paths(args: argparse.Namespace) -> None:
    """Refuse ``--out`` / ``--boxes`` that would overwrite the source, each other or a folder."""
    source = Path(args.source)
    named = [("--out", args.output), ("--boxes", args.boxes)]
    for flag, path in named:
        if path is None:
            continue
        if _same_file(path, source):
            raise CLIError(f"{flag} {path} is the source {args.source}; write to another file")
        if path.is_dir():
            raise CLIError(f"{flag} {path} is a folder; give a file name")
    if args.output and args.boxes and _same_file(args.output, args.boxes):
        raise CLIError(f"--out and --boxes are the same file {args.boxes}")


def _validate(args: argparse.Namespace):  # noqa: ANN202 - (FrameSource, frames iterator)
    """Check everything the user gave before a model is built or a bar is drawn.

    Returns:
        ``(source, frames)``: the frame source and an iterator over all its frames.
    Raises:
        CLIError / ValueError / KeyError: unknown model or preset, bad device or threads,
            unreadable source, or a box that does not fit the first frame.
    """
    from mixformer.data.frames import FrameSource
    from mixformer.tracking import TrackerConfig
    from mixformer.tracking.tracker import check_box

    check_model_name(args.model)
    args.device = check_device(args.device)
    check_attention_every(args)
    args.backend = resolve_backend_arg(args)
    preset = TrackerConfig.preset(args.preset, args.model, got10k_trained=got10k_trained(args))
    _check_output_paths(args)
    source = FrameSource(args.source)
    frames = iter(source)
    first = next(frames, None)
    if first is None:
        raise CLIError(f"no frames in {args.source}")
    h, w = first.shape[:2]
    factor = max(preset.search_factor, preset.template_factor)
    for k, box in enumerate(args.box):
        try:
            check_box(box, h, w, factor)
        except ValueError as exc:
            which = f"--box {k + 1}" if len(args.box) > 1 else "--box"
            raise CLIError(f"{which}: {exc}") from exc
    return source, itertools.chain([first], frames)


class _BoxSink:
    """Box lines written as frames finish, so a killed run keeps them.

    With a path the lines go to ``NAME.XXXXXXXX.partial`` beside it (flushed per frame), which
    :meth:`finish` renames to ``NAME``; a run killed outright (SIGKILL) leaves that file. Without
    a path they go to stdout, flushed per frame when it is a pipe or file (on a terminal they are
    printed at the end, after the progress bar).
    """

    def __init__(self, path: Path | None) -> None:
        import tempfile

        from mixformer.utils import default_file_mode

        self.path = path
        self.lines = 0
        self.tmp: Path | None = None
        self._held: list[str] | None = None
        if path is None:
            self._f = sys.stdout
            if sys.stdout.isatty():
                self._held = []
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f"{path.name}.", suffix=".partial")
        self.tmp = Path(name)
        os.fchmod(fd, default_file_mode())
        self._f = os.fdopen(fd, "w")

    def write(self, lines: list[str]) -> None:
        """Append one frame's lines (one write, then flush: whole frames only)."""
        text = "".join(line + "\n" for line in lines)
        if self._held is not None:
            self._held.append(text)
        else:
            self._f.write(text)
            self._f.flush()
        self.lines += len(lines)

    def finish(self) -> Path | None:
        """Close; rename the file to its name (removed instead when it holds no line).

        Returns:
            The boxes file, or None for stdout or when no line was written.
        """
        if self.path is None:
            if self._held:
                self._f.write("".join(self._held))
                self._held = []
            self._f.flush()
            return None
        if self.tmp is None:  # finished already
            return self.path if self.lines else None
        if not self._f.closed:
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()
        if not self.lines:
            self.tmp.unlink(missing_ok=True)
        else:
            os.replace(self.tmp, self.path)
        self.tmp = None
        return self.path if self.lines else None


def _on_sigterm(signum: int, frame: object) -> None:
    from mixformer.cli import Terminated

    raise Terminated()


def run(args: argparse.Namespace) -> int:
    import signal
    import threading
    import time

    from tqdm import tqdm

    from mixformer.tracking.attention import write_attention
    from mixformer.tracking.render import PALETTE, VideoWriter, draw_box

    source, frames = _validate(args)
    first = next(frames)
    frames = itertools.chain([first], frames)
    # Open the outputs before the model loads: an unwritable folder or a format without an
    # encoder fails now, not after the work.
    writer = VideoWriter(args.output, source.fps) if args.output else None
    if writer:
        writer.open(first.shape[1], first.shape[0])
    try:
        sink = _BoxSink(args.boxes)
    except BaseException:
        if writer:
            writer.discard()
        raise
    main_thread = threading.current_thread() is threading.main_thread()
    old_term = signal.getsignal(signal.SIGTERM) if main_thread else None
    if main_thread:
        signal.signal(signal.SIGTERM, _on_sigterm)
    count = 0
    bar = None
    try:
        model = load_model_from_args(args)
        set_threads(args.threads, model, args.backend)
        video = _video(args, model, frames)
        several = len(args.box) > 1
        bar = tqdm(
            total=source.num_frames,
            unit="frame",
            desc="tracking",
            dynamic_ncols=True,
            disable=args.no_progress,
        )
        t0 = time.perf_counter()
        for tracked in video:
            i, frame = tracked.index, tracked.image
            new = []
            shown = frame
            for t, res in tracked.results.items():
                prefix = f"{i},{t}," if several else ""
                new.append(prefix + ",".join(f"{v:.2f}" for v in res.box))
                if res.attention is not None and i and i % args.attention_every == 0:
                    stem = f"frame{i:06d}" + (f"_target{t}" if several else "")
                    write_attention(args.attention, stem, res.attention, frame)
                if writer:
                    label = f"{t}: {res.score:.2f}" if several else f"{res.score:.2f}"
                    shown = draw_box(shown, res.box, PALETTE[t % len(PALETTE)], label)
            sink.write(new)  # whole frames only
            count += 1
            if writer:
                writer.write(shown)
            bar.update(1)
        seconds = time.perf_counter() - t0
        bar.close()
        boxes = sink.finish()
        if writer:
            writer.close()
    except BaseException as exc:  # Ctrl-C and SIGTERM too: keep the frames already tracked
        if bar is not None:
            bar.close()
        _keep_partial(args, writer, sink, count, exc)
        raise
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if old_term is None else old_term)
    if source.num_frames and count < source.num_frames and Path(args.source).is_file():
        log.warning(
            "%s ended after %d of the %d frames its header lists (truncated or corrupt?)",
            args.source,
            count,
            source.num_frames,
        )
    fps = count / seconds if seconds > 0 else 0.0
    log.info("tracked %d frames in %.1f s (%.1f FPS)", count, seconds, fps)
    if boxes:
        log.info("wrote %d frames x %d targets to %s", count, len(args.box), boxes)
    if args.output:
        log.info("wrote annotated video to %s", args.output)
    if args.attention:
        log.info("wrote attention pictures to %s", args.attention)
    return 0


def _keep_partial(
    args: argparse.Namespace,
    writer: VideoWriter | None,
    sink: _BoxSink,
    count: int,
    exc: BaseException,
) -> None:
    """After an error, Ctrl-C or SIGTERM: keep the finished frames' boxes, mark the video
    partial (a video the encoder could not finish is removed)."""
    from mixformer.cli import Terminated

    if isinstance(exc, Terminated):
        why = "terminated"
    elif isinstance(exc, KeyboardInterrupt):
        why = "interrupted"
    else:
        why = "stopped"
    where = []
    try:
        boxes = sink.finish()
        if boxes:
            where.append(f"boxes in {boxes}")
    except OSError as err:
        log.warning(
            "could not finish the boxes file: %s (the lines so far are in %s)", err, sink.tmp
        )
    if writer:
        video = writer.close(complete=False) if count else writer.discard()
        if video:
            where.append(f"partial video in {video}")
    log.warning("%s after %d frames%s", why, count, "; " + ", ".join(where) if where else "")
