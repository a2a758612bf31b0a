"""Presets of the ConvMAE family (MixViT-ConvMAE, SPEC-MIXVIT 7.3-7.4): -B / -L with the
reference's tracker schedules (the MixViT tracker, :func:`~mixformer.models.presets.vit.
mixvit_tracking`) and released files."""

from __future__ import annotations

from mixformer.models.backbones.convmae import ConvMAEConfig
from mixformer.models.config import ModelConfig, register_preset
from mixformer.models.heads.corner_up import CornerUpConfig
from mixformer.models.presets.vit import mixvit_releases, mixvit_tracking, table


@register_preset(
    "mixvit-convmae-b",
    tracking=mixvit_tracking(
        table((200, 2), (200, 2), (25, 3), (6, 2), (18, 2), (6, 5), (200, 3)),
        (200, 3),
        {"lasot": 4.8, "trackingnet": 4.5, "got10k_test": 4.5, "uav": 4.5, "otb": 5.0},
    ),
    releases=mixvit_releases("mixformer_convmae_base"),
)
def mixvit_convmae_b() -> ModelConfig:
    """MixViT-ConvMAE-B: conv stages 256/384 + 11 mixed blocks at 768 (``convmae`` baseline)."""
    return ModelConfig(
        backbone=ConvMAEConfig(),
        head=CornerUpConfig(),
        template_size=128,
        search_size=288,
    )


@register_preset(
    "mixvit-convmae-l",
    tracking=mixvit_tracking(
        table((200, 2), (200, 2), (20, 1), (10, 2), (20, 2), (10, 5), (200, 3)),
        (20, 2),
        {"lasot": 4.5, "trackingnet": 4.6, "got10k_test": 4.5, "uav": 4.55, "otb": 4.45},
    ),
    releases=mixvit_releases("mixformer_convmae_large"),
)
def mixvit_convmae_l() -> ModelConfig:
    """MixViT-ConvMAE-L: conv stages 384/768 + 20 mixed blocks at 1024 (``baseline_large``)."""
    return ModelConfig(
        backbone=ConvMAEConfig(dims=(384, 768, 1024), depths=(2, 2, 20), num_heads=16),
        head=CornerUpConfig(),
        template_size=192,
        search_size=384,
    )
