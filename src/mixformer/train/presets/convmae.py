"""Training presets of MixViT-ConvMAE (SPEC-MIXVIT 8): the MixViT schedule from ConvMAE
weights, ``-stage1/2`` and GOT-10k-only ``-got-stage1/2``."""

from __future__ import annotations

from mixformer.train.presets.common import mixvit_presets

mixvit_presets("mixvit-convmae-b", "convmae_base.pth", large=False)
mixvit_presets("mixvit-convmae-l", "convmae_large.pth", large=True)
