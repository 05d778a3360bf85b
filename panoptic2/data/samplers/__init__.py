"""Samplers: which dataset indices each rank loads, in which order and batches."""

from .batch_sampler import AspectRatioGroupedBatchSampler, PositionTaggedSampler
from .distributed_sampler import (
    InferenceSampler,
    RepeatFactorTrainingSampler,
    TrainingSampler,
    repeat_factors_from_category_frequency,
)

__all__ = [
    "AspectRatioGroupedBatchSampler",
    "InferenceSampler",
    "PositionTaggedSampler",
    "RepeatFactorTrainingSampler",
    "TrainingSampler",
    "repeat_factors_from_category_frequency",
]
