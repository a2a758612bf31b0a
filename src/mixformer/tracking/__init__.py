"""Stateful tracking on top of the stateless network."""

from mixformer.tracking.checks import check_box, check_image
from mixformer.tracking.config import BENCHMARKS, TrackerConfig
from mixformer.tracking.multi import MultiTracker
from mixformer.tracking.results import Observation, TrackAttention, TrackResult
from mixformer.tracking.tracker import Tracker

__all__ = [
    "BENCHMARKS",
    "MultiTracker",
    "Observation",
    "TrackAttention",
    "TrackResult",
    "Tracker",
    "TrackerConfig",
    "check_box",
    "check_image",
]
