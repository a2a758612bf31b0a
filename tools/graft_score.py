"""Put a network file's score module on a stage-1 result (development tool).

Stage 1 drops the score module; stage 2 trains a new one. A score module's quality on real
video is not predicted by the composites it is trained on (docs/default-model.md, stops 31 and
37), so continuations of the shipped weights were judged with the shipped score module put back
on top of the new boxes::

    python tools/graft_score.py runs/videos/model_final.pth videos.pth --score-from default
    mixformer train-eval videos.pth --bench realvideo --labelled-only

The result is the donor's network (its preset, model config and tracker settings) with every
tensor of the stage-1 file and the donor's ``score_branch.*`` tensors.
"""

from __future__ import annotations

import argparse
import logging
import sys

from mixformer.models import (
    CheckpointError,
    build_model,
    default_weights_path,
    load_weights,
)
from mixformer.models.weights import read_checkpoint, save_weights

log = logging.getLogger("graft_score")

SCORE_PREFIXES = ("score_branch.", "score_head.")


def graft(stage1: str, out: str, score_from: str = "default", model: str | None = None) -> int:
    """Write ``out``: ``stage1``'s tensors with the score module of ``score_from`` (a weights
    file, or ``default`` for the shipped weights of ``model``, default the default model).

    Returns:
        The number of score tensors copied.

    Raises:
        ValueError / CheckpointError: a missing or unfit file, a donor without a score module.
    """
    if score_from == "default":
        from mixformer.models.config import DEFAULT_MODEL

        path = default_weights_path(model or DEFAULT_MODEL)
        if path is None:
            raise ValueError(f"no weights ship for {model or DEFAULT_MODEL}")
        score_from = str(path)
    donor = read_checkpoint(score_from)
    score = {k: v for k, v in donor.state_dict.items() if k.startswith(SCORE_PREFIXES)}
    if not score:
        raise ValueError(f"{score_from} has no score module")
    net = build_model(model or donor.preset, weights=score_from)
    load_weights(net, stage1)  # warns that the stage-1 file has no score module
    sd = net.state_dict()
    sd.update(score)
    net.load_state_dict(sd)
    recipe = donor.meta.get("recipe", "")
    save_weights(net, out, recipe=f"{recipe}; then {stage1} with the score module of {score_from}")
    return len(score)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("stage1", help="the stage-1 result (model_final.pth)")
    ap.add_argument("out", help="the weights file to write")
    ap.add_argument(
        "--score-from", default="default", help="weights file whose score module to take"
    )
    ap.add_argument("--model", help="preset (default: the donor's)")
    args = ap.parse_args(argv)
    try:
        n = graft(args.stage1, args.out, args.score_from, args.model)
    except (ValueError, CheckpointError, OSError) as exc:
        print(f"graft_score: error: {exc}", file=sys.stderr)
        return 2
    log.info("copied %d score tensors -> %s", n, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
