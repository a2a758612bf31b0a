"""Rebuild this folder from the reference vectors (``shared/spec`` of the project's workspace).

Run once from the repository root: ``python tests/data/reference/build.py PATH/TO/spec``. The
tests read only the files written here, never ``shared/``. What is left out is regenerated or
sliced by ``tests/conftest.py``:

* ``network_small.pt``: the joint inputs were drawn with ``torch.manual_seed(1)`` and three
  ``torch.randn`` calls (template, online template, search), so only the seed and a SHA-256 of
  the drawn bytes are stored; the cached-path inputs are rows of them; the score module's input
  features are the stage-2 backbone features. Stage 0/1 features are kept for batch row 0.
* ``sequence_small.npy.xz``: the 40 PNG frames as one ``(40, 240, 320, 3)`` uint8 BGR array
  (LZMA: the background is static, so 3.5 MB of PNGs become about 0.16 MB).
"""

from __future__ import annotations

import hashlib
import io
import lzma
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

OUT = Path(__file__).resolve().parent
INPUT_SEED = 1


def inputs_digest(tensors: list[torch.Tensor]) -> str:
    """SHA-256 of the float32 bytes of ``tensors`` in order."""
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()


def main(spec: Path) -> None:
    vec = spec / "vectors"
    net = torch.load(vec / "network_small.pt", weights_only=True)
    i, c, s, f = net["inputs"], net["cached"], net["score_module"], net["backbone_features"]
    torch.manual_seed(INPUT_SEED)
    names = ("template", "online_template", "search")
    drawn = [torch.randn_like(i[k]) for k in names]
    assert all(torch.equal(a, i[k]) for a, k in zip(drawn, names))
    assert torch.equal(c["template"], i["template"][:1])
    online = torch.stack([i["online_template"][0], i["template"][1]])
    assert torch.equal(c["online_templates"], online)
    assert torch.equal(c["search"], i["search"][:1])
    assert torch.equal(s["search_features"], f["stage2_search"])
    assert torch.equal(s["template_features"], f["stage2_template"])
    feats = {k: (v if k.startswith("stage2") else v[:1].clone()) for k, v in f.items()}
    compact = {
        "config": net["config"],
        "state_dict": net["state_dict"],
        "input_seed": INPUT_SEED,
        "input_sha256": inputs_digest(drawn),
        "joint": net["joint"],
        "backbone_features": feats,
        "cached": {k: c[k] for k in ("pred_boxes", "pred_scores")},
        "score_module": {k: s[k] for k in ("boxes_xyxy", "logits")},
    }
    torch.save(compact, OUT / "network_small.pt")
    shutil.copyfile(vec / "tracker_small.pt", OUT / "tracker_small.pt")
    shutil.copyfile(vec / "tracker_small.json", OUT / "tracker_small.json")
    files = sorted((vec / "sequence_small").glob("*.png"))
    frames = np.stack([cv2.imread(str(p)) for p in files])
    buf = io.BytesIO()
    np.save(buf, frames)
    (OUT / "sequence_small.npy.xz").write_bytes(lzma.compress(buf.getvalue(), preset=9))
    for name in ("keys_baseline.json", "keys_baseline_large.json"):
        shutil.copyfile(spec / name, OUT / name)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
