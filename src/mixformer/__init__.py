"""MixFormer: end-to-end tracking with iterative mixed attention (CVPR 2022).

Quick use::

    import mixformer
    model = mixformer.build_model("mixformer-22k", weights="mixformer_cvt_online_22k.pth.tar")
    config = mixformer.TrackerConfig.preset("lasot", model="mixformer-22k")
    tracker = mixformer.Tracker(model, config)
    tracker.init(first_frame_rgb, (x, y, w, h))
    result = tracker.update(next_frame_rgb)   # result.box (x, y, w, h), result.score in [0, 1]
"""

import os
import sys

if "torch" not in sys.modules:
    # OpenMP threads that spin while waiting for work (libgomp's default) starve everything else
    # on a shared CPU: on a loaded 2-core machine MixFormerV2-S took 570-664 ms per frame (fp32)
    # with 2 threads and 61-126 ms with passive waiting (README, --threads). Only a default: an
    # OMP_WAIT_POLICY already set wins, and it must be set before torch loads OpenMP.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from mixformer._version import __version__  # noqa: E402
from mixformer.models import CheckpointError, ModelConfig, build_model, list_models  # noqa: E402
from mixformer.tracking import (  # noqa: E402
    Engine,
    MultiTracker,
    Tracker,
    TrackerConfig,
    TrackResult,
    VideoFrame,
    engine,
    track_video,
)

__all__ = [
    "CheckpointError",
    "Engine",
    "ModelConfig",
    "MultiTracker",
    "Tracker",
    "TrackerConfig",
    "TrackResult",
    "VideoFrame",
    "__version__",
    "build_model",
    "engine",
    "list_models",
    "track_video",
]
