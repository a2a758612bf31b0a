"""Write ``vectors_v2_distill_small.pt`` here from the reference's distillation vectors
(``shared/spec/mixformerv2`` of the project's workspace; SPEC-DISTILL 10 and its README).

Run once from the repository root:
``python tests/data/reference/mixformerv2/build_distill.py PATH/TO/spec/mixformerv2``. The tests
read only the file written here. Left out to stay under 5 MB (5.3 MB -> about 4.1 MB):

* ``distill_features`` of the stage-2 runs (the stacked block outputs the feature MSE compared):
  the tests recompute them from the weights and check the recorded ``distill_feat`` loss;
* the MixViT teacher's dead timm parameters ``backbone.head.*``, ``backbone.pos_embed``,
  ``backbone.cls_token`` (unused by the forward): the tests load the teacher with
  ``strict=False`` and check that exactly these keys are missing.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

OUT = Path(__file__).resolve().parent / "vectors_v2_distill_small.pt"
DEAD_TEACHER_KEYS = (
    "backbone.head.weight",
    "backbone.head.bias",
    "backbone.pos_embed",
    "backbone.cls_token",
)


def main(spec: Path) -> None:
    v = torch.load(spec / "vectors_v2_distill_small.pt", weights_only=True)
    teacher = v["weights"]["teacher_mixvit"]
    v["weights"]["teacher_mixvit"] = {
        k: t for k, t in teacher.items() if k not in DEAD_TEACHER_KEYS
    }
    for run in [*v["stage2_remove"], v["stage2_finetune"]]:
        del run["distill_features"]
    torch.save(v, OUT)
    print(f"{OUT}: {OUT.stat().st_size} bytes")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
