"""``mixformer models``: list the model presets."""

from __future__ import annotations

import argparse

from mixformer.models import get_config, list_models
from mixformer.models.factory import default_weights_path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list model presets", description="List model presets.")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    print(f"{'name':18} {'widths':16} {'depths':10} {'head':5} default weights")
    for name in list_models():
        cfg = get_config(name)
        shipped = "yes" if default_weights_path(name) else "no"
        widths = ",".join(map(str, cfg.dim_embed))
        depths = ",".join(map(str, cfg.depth))
        print(f"{name:18} {widths:16} {depths:10} {cfg.head_dim:<5} {shipped}")
    return 0
