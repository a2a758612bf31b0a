"""``mixformer vot-server`` and ``mixformer vot-config``: run under the VOT toolkit."""

from __future__ import annotations

import argparse
import logging

from mixformer.cli import CLIError
from mixformer.cli.common import (
    add_got10k_arg,
    add_model_args,
    add_plain_arg,
    got10k_trained,
    load_model_from_args,
)
from mixformer.cli.dtype import (
    add_backend_arg,
    add_dtype_arg,
    resolve_backend_arg,
    resolve_dtype_arg,
)

log = logging.getLogger("mixformer.vot")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "vot-server",
        help="TraX server for the VOT toolkit (started by `vot evaluate`)",
        description="Answer the VOT toolkit's TraX requests (rectangles, image paths; one or "
        "several objects) until it quits. Needs `pip install vot-trax`. Put the line printed "
        "by `mixformer vot-config` in the workspace's trackers.ini.",
    )
    add_model_args(p)
    p.add_argument("--preset", default="vot20", help="tracker settings preset (default vot20)")
    add_got10k_arg(p)
    add_plain_arg(p)
    add_dtype_arg(p)
    add_backend_arg(p)
    p.add_argument("--name", default="MixFormer", help="tracker name sent to the toolkit")
    p.set_defaults(func=run_server)

    c = sub.add_parser(
        "vot-config",
        help="print a trackers.ini section for the VOT toolkit",
        description="Print a ready trackers.ini section that runs `mixformer vot-server` with "
        "this Python interpreter; append it to the workspace's trackers.ini.",
    )
    c.add_argument("--name", default="MixFormer", help="tracker identifier (default MixFormer)")
    c.add_argument("--model", default="mixformer-22k", help="model preset")
    c.add_argument("--weights", default=None, help="weights file (made absolute)")
    c.add_argument("--preset", default="vot20", help="tracker settings preset (default vot20)")
    c.add_argument("--device", default=None, help="torch device passed to the server")
    c.add_argument(
        "--plain", action="store_true", help="the server runs the plain reference network"
    )
    c.add_argument("--dtype", default=None, help="network precision passed to the server")
    c.add_argument("--backend", default=None, help="backend passed to the server")
    c.set_defaults(func=run_config)


def run_server(args: argparse.Namespace) -> int:
    from mixformer.integrations.vot import _import_trax, serve
    from mixformer.tracking import MultiTracker, TrackerConfig

    try:  # before the model: the toolkit should not wait for weights to hear this
        _import_trax()
    except ImportError as exc:
        raise CLIError(f"{exc}") from exc
    TrackerConfig.preset(args.preset)  # unknown presets fail before the model loads
    model = load_model_from_args(args)
    config = TrackerConfig.for_model(model, args.preset, got10k_trained(args))
    fast = not args.plain
    backend = resolve_backend_arg(args)  # auto: what `track` runs
    dtype = resolve_dtype_arg(args, backend)

    def make() -> MultiTracker:
        return MultiTracker(
            model, config, device=args.device, fast=fast, dtype=dtype, backend=backend
        )

    frames = serve(make, name=args.name)
    log.info("VOT session ended after %d frames", frames)
    return 0


def run_config(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mixformer.integrations.vot import trackers_ini

    weights = None
    if args.weights:
        path = Path(args.weights).expanduser().resolve()
        if not path.is_file():
            raise CLIError(f"weights file not found: {args.weights}")
        weights = str(path)
    extra = ["--device", args.device] if args.device else []
    if args.plain:
        extra.append("--plain")
    for flag in ("dtype", "backend"):
        if getattr(args, flag):
            extra += [f"--{flag}", getattr(args, flag)]
    print(trackers_ini(args.name, args.model, weights, args.preset, extra), end="")
    return 0
