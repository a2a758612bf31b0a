"""Training data: sequence datasets, the SPEC 3.4 samplers and the SPEC 3.5 processing."""

from mixformer.data.training.datasets import (
    CompositeTrainDataset,
    CorruptImageError,
    SyntheticTrainDataset,
    TrainDataset,
    build_dataset,
)
from mixformer.data.training.processing import Processing, ProcessingConfig
from mixformer.data.training.sampler import SampleRNG, TrackingSampler, TrainingSamples

__all__ = [
    "CompositeTrainDataset",
    "CorruptImageError",
    "Processing",
    "ProcessingConfig",
    "SampleRNG",
    "SyntheticTrainDataset",
    "TrackingSampler",
    "TrainDataset",
    "TrainingSamples",
    "build_dataset",
]
