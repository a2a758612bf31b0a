"""``mixformer data corpus | bench | realvideo``: the real-image corpus, benchmarks composited
from it, and the hand-labelled real-video benchmark."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from mixformer.cli.common import add_progress_arg

log = logging.getLogger("mixformer.data")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "data",
        help="build the real-image training corpus, or benchmarks composited from it",
        description="Training material from Debian packages (real photos and videos), offline "
        "from the package registry only.",
    )
    dsub = p.add_subparsers(dest="data_command", metavar="WHAT")
    c = dsub.add_parser(
        "corpus",
        help="fetch the photo/video packages and write the corpus",
        description="Fetch the packages with 'apt-get download' (or take the .deb files in "
        "--debs), unpack them with dpkg -x (nothing is installed), downscale the photos and "
        "video frames, record each file's package and copyright file, and split by source image "
        "into train / val / test (deterministic). Packages: "
        + ", ".join(s.package for s in _sources()),
    )
    c.add_argument("--out", type=Path, default=Path("mixformer-corpus"), help="corpus folder")
    c.add_argument(
        "--debs",
        type=Path,
        default=None,
        help="folder of .deb files (missing ones are downloaded into it; default OUT/debs)",
    )
    c.add_argument("--max-side", type=int, default=640, help="longest side of stored photos")
    add_progress_arg(c)
    c.set_defaults(func=run_corpus)
    b = dsub.add_parser(
        "bench",
        help="write a benchmark of composited sequences (OTB layout) from one corpus split",
        description="Objects cut from the split's photos moving over its photos and videos. "
        "Evaluate it with 'mixformer evaluate --dataset generic --root OUT'.",
    )
    b.add_argument("--corpus", type=Path, default=Path("mixformer-corpus"), help="corpus folder")
    b.add_argument("--out", type=Path, required=True, help="benchmark folder")
    b.add_argument(
        "--variant",
        default="plain",
        choices=("plain", "hard", "train"),
        help="how hard the sequences are: plain (moderate motion, some occlusion and "
        "look-alikes), hard (frequent full occlusion, distractors, abrupt jumps, blur, strong "
        "rotation and perspective), train (between the two: the training mix)",
    )
    b.add_argument(
        "--split",
        default="test",
        choices=("train", "val", "test"),
        help="corpus split the images come from (test: never used in training)",
    )
    b.add_argument("--sequences", type=int, default=30, help="number of sequences")
    b.add_argument("--frames", type=int, default=100, help="frames per sequence (>= 2)")
    b.add_argument("--seed", type=int, default=2024, help="random seed (same seed, same benchmark)")
    add_progress_arg(b)
    b.set_defaults(func=run_bench)
    r = dsub.add_parser(
        "realvideo",
        help="write the hand-labelled real-video benchmark (OTB layout) from Debian packages",
        description="Real camera clips from Debian packages, with boxes labelled by hand on "
        "every 5th frame (NaN rows elsewhere). The packages are fetched with 'apt-get download' "
        "(or taken from --debs) and unpacked with dpkg -x; nothing is installed. Evaluate with "
        "'mixformer evaluate --dataset realvideo --root OUT' (scores only the labelled frames).",
    )
    r.add_argument("--out", type=Path, required=True, help="benchmark folder")
    r.add_argument(
        "--debs",
        type=Path,
        default=None,
        help="folder of .deb files (missing ones are downloaded into it; default OUT/debs)",
    )
    add_progress_arg(r)
    r.set_defaults(func=run_realvideo)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _sources():
    from mixformer.datagen.corpus import DEFAULT_SOURCES

    return DEFAULT_SOURCES


def run_corpus(args: argparse.Namespace) -> int:
    from mixformer.datagen.corpus import build_corpus

    manifest = build_corpus(
        args.out, deb_dir=args.debs, max_side=args.max_side, progress=not args.no_progress
    )
    entries = manifest["entries"]
    for split in ("train", "val", "test"):
        n_img = sum(e["split"] == split and e["kind"] == "image" for e in entries)
        n_vid = sum(e["split"] == split and e["kind"] == "video" for e in entries)
        n_cut = sum(e["split"] == split and e["kind"] == "cutout" for e in entries)
        log.info("%s: %d photos, %d videos, %d cut-outs", split, n_img, n_vid, n_cut)
    return 0


def run_bench(args: argparse.Namespace) -> int:
    from mixformer.datagen.composite import write_composite_benchmark

    if args.sequences < 1 or args.frames < 2:
        raise ValueError("need --sequences >= 1 and --frames >= 2")
    write_composite_benchmark(
        args.corpus,
        args.out,
        args.variant,
        args.split,
        args.sequences,
        args.frames,
        args.seed,
        progress=not args.no_progress,
    )
    return 0


def run_realvideo(args: argparse.Namespace) -> int:
    from mixformer.datagen.realvideo import build_realvideo

    names = build_realvideo(args.out, deb_dir=args.debs, progress=not args.no_progress)
    print(
        f"wrote {len(names)} sequences to {args.out} "
        f"(evaluate with --dataset realvideo --root {args.out})"
    )
    return 0
