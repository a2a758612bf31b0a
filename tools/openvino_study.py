"""Torch against OpenVINO (fp32, bf16, int8) on one model: end-to-end AUC and time per frame.

Every tracker follows its own trajectory over the same composited sequences (objects cut from the
photos shipped with the package; seeds 777+), one after the other per sequence, 1 thread each::

    python tools/openvino_study.py --model mixformer-mbv3 --sequences 8 --frames 80

int8: the search graph quantised by NNCF on 64 calibration steps of other composited sequences
(:func:`mixformer.perf.calibration.calibration_feeds`, seeds 1000+): the mixed-attention blocks
only (the default, ``INT8_FLOAT_SCOPES``) and the whole graph. Needs
``pip install 'mixformer[openvino]'``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from mixformer import Tracker, TrackerConfig, build_model
from mixformer.export.int8 import INT8_FLOAT_SCOPES
from mixformer.export.openvino import OpenVinoModel
from mixformer.geometry import iou
from mixformer.perf.calibration import calibration_feeds
from mixformer.perf.precision import study_sequences
from mixformer.tracking.engines import Engine


def _auc(boxes: np.ndarray, gt: np.ndarray) -> float:
    overlap = iou(boxes, gt)
    return float(np.mean([(overlap > t).mean() for t in np.linspace(0, 1, 21)]) * 100)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mixformer-mbv3")
    ap.add_argument("--sequences", type=int, default=8)
    ap.add_argument("--frames", type=int, default=80)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = build_model(args.model, weights="default").eval()
    cfg = TrackerConfig.for_model(model)
    trackers = {
        "torch auto": Tracker(model, cfg, backend="torch", threads=args.threads),
        "torch fp32": Tracker(model, cfg, dtype="fp32", backend="torch", threads=args.threads),
        "openvino fp32": Tracker(model, cfg, backend="openvino", dtype="fp32"),
        "openvino bf16": Tracker(model, cfg, backend="openvino", dtype="bf16"),
    }
    fp32 = trackers["openvino fp32"].engine.network
    feeds = calibration_feeds(fp32, steps=64, search_factor=cfg.search_factor)
    for name, keep_float in (("openvino int8", INT8_FLOAT_SCOPES), ("int8 whole graph", ())):
        int8 = OpenVinoModel(
            fp32.onnx_dir, "int8", args.threads, calibration=feeds, keep_float=keep_float
        )
        trackers[name] = Tracker(Engine(int8, model, backend="openvino"), cfg)
    aucs: dict[str, list[float]] = {k: [] for k in trackers}
    times: dict[str, list[float]] = {k: [] for k in trackers}
    for frames, gt, _visible in study_sequences(
        args.sequences, args.frames, 777, "photos", 360, 480
    ):
        for name, tracker in trackers.items():
            tracker.init(frames[0], gt[0])
            boxes = []
            for frame in frames[1:]:
                t0 = time.perf_counter()
                boxes.append(tracker.update(frame).box)
                times[name].append(time.perf_counter() - t0)
            aucs[name].append(_auc(np.asarray(boxes), gt[1:]))
    print(f"{args.model}, {args.sequences} x {args.frames} frames, {args.threads} thread(s)")
    for name in trackers:
        ms = np.median(times[name]) * 1e3
        print(f"{name:16s} AUC {np.mean(aucs[name]):6.2f}   {ms:6.1f} ms/frame")


if __name__ == "__main__":
    main()
