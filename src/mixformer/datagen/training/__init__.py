"""Training data: sequence datasets, the SPEC 3.4 samplers and the SPEC 3.5 processing."""

from mixformer.datagen.training.datasets import (
    CompositeTrainDataset,
    CorruptImageError,
    SyntheticTrainDataset,
    TrainDataset,
    build_dataset,
)
from mixformer.datagen.training.processing import Processing, ProcessingConfig
from mixformer.datagen.training.sampler import SampleRNG, TrackingSampler, TrainingSamples

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
