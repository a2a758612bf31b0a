"""MixFormer: end-to-end tracking with iterative mixed attention (CVPR 2022).

Quick use::

    import mixformer
    model = mixformer.build_model("mixformer-22k", weights="mixformer_cvt_online_22k.pth.tar")
    config = mixformer.TrackerConfig.preset("lasot", model="mixformer-22k")
    tracker = mixformer.Tracker(model, config)
    tracker.init(first_frame_rgb, (x, y, w, h))
    result = tracker.update(next_frame_rgb)   # result.box (x, y, w, h), result.score in [0, 1]
"""

from mixformer.models import CheckpointError, ModelConfig, build_model, list_models
from mixformer.tracking import MultiTracker, Tracker, TrackerConfig, TrackResult

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "ModelConfig",
    "MultiTracker",
    "Tracker",
    "TrackerConfig",
    "TrackResult",
    "__version__",
    "build_model",
    "list_models",
]
