"""Box heads (corner, pyramid corner, MixFormerV2 MLP) and the score modules, found through
:data:`mixformer.models.registry.HEADS`."""

from mixformer.models.heads import corner, corner_up, mlp  # noqa: F401  (registration)
from mixformer.models.heads.base import CornerHeadBase, HeadConfig, corner_prior
from mixformer.models.heads.corner import CornerConfig, CornerHead
from mixformer.models.heads.corner_up import CornerUpConfig, PyramidCornerHead
from mixformer.models.heads.mlp import MlpBoxHead, MlpHeadConfig
from mixformer.models.heads.mlp_score import MlpScoreHead
from mixformer.models.heads.score import ScorePredictionModule

__all__ = [
    "CornerConfig",
    "CornerHead",
    "CornerHeadBase",
    "CornerUpConfig",
    "HeadConfig",
    "MlpBoxHead",
    "MlpHeadConfig",
    "MlpScoreHead",
    "PyramidCornerHead",
    "ScorePredictionModule",
    "corner_prior",
]
