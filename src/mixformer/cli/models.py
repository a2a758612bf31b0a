"""``mixformer models``: list the model presets of every family."""

from __future__ import annotations

import argparse

import torch

from mixformer.models import get_config, list_models
from mixformer.models.factory import default_weights_path
from mixformer.models.mixformer import MixFormer


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "models",
        help="list model presets",
        description="List the model presets of every family: backbone, head, crop sizes, "
        "parameter count, shipped weights and the reference's released files each loads.",
    )
    p.set_defaults(func=run)


def _params(name: str) -> int:
    with torch.device("meta"):  # shapes only: no memory, no init
        model = MixFormer(get_config(name), name)
    return sum(p.numel() for p in model.parameters())


def run(args: argparse.Namespace) -> int:
    print(
        f"{'name':18} {'family':8} {'head':10} {'crops':8} {'params':>8}  {'shipped':8} "
        "loads released files"
    )
    for name in list_models():
        cfg = get_config(name)
        crops = f"{cfg.template_size}/{cfg.search_size}"
        shipped = "yes" if default_weights_path(name) else "no"
        releases = ", ".join(cfg.releases) or "-"
        print(
            f"{name:18} {cfg.family:8} {cfg.head.type:10} {crops:8} "
            f"{_params(name) / 1e6:7.1f}M  {shipped:8} {releases}"
        )
    return 0
