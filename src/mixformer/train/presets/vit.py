"""Training presets of the MixViT family (SPEC-MIXVIT 8): ``mixvit-b`` / ``mixvit-l`` from MAE
weights, each with ``-stage1/2`` and GOT-10k-only ``-got-stage1/2``."""

from __future__ import annotations

from mixformer.train.presets.common import mixvit_presets

mixvit_presets("mixvit-b", "mae_pretrain_vit_base.pth", large=False)
mixvit_presets("mixvit-l", "mae_pretrain_vit_large.pth", large=True)
