"""Presets of the ViT family (MixViT, SPEC-MIXVIT 7.3-7.4): MixViT-B / -L with the reference's
tracker schedules and released files. :func:`mixvit_tracking` serves the ConvMAE presets too
(the same MixViT tracker)."""

from __future__ import annotations

from mixformer.models.backbones.vit import ViTConfig
from mixformer.models.config import ModelConfig, register_preset
from mixformer.models.heads.corner_up import CornerUpConfig
from mixformer.models.release import MIXFORMER_PAGE, Release, TrackingDefaults

BENCHMARKS = ("lasot", "got10k_test", "trackingnet", "otb", "uav", "vot20", "vot20lt")
"""The benchmarks of a MixViT yaml's schedule table, in :func:`table` order."""


def table(*pairs: tuple[int, int]) -> dict[str, tuple[int, int]]:
    """``{benchmark: (update_interval, online_size)}`` in :data:`BENCHMARKS` order."""
    return dict(zip(BENCHMARKS, pairs, strict=True))


def mixvit_tracking(
    sched: dict[str, tuple[int, int]], got_uav: tuple[int, int], factors: dict[str, float]
) -> TrackingDefaults:
    """SPEC-MIXVIT 7.3 (schedules; the ``baseline_got`` yaml differs only for UAV) and 7.4
    (search factors of the test scripts; decay never passed, 1.0; yaml factor 4.5). Benchmarks
    missing from the yaml crash the reference tracker (quirk 14); here they fall back to 200 / 3
    as the CvT tracker does."""
    return TrackingDefaults(
        schedules=sched,
        commands={k: (v, 1.0) for k, v in factors.items()},
        search_factor=4.5,
        got_schedules={**sched, "uav": got_uav},
        got_commands={k: (v, 1.0) for k, v in factors.items()},
    )


def mixvit_releases(stem: str) -> tuple[Release, ...]:
    """The online network's file and the GOT-10k-only one: ``{stem}_online[_got].pth.tar``."""
    return (
        Release(f"{stem}_online.pth.tar", MIXFORMER_PAGE),
        Release(f"{stem}_online_got.pth.tar", MIXFORMER_PAGE, got10k_trained=True),
    )


@register_preset(
    "mixvit-b",
    tracking=mixvit_tracking(
        table((200, 2), (200, 2), (25, 3), (6, 2), (20, 3), (6, 5), (200, 3)),
        (200, 3),
        {"lasot": 5.05, "trackingnet": 4.5, "got10k_test": 4.5, "uav": 4.7, "otb": 4.45},
    ),
    releases=mixvit_releases("mixformer_vit_base"),
)
def mixvit_b() -> ModelConfig:
    """MixViT-B: ViT-B/16 (MAE init), 128/288 crops, pyramid corner head (``vit`` baseline)."""
    return ModelConfig(
        backbone=ViTConfig(),
        head=CornerUpConfig(),
        template_size=128,
        search_size=288,
    )


@register_preset(
    "mixvit-l",
    tracking=mixvit_tracking(
        table((200, 2), (200, 2), (25, 2), (12, 5), (25, 2), (10, 5), (200, 3)),
        (25, 2),
        {"lasot": 4.55, "trackingnet": 4.6, "got10k_test": 4.5, "uav": 4.7, "otb": 4.6},
    ),
    releases=mixvit_releases("mixformer_vit_large"),
)
def mixvit_l() -> ModelConfig:
    """MixViT-L: ViT-L/16 (MAE init), 192/384 crops (``vit`` baseline_large)."""
    return ModelConfig(
        backbone=ViTConfig(embed_dim=1024, depth=24, num_heads=16),
        head=CornerUpConfig(),
        template_size=192,
        search_size=384,
    )
