"""Development-time baselines: OpenCV's trackers (and a static box) on a benchmark folder.

Writes one ``<seq>.txt`` per sequence (tab-separated ``x, y, w, h``, the result format of
``mixformer evaluate``) under ``OUT/<tracker>/`` so ``mixformer report`` compares them::

    python tools/opencv_baselines.py BENCH OUT --trackers static,mil,csrt
    mixformer report ours=RES mil=OUT/mil csrt=OUT/csrt --dataset generic --root BENCH

CSRT and KCF need ``opencv-contrib-python-headless``, which replaces ``cv2`` of
``opencv-python-headless``: install it into a separate folder (``pip install --target DIR
opencv-contrib-python-headless``) and run this script with ``PYTHONPATH=DIR``. It is never a
dependency of the package.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import cv2
import numpy as np

from mixformer.data.benchmarks import read_generic
from mixformer.data.io import format_boxes
from mixformer.utils import atomic_write_text

log = logging.getLogger("baselines")

FACTORIES = {
    "mil": lambda: cv2.TrackerMIL_create(),
    "csrt": lambda: cv2.TrackerCSRT_create(),
    "kcf": lambda: cv2.TrackerKCF_create(),
}


def run(name: str, frames: list[Path], box0: np.ndarray) -> np.ndarray:
    out = np.repeat(box0[None].astype(np.float64), len(frames), axis=0)
    if name == "static":
        return out
    tracker = FACTORIES[name]()
    tracker.init(cv2.imread(str(frames[0])), tuple(int(round(v)) for v in box0))
    for i, f in enumerate(frames[1:], start=1):
        ok, box = tracker.update(cv2.imread(str(f)))
        out[i] = box if ok else out[i - 1]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bench")
    ap.add_argument("out")
    ap.add_argument("--trackers", default="static,mil,csrt")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    seqs = read_generic(args.bench)
    for name in args.trackers.split(","):
        if name != "static" and not hasattr(
            cv2,
            {"mil": "TrackerMIL_create", "csrt": "TrackerCSRT_create", "kcf": "TrackerKCF_create"}[
                name
            ],
        ):
            log.error("%s: this cv2 has no such tracker (install opencv-contrib)", name)
            return 2
        folder = Path(args.out) / name
        for seq in seqs:
            boxes = run(name, list(seq.frames), np.asarray(seq.ground_truth[0]))
            atomic_write_text(folder / f"{seq.name}.txt", format_boxes(boxes, "\t", integer=True))
        log.info("%s: %d sequences -> %s", name, len(seqs), folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
