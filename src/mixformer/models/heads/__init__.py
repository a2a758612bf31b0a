"""Box heads (corner, pyramid corner) and the Score Prediction Module, found through
:data:`mixformer.models.registry.HEADS`."""

from mixformer.models.heads import corner, corner_up  # noqa: F401  (registration)
from mixformer.models.heads.base import CornerHeadBase, HeadConfig, corner_prior
from mixformer.models.heads.corner import CornerConfig, CornerHead
from mixformer.models.heads.corner_up import CornerUpConfig, PyramidCornerHead
from mixformer.models.heads.score import ScorePredictionModule

__all__ = [
    "CornerConfig",
    "CornerHead",
    "CornerHeadBase",
    "CornerUpConfig",
    "HeadConfig",
    "PyramidCornerHead",
    "ScorePredictionModule",
    "corner_prior",
]
