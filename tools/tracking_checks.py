"""Two measurements behind README figures of the tracking core (not part of the package).

``memory``: peak resident memory of K trackers over one model, sharing the model's engine (the
default) against one engine each (what every tracker built before the engines were shared)::

    python tools/tracking_checks.py memory --model mixformer-22k --trackers 4

``compile``: ``torch.compile`` of the fast engine's search step against the default fast
engine, end to end (tracker start-up, first frame with the compilation, later frames), on the
photo-composited 640x480 benchmark scene with the model's LaSOT settings::

    python tools/tracking_checks.py compile --model mixformer-22k --frames 20 --threads 2
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from typing import Any

import numpy as np
import torch

from mixformer import Tracker, TrackerConfig, build_model
from mixformer.perf.benchmark import benchmark_frames
from mixformer.tracking.engines import Engine, build_network


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory(args: argparse.Namespace) -> None:
    model = build_model(args.model)
    before = _rss_mib()
    trackers = []
    for _ in range(args.trackers):
        own = None if args.mode == "shared" else build_network(model, "fp32", "torch", True)
        trackers.append(
            Tracker(model, backend="torch") if own is None else Tracker(Engine(own, model))
        )
    print(
        f"{args.model}: {args.trackers} trackers, {args.mode} engine(s): peak RSS "
        f"{_rss_mib():.0f} MiB (model alone {before:.0f} MiB)"
    )


class CompiledEngine:
    """The fast engine with ``torch.compile`` on its search step (``encode_templates`` eager)."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.config = engine.config
        self.box_head = engine.box_head
        self.encode_templates = engine.encode_templates
        self._track = torch.compile(engine.track, dynamic=False)

    def track(self, search: torch.Tensor, cache: Any, corner_prior: Any = None) -> Any:
        return self._track(search, cache, corner_prior=corner_prior)


def compile_check(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model(args.model)
    cfg = TrackerConfig.for_model(model, "lasot")
    frames, gt = benchmark_frames(args.frames + 1, 0, "photos")
    makers = {
        "fast (default)": lambda: Tracker(model, cfg, backend="torch"),
        "fast + torch.compile": lambda: Tracker(
            Engine(CompiledEngine(build_network(model, "fp32", "torch", True)), model), cfg
        ),
    }
    trackers, startup = {}, {}
    for label, make in makers.items():  # start-up: build, init, first frame (compiles)
        t0 = time.perf_counter()
        trackers[label] = make()
        trackers[label].init(frames[0], gt[0])
        trackers[label].update(frames[1])
        startup[label] = time.perf_counter() - t0
    times: dict[str, list[float]] = {k: [] for k in trackers}
    boxes: dict[str, list[tuple[float, ...]]] = {k: [] for k in trackers}
    for i, f in enumerate(frames[2:]):
        # side by side, alternating which goes first, so load drift biases neither
        for label in list(trackers)[:: 1 if i % 2 else -1]:
            t0 = time.perf_counter()
            boxes[label].append(trackers[label].update(f).box)
            times[label].append(time.perf_counter() - t0)
    print(f"{args.model}, {args.threads} threads, {args.frames} frames, photos scene, lasot preset")
    print(f"{'engine':<24}{'start-up + frame 1':>20}{'median frame':>14}{'all frames':>12}")
    for label in trackers:
        med = statistics.median(times[label])
        total = startup[label] + sum(times[label])
        print(f"{label:<24}{startup[label]:>18.1f} s{med * 1e3:>11.1f} ms{total:>10.1f} s")
    a, b = (np.asarray(v) for v in boxes.values())
    print(f"max box difference compiled vs default: {np.abs(a - b).max():.2g} px")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("memory")
    m.add_argument("--model", default="mixformer-22k")
    m.add_argument("--trackers", type=int, default=4)
    m.add_argument("--mode", choices=("shared", "own"), default="shared")
    m.set_defaults(func=memory)
    c = sub.add_parser("compile")
    c.add_argument("--model", default="mixformer-22k")
    c.add_argument("--frames", type=int, default=20)
    c.add_argument("--threads", type=int, default=2)
    c.set_defaults(func=compile_check)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
