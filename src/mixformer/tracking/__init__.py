"""Stateful tracking on top of the stateless network."""

from mixformer.tracking.config import BENCHMARKS, TrackerConfig
from mixformer.tracking.multi import MultiTracker
from mixformer.tracking.tracker import Tracker, TrackResult, check_box, check_image

__all__ = [
    "BENCHMARKS",
    "MultiTracker",
    "TrackResult",
    "Tracker",
    "TrackerConfig",
    "check_box",
    "check_image",
]
