"""``mixformer export onnx``: write the template-encoder and search-step ONNX graphs."""

from __future__ import annotations

import argparse
from pathlib import Path

from mixformer.cli import CLIError
from mixformer.cli.common import add_model_args, load_model_from_args


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``export`` subcommand."""
    p = sub.add_parser(
        "export",
        help="export the network for deployment (ONNX)",
        description="Write template_encoder.onnx (template + N online templates -> per-block "
        "key/value cache and template features), search_step.onnx (search crop + cache -> box "
        "and score) and mixformer_onnx.json to OUT_DIR. Needs `pip install onnx onnxruntime`.",
    )
    p.add_argument("format", choices=["onnx"], help="export format")
    p.add_argument("out_dir", type=Path, help="output folder")
    add_model_args(p)
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (>= 14)")
    p.add_argument(
        "--no-verify",
        action="store_true",
        help="skip running both graphs in ONNX Runtime against PyTorch after export",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Export, then (unless ``--no-verify``) compare ONNX Runtime with PyTorch on random crops."""
    import torch

    from mixformer.export.onnx import OnnxRuntimeModel, export_onnx, require_onnx

    try:
        require_onnx()
    except ImportError as exc:
        raise CLIError(str(exc)) from exc

    if args.opset < 14:
        raise CLIError("--opset must be >= 14 (fused attention)")
    model = load_model_from_args(args).cpu()
    t_path, s_path = export_onnx(model, args.out_dir, opset=args.opset)
    print(f"wrote {t_path}")
    print(f"wrote {s_path}")
    if args.no_verify:
        return 0
    g = torch.Generator().manual_seed(0)
    ts, ss = model.config.template_size, model.config.search_size
    z, o = torch.randn(1, 3, ts, ts, generator=g), torch.randn(2, 3, ts, ts, generator=g)
    x = torch.randn(1, 3, ss, ss, generator=g)
    ort_model = OnnxRuntimeModel(args.out_dir)
    with torch.inference_mode():
        ref = model.track(x, model.encode_templates(z, o))
    got = ort_model.track(x, ort_model.encode_templates(z, o))
    diff = float((ref["pred_boxes"] - got["pred_boxes"]).abs().max())
    print(f"verify: max |pred_boxes(onnxruntime) - pred_boxes(torch)| = {diff:.2e}")
    return 0 if diff <= 1e-4 else 1
