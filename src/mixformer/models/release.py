"""Metadata of weights: the released files of a preset (:class:`Release`) and the reference's
tracker settings that go with its weights (:class:`TrackingDefaults`).

Both belong to the weights, not to the architecture: a preset registers them next to its config
(:func:`mixformer.models.config.register_preset`, the family modules in
:mod:`mixformer.models.presets`). ``ModelConfig.tracking`` still carries the tracker defaults, so
that checkpoints record them and ``Tracker(model)`` finds them from the model alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

Schedule = Mapping[str, tuple[int, int]]
"""benchmark -> ``(update_interval, online_size)``."""
Commands = Mapping[str, tuple[float, float]]
"""benchmark -> ``(search_factor, max_score_decay)``."""

MIXFORMER_PAGE = "official MixFormer release (github.com/MCG-NJU/MixFormer)"
"""Where the reference's MixFormer (CvT) and MixViT weights are published."""
MIXFORMERV2_PAGE = "official MixFormerV2 release (github.com/MCG-NJU/MixFormerV2)"
"""Where the reference's MixFormerV2 weights are published."""


@dataclass(frozen=True)
class Release:
    """One released weights file a preset loads (``build_model(name, weights=FILE)``).

    Attributes:
        file: the file name as published.
        page: where it is published (e.g. :data:`MIXFORMER_PAGE`).
        got10k_trained: the network was trained on GOT-10k only; its tracker settings are the
            ``got_schedules`` / ``got_commands`` of the preset's :class:`TrackingDefaults`
            (``TrackerConfig.preset(..., got10k_trained=True)``).
    """

    file: str
    page: str
    got10k_trained: bool = False


@dataclass(frozen=True)
class TrackingDefaults:
    """The reference's tracker settings for one model, per benchmark (SPEC 2.8-2.9,
    SPEC-MIXVIT 7.3-7.4).

    Attributes:
        schedules: update interval / online size per benchmark.
        commands: search factor / max score decay of the official test commands.
        search_factor: the yaml's ``TEST.SEARCH_FACTOR`` (benchmarks without a command).
        fallback: schedule of a benchmark missing from ``schedules``.
        got_schedules / got_commands: the same for the network trained on GOT-10k only
            (``got10k_trained=True``); None: as ``schedules`` / ``commands``.
        ours: settings of this project applied on top (e.g. ``motion_prior``), for models
            tuned here; empty for every released model (the reference tracker).
        auto_bf16: whether ``dtype="auto"`` may run these weights in bf16 (on CPUs with AMX,
            :func:`mixformer.tracking.backends.resolve_dtype_setting`). False where the
            precision study measured worse tracking in bf16: the default model (real-video AUC
            65.8 in bf16 against 68.7 in fp32), whose ``auto`` is then fp32 everywhere.
    """

    schedules: Schedule = field(default_factory=dict, hash=False)
    commands: Commands = field(default_factory=dict, hash=False)
    search_factor: float = 5.0
    fallback: tuple[int, int] = (200, 3)
    got_schedules: Schedule | None = field(default=None, hash=False)
    got_commands: Commands | None = field(default=None, hash=False)
    ours: Mapping[str, float] = field(default_factory=dict, hash=False)
    auto_bf16: bool = True

    def settings(self, benchmark: str, got10k_trained: bool = False) -> dict[str, Any]:
        """``TrackerConfig`` fields for ``benchmark`` (lower case)."""
        got = got10k_trained
        sched = self.got_schedules if got and self.got_schedules is not None else self.schedules
        cmds = self.got_commands if got and self.got_commands is not None else self.commands
        interval, online = sched.get(benchmark, self.fallback)
        factor, decay = cmds.get(benchmark, (self.search_factor, 1.0))
        out: dict[str, Any] = dict(
            update_interval=interval,
            online_size=online,
            search_factor=factor,
            max_score_decay=decay,
        )
        out.update(self.ours)
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON/YAML-safe dict (lists for pairs)."""

        def pairs(m: Mapping[str, tuple] | None) -> dict[str, list] | None:
            return None if m is None else {k: list(v) for k, v in m.items()}

        return {
            "schedules": pairs(self.schedules),
            "commands": pairs(self.commands),
            "search_factor": self.search_factor,
            "fallback": list(self.fallback),
            "got_schedules": pairs(self.got_schedules),
            "got_commands": pairs(self.got_commands),
            "ours": dict(self.ours),
            # only where it differs from the default: older configs stay byte-identical
            **({} if self.auto_bf16 else {"auto_bf16": False}),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrackingDefaults:
        """Inverse of :meth:`to_dict`."""

        def pairs(m: Mapping[str, Any] | None, kind: type) -> dict[str, tuple] | None:
            return None if m is None else {k: (kind(v[0]), kind(v[1])) for k, v in m.items()}

        return cls(
            schedules=pairs(d.get("schedules"), int) or {},
            commands=pairs(d.get("commands"), float) or {},
            search_factor=float(d.get("search_factor", 5.0)),
            fallback=tuple(int(v) for v in d.get("fallback", (200, 3))),  # type: ignore[arg-type]
            got_schedules=pairs(d.get("got_schedules"), int),
            got_commands=pairs(d.get("got_commands"), float),
            # counts (update_interval) stay ints, the other settings are floats
            ours={
                k: v if isinstance(v, int) else float(v) for k, v in (d.get("ours") or {}).items()
            },
            auto_bf16=bool(d.get("auto_bf16", True)),
        )
