"""Datasets: catalogs, dataset wrappers, samplers, loaders and the mapper registry.

Importing this package is what registers the built-in datasets (``.datasets.builtin``, no
disk access) and the mappers (``.mappers``), so that every process
(including spawned DDP and DataLoader workers) sees them; see :mod:`panoptic2.data.catalog`.
"""

from . import mappers, transforms
from .build import (
    DATA_MAPPER_REGISTRY,
    TRAIN_SAMPLER_REGISTRY,
    build_dataset_mapper,
    build_test_loader,
    build_train_loader,
    get_dataset_dicts,
    trivial_batch_collator,
    worker_init_reset_seed,
)
from .catalog import DatasetCatalog, Metadata, MetadataCatalog
from .common import DatasetFromList, MapDataset, PositionSeededDataset, derive_seed
from .datasets import builtin  # noqa: F401  (registers the builtin dataset names)
from .samplers import (
    AspectRatioGroupedBatchSampler,
    InferenceSampler,
    PositionTaggedSampler,
    RepeatFactorTrainingSampler,
    TrainingSampler,
    repeat_factors_from_category_frequency,
)

__all__ = [
    "mappers",
    "transforms",
    "DATA_MAPPER_REGISTRY",
    "TRAIN_SAMPLER_REGISTRY",
    "AspectRatioGroupedBatchSampler",
    "DatasetCatalog",
    "DatasetFromList",
    "InferenceSampler",
    "MapDataset",
    "Metadata",
    "MetadataCatalog",
    "PositionSeededDataset",
    "PositionTaggedSampler",
    "RepeatFactorTrainingSampler",
    "TrainingSampler",
    "build_dataset_mapper",
    "build_test_loader",
    "build_train_loader",
    "derive_seed",
    "get_dataset_dicts",
    "repeat_factors_from_category_frequency",
    "trivial_batch_collator",
    "worker_init_reset_seed",
]
