"""``mixformer models``: the model presets of every family and where their weights come from."""

from __future__ import annotations

import argparse

import torch

from mixformer.models import get_config, get_preset, list_models
from mixformer.models.factory import default_weights_path
from mixformer.models.mixformer import MixFormer


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "models",
        help="list model presets",
        description="List the model presets of every family: backbone, head, crop sizes, "
        "parameter count, whether weights ship with the package, and the reference's released "
        "files each loads (with --weights FILE) and where they are published.",
    )
    p.set_defaults(func=run)


def weights_line(name: str) -> str:
    """Where preset ``name``'s weights come from, in one line."""
    preset = get_preset(name)
    if default_weights_path(name) is not None:
        return "ships with the package (--weights default; used without --weights)"
    if preset.releases:
        return f"{', '.join(preset.files)}: from the {preset.release_page}"
    return "no released file (a preset of this project: train it with mixformer train)"


def _params(name: str) -> int:
    with torch.device("meta"):  # shapes only: no memory, no init
        model = MixFormer(get_config(name), name)
    return sum(p.numel() for p in model.parameters())


def run(args: argparse.Namespace) -> int:
    print(f"{'name':18} {'family':8} {'head':10} {'crops':8} {'params':>8}  shipped")
    for name in list_models():
        cfg = get_config(name)
        crops = f"{cfg.template_size}/{cfg.search_size}"
        shipped = "yes" if default_weights_path(name) else "no"
        print(
            f"{name:18} {cfg.family:8} {cfg.head.type:10} {crops:8} "
            f"{_params(name) / 1e6:7.1f}M  {shipped}"
        )
    print(
        "\nweights (pass a released file with --weights FILE; without weights a preset is random):"
    )
    for name in list_models():
        print(f"  {name:18} {weights_line(name)}")
    return 0
