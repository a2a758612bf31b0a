"""Tracker settings and the per-benchmark presets of the reference (SPEC 2.2, 2.8, 2.9;
SPEC-MIXVIT 7.3-7.4).

The per-benchmark schedules and search factors are metadata of the model preset
(:class:`mixformer.models.TrackingDefaults` in ``ModelConfig.tracking``, also recorded in
checkpoints), so a network brings its own settings.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mixformer.models.config import ModelConfig, get_config, list_models

if TYPE_CHECKING:
    from mixformer.models import MixFormer

BENCHMARKS = (
    "default",
    "lasot",
    "got10k_test",
    "got10k_val",
    "trackingnet",
    "otb",
    "uav",
    "nfs",
    "tnl2k",
    "vot20",
    "vot20lt",
)


@dataclass(frozen=True)
class TrackerConfig:
    """Settings of :class:`mixformer.Tracker`.

    Attributes:
        template_factor: template crop side relative to ``sqrt(w*h)`` of the box (2.0).
        template_size: template crop side in pixels (128; must match the model).
        search_factor: search crop side relative to ``sqrt(w*h)`` (5.0; 4.5/4.55 in the
            official benchmark commands).
        search_size: search crop side in pixels (320; must match the model).
        update_interval: frames between online-template updates.
        online_size: maximum number of online templates kept.
        max_score_decay: per-frame decay of the best score seen since the last update.
        score_threshold: a frame's crop becomes an update candidate only if its score is above.
        motion_prior: standard deviation, as a fraction of ``search_size``, of a Gaussian prior
            on each corner heat map around where the previous box's corner lies in the search
            crop (a log-prior added before the soft-argmax). It keeps the box from jumping to a
            similar-looking distractor. 0 turns it off: the reference tracker, and the default
            of every released model; the shipped ``mixformer-tiny`` uses it (see
            :meth:`preset`).
        velocity: weight of the newest centre displacement in an exponential moving average of
            the target's velocity; the search crop is centred on the previous box moved by
            that velocity. 0 (default, the reference) centres it on the previous box.
        size_update: fraction of the network's width/height change the box takes each frame
            (its centre is the network's). 1 (default, the reference) takes the whole change.
        max_scale_change: bound on the box's per-frame width and height ratio (e.g. 1.1: each
            side changes by at most 10 % per frame, after ``size_update``), which stops a lost
            box from blowing up to the whole image or collapsing to a line. 0 (default, the
            reference) is no bound.
    """

    template_factor: float = 2.0
    template_size: int = 128
    search_factor: float = 5.0
    search_size: int = 320
    update_interval: int = 200
    online_size: int = 3
    max_score_decay: float = 1.0
    score_threshold: float = 0.5
    motion_prior: float = 0.0
    velocity: float = 0.0
    size_update: float = 1.0
    max_scale_change: float = 0.0

    def __post_init__(self) -> None:
        if self.update_interval < 1:
            raise ValueError(f"update_interval must be >= 1, got {self.update_interval}")
        if self.online_size < 1:
            raise ValueError(f"online_size must be >= 1, got {self.online_size}")
        if self.template_factor <= 0 or self.search_factor <= 0:
            raise ValueError("template_factor and search_factor must be > 0")
        if self.motion_prior < 0:
            raise ValueError(f"motion_prior must be >= 0 (0: off), got {self.motion_prior}")
        if not 0.0 <= self.velocity <= 1.0:
            raise ValueError(f"velocity must be in [0, 1] (0: off), got {self.velocity}")
        if not 0.0 < self.size_update <= 1.0:
            raise ValueError(f"size_update must be in (0, 1] (1: off), got {self.size_update}")
        if self.max_scale_change != 0 and self.max_scale_change <= 1:
            raise ValueError(f"max_scale_change must be > 1 (0: off), got {self.max_scale_change}")

    def replace(self, **changes: Any) -> TrackerConfig:
        """Copy with ``changes``; unknown names raise ``KeyError`` naming the closest field."""
        valid = [f.name for f in dataclasses.fields(self)]
        for k in changes:
            if k not in valid:
                close = difflib.get_close_matches(k, valid, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise KeyError(f"unknown tracker setting {k!r}{hint}")
        return dataclasses.replace(self, **changes)

    @classmethod
    def for_model(
        cls, model: MixFormer, benchmark: str = "default", got10k_trained: bool = False
    ) -> TrackerConfig:
        """:meth:`preset` for a built network: its config's tracker defaults and crop sizes.

        Args:
            model: the network (plain, fused or ONNX Runtime); ``model.config`` gives the
                schedules (``ModelConfig.tracking``) and ``template_size`` / ``search_size``.
            benchmark: one of :data:`BENCHMARKS`.
            got10k_trained: the network was trained on GOT-10k only (see :meth:`preset`).
        """
        name = getattr(model, "name", None) or "mixformer-22k"
        return cls.preset(benchmark, name, model.config, got10k_trained)

    @classmethod
    def preset(
        cls,
        benchmark: str = "default",
        model: str = "mixformer-22k",
        model_config: ModelConfig | None = None,
        got10k_trained: bool = False,
    ) -> TrackerConfig:
        """The reference settings for ``benchmark`` with ``model`` (SPEC 2.8-2.9, SPEC-MIXVIT 7).

        Args:
            benchmark: one of :data:`BENCHMARKS` (``"default"``: interval 200, 3 templates).
            model: a model preset name; its config's :class:`~mixformer.models.TrackingDefaults`
                give the schedule and search factor, its crops the sizes (``mixformer-tiny``
                also brings this project's motion settings).
            model_config: the network's config when it may differ from the registered preset's
                (e.g. a checkpoint): schedules and crop sizes come from it.
            got10k_trained: the network was trained on GOT-10k only, like the reference's
                ``*_online_got.pth.tar`` files: the schedules of the ``baseline_got`` experiment.
        Raises:
            KeyError: unknown ``benchmark`` (the message lists the valid names).
        """
        key = benchmark.lower()
        if key not in BENCHMARKS:
            close = difflib.get_close_matches(key, BENCHMARKS, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            valid = ", ".join(BENCHMARKS)
            raise KeyError(f"unknown tracker preset {benchmark!r}; {hint}valid presets: {valid}")
        if model_config is None:
            model_config = get_config(model if model in list_models() else "mixformer-22k")
        settings = model_config.tracking.settings(key, got10k_trained)
        return cls(
            template_size=model_config.template_size,
            search_size=model_config.search_size,
            **settings,
        )
