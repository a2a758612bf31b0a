"""Stateful tracking on top of the stateless network."""

from mixformer.tracking.checks import check_box, check_image
from mixformer.tracking.config import BENCHMARKS, TrackerConfig
from mixformer.tracking.engines import Engine, engine
from mixformer.tracking.multi import MultiTracker
from mixformer.tracking.results import Observation, TrackAttention, TrackResult
from mixformer.tracking.tracker import Tracker
from mixformer.tracking.video import VideoFrame, track_video

__all__ = [
    "BENCHMARKS",
    "Engine",
    "MultiTracker",
    "Observation",
    "TrackAttention",
    "TrackResult",
    "Tracker",
    "TrackerConfig",
    "VideoFrame",
    "check_box",
    "check_image",
    "engine",
    "track_video",
]
