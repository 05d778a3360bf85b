"""Build dataset dicts, mappers and data loaders from names or a config.

Determinism contract of the training loader (the engine's exact-resume and
1-vs-N-process tests rely on it):

* Batches are formed in the main process by a ``batch_sampler`` over an infinite sampler
  (:class:`~panoptic2.data.samplers.TrainingSampler` or
  :class:`~panoptic2.data.samplers.RepeatFactorTrainingSampler`). Rank ``r``'s ``i``-th
  batch is its sampler's elements ``[i*b, (i+1)*b)``, ``b = total_batch_size / world_size``;
  the union over ranks of the ``i``-th batches is the ``i``-th batch of a single process
  with the same total batch size.
* Every sample is mapped under RNGs seeded from ``(seed, global stream position)``
  (:class:`~panoptic2.data.common.PositionSeededDataset`), so augmentations depend neither
  on ``num_workers`` nor on the number of ranks.
* ``start_iter`` skips ``start_iter * total_batch_size`` global stream positions, so a
  resumed run sees exactly the batches the uninterrupted run would have seen. When the
  caller gives no ``start_iter``/``seed``, they come from the
  :func:`~panoptic2.data.loader_position.train_loader_position` the trainer set.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils import data

from panoptic2.config import configurable
from panoptic2.registry import DATA_MAPPER_REGISTRY, TRAIN_SAMPLER_REGISTRY
from panoptic2.utils import comm

from .catalog import DatasetCatalog
from .common import DatasetFromList, MapDataset, PositionSeededDataset, derive_seed
from .loader_position import current_train_loader_position
from .samplers import (
    AspectRatioGroupedBatchSampler,
    InferenceSampler,
    PositionTaggedSampler,
    RepeatFactorTrainingSampler,
    TrainingSampler,
    repeat_factors_from_category_frequency,
)

__all__ = [
    "DATA_MAPPER_REGISTRY",
    "TRAIN_SAMPLER_REGISTRY",
    "build_dataset_mapper",
    "build_test_loader",
    "build_train_loader",
    "get_dataset_dicts",
    "trivial_batch_collator",
    "worker_init_reset_seed",
]

logger = logging.getLogger(__name__)


# Salt mixed into the seed of the DataLoader's own generator (which seeds its workers), so
# it differs from the sampler's epoch seeds derived from the same base seed.
_LOADER_GENERATOR_SALT = 0x5EED


def get_dataset_dicts(names: Sequence[str], filter_empty: bool = False) -> list[dict]:
    """Load and concatenate registered datasets.

    Args:
        names: Dataset names registered in ``DatasetCatalog`` (a list or tuple, even for one
            dataset).
        filter_empty: Drop images without any non-crowd object, i.e. dicts whose
            ``annotations`` / ``segments_info`` exist but hold only crowd entries. Dicts with
            neither key (semantic-only datasets) are kept.

    Returns:
        The concatenated dataset dicts. Each carries ``dataset_name`` (set unless the reader
        set it), so mappers can name the dataset in errors and models can look up the
        metadata of the dataset being evaluated.

    Raises:
        TypeError: ``names`` is a string, or a dataset contains non-dict items.
        ValueError: ``names`` is empty, or a dataset (or the filtered result) is empty.
    """
    if isinstance(names, str):
        raise TypeError(
            f"get_dataset_dicts() expects a list of dataset names, got the string {names!r}. "
            f"Use [{names!r}]."
        )
    names = list(names)
    if not names:
        raise ValueError("get_dataset_dicts(): no dataset names given.")
    dataset_dicts: list[dict] = []
    for name in names:
        dicts = DatasetCatalog.get(name)
        if not dicts:
            raise ValueError(f"Dataset '{name}' is empty.")
        bad = next((i for i, d in enumerate(dicts) if not isinstance(d, dict)), None)
        if bad is not None:
            raise TypeError(
                f"Dataset '{name}': item {bad} is a {type(dicts[bad]).__name__}, not a dict."
            )
        for d in dicts:
            d.setdefault("dataset_name", name)
        dataset_dicts.extend(dicts)
    if filter_empty:
        before = len(dataset_dicts)
        dataset_dicts = [d for d in dataset_dicts if _has_objects(d)]
        logger.info(
            "Removed %d images without non-crowd objects from %s; %d left.",
            before - len(dataset_dicts),
            names,
            len(dataset_dicts),
        )
        if not dataset_dicts:
            raise ValueError(f"Datasets {names}: no image is left after filtering empty ones.")
    return dataset_dicts


def _has_objects(record: dict) -> bool:
    """Whether a dict has a non-crowd object, or carries no object annotations at all."""
    keys = [k for k in ("annotations", "segments_info") if k in record]
    if not keys:
        return True
    return any(not obj.get("iscrowd", 0) for k in keys for obj in record[k])


def build_dataset_mapper(
    cfg: Any, is_train: bool, dataset_name: str | None = None
) -> Callable[[dict], Any] | None:
    """Build the mapper named by ``cfg.INPUT.DATASET_MAPPER_NAME``.

    Args:
        cfg: The config.
        is_train: Build the training (augmenting) or the inference mapper.
        dataset_name: The dataset it will map, whose label space it uses; None: the
            datasets of ``DATASETS.TRAIN`` (training) or ``DATASETS.TEST[0]`` (inference).

    Returns:
        The mapper, or ``None`` when the name is ``""`` (loaders then pass dataset dicts
        through unchanged).

    Raises:
        KeyError: The name is not in ``DATA_MAPPER_REGISTRY`` (the message lists the names).
    """
    name = cfg.INPUT.DATASET_MAPPER_NAME
    if not name:
        return None
    return DATA_MAPPER_REGISTRY.get(name)(cfg, is_train, dataset_name)


def trivial_batch_collator(batch: list[Any]) -> list[Any]:
    """Return the batch as the list of samples (models take ``list[dict]``)."""
    return batch


def worker_init_reset_seed(worker_id: int) -> None:
    """Seed numpy and python ``random`` in a DataLoader worker from torch's worker seed.

    torch already seeds each worker's torch RNG with ``base_seed + worker_id``; without this,
    forked workers would share the parent's numpy state. Training samples are reseeded per
    position anyway; this covers everything else a worker may draw.

    Args:
        worker_id: Index of the worker (unused; torch's seed already includes it).
    """
    del worker_id
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def _group_ids(dataset: list[dict] | data.Dataset) -> np.ndarray:
    """1 for images with width > height, else 0, from the dataset dicts, shape ``(N,)``."""
    ids = np.zeros(len(dataset), dtype=np.uint8)
    for i in range(len(dataset)):
        record = dataset[i]
        try:
            ids[i] = record["width"] > record["height"]
        except (KeyError, TypeError):
            raise KeyError(
                f"Aspect-ratio grouping needs 'width' and 'height' in every dataset dict; "
                f"item {i} has keys {sorted(record) if isinstance(record, dict) else record!r}."
            ) from None
    return ids


def _as_dicts(dataset: list[dict] | data.Dataset) -> list[dict]:
    return dataset if isinstance(dataset, list) else [dataset[i] for i in range(len(dataset))]


@TRAIN_SAMPLER_REGISTRY.register(name="TrainingSampler")
def _make_training_sampler(dataset, *, seed: int, start: int, repeat_threshold: float):
    return TrainingSampler(len(dataset), seed=seed, start=start)


@TRAIN_SAMPLER_REGISTRY.register(name="RepeatFactorTrainingSampler")
def _make_repeat_factor_sampler(dataset, *, seed: int, start: int, repeat_threshold: float):
    if repeat_threshold <= 0:
        raise ValueError(
            "RepeatFactorTrainingSampler needs DATALOADER.REPEAT_THRESHOLD > 0, got "
            f"{repeat_threshold}."
        )
    factors = repeat_factors_from_category_frequency(_as_dicts(dataset), repeat_threshold)
    return RepeatFactorTrainingSampler(factors, seed=seed, start=start)


def _worker_kwargs(
    num_workers: int, prefetch_factor: int, persistent_workers: bool, mp_context: Any
) -> dict[str, Any]:
    """DataLoader arguments that are only valid with worker processes."""
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}.")
    if num_workers == 0:
        return {}
    return {
        "prefetch_factor": prefetch_factor,
        "persistent_workers": persistent_workers,
        "multiprocessing_context": mp_context,
    }


def _to_map_dataset(dataset: list[dict] | data.Dataset) -> data.Dataset:
    if isinstance(dataset, list):
        return DatasetFromList(dataset, copy=False)
    if isinstance(dataset, data.IterableDataset) or not hasattr(dataset, "__getitem__"):
        raise TypeError(
            f"The loaders need a list or a map-style dataset, got {type(dataset).__name__}: "
            "deterministic batching requires indexing."
        )
    return dataset


def _train_loader_from_config(
    cfg: Any, mapper: Callable | None = None, start_iter: int | None = None, *, dataset: Any = None
) -> dict[str, Any]:
    if dataset is None:
        dataset = get_dataset_dicts(
            cfg.DATASETS.TRAIN, filter_empty=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS
        )
    if mapper is None:
        mapper = build_dataset_mapper(cfg, True)
    return {
        "dataset": dataset,
        "mapper": mapper,
        "sampler": cfg.DATALOADER.SAMPLER_TRAIN,
        "repeat_threshold": cfg.DATALOADER.REPEAT_THRESHOLD,
        "total_batch_size": cfg.SOLVER.IMS_PER_BATCH,
        "aspect_ratio_grouping": cfg.DATALOADER.ASPECT_RATIO_GROUPING,
        "num_workers": cfg.DATALOADER.NUM_WORKERS,
        # A trainer-set position holds the run's data seed (checkpointed; may differ from
        # SEED, e.g. when SEED is negative): it takes precedence over the config's.
        "seed": None if current_train_loader_position() or cfg.SEED < 0 else cfg.SEED,
        "start_iter": start_iter,
    }


@configurable(from_config=_train_loader_from_config)
def build_train_loader(
    dataset: list[dict] | data.Dataset,
    *,
    mapper: Callable[[Any], Any] | None,
    total_batch_size: int,
    sampler: data.Sampler | str = "TrainingSampler",
    repeat_threshold: float = 0.0,
    aspect_ratio_grouping: bool = False,
    num_workers: int = 0,
    seed: int | None = None,
    start_iter: int | None = None,
    collate_fn: Callable[[list], Any] | None = None,
    prefetch_factor: int = 2,
    persistent_workers: bool = True,
    multiprocessing_context: Any = None,
    skip_none: bool = False,
) -> data.DataLoader:
    """Build the infinite training loader of this rank.

    Also callable as ``build_train_loader(cfg, mapper=None, start_iter=None)``: the datasets come
    from ``DATASETS.TRAIN``, the batch size from ``SOLVER.IMS_PER_BATCH``, the sampler from
    ``DATALOADER.SAMPLER_TRAIN`` / ``REPEAT_THRESHOLD``, the mapper from
    ``build_dataset_mapper(cfg, True)``, the seed from ``SEED`` (negative = random).

    Args:
        dataset: Unmapped dataset dicts (a list is stored as a :class:`DatasetFromList`) or a
            map-style dataset returning them.
        mapper: Maps a dataset dict to a model input; ``None`` passes dicts through.
        total_batch_size: Images per iteration summed over all ranks.
        sampler: A name in ``TRAIN_SAMPLER_REGISTRY``, or a sampler object (which then owns its
            ``start``, so ``start_iter`` must be 0). The per-rank batch size divides by the
            sampler's ``world_size`` attribute when it has one, else by the process count.
        repeat_threshold: Threshold of ``RepeatFactorTrainingSampler``.
        aspect_ratio_grouping: Batch landscape and portrait images separately (see
            :class:`~panoptic2.data.samplers.AspectRatioGroupedBatchSampler` for the
            determinism caveats); needs ``width``/``height`` in the dicts.
        num_workers: DataLoader worker processes (0 = load in the main process).
        seed: Seed of the sample stream and of per-sample augmentation; identical on all
            ranks. ``None``: the seed of the active
            :func:`~panoptic2.data.loader_position.train_loader_position`, else the
            sampler's ``seed``, else a shared random one.
        start_iter: Iteration to resume from; skips ``start_iter * total_batch_size`` stream
            positions. ``None``: the active ``train_loader_position``'s, else 0 (a sampler
            object ignores the position: it owns its start).
        collate_fn: Turns a list of samples into a batch; default keeps the list.
        prefetch_factor: Batches loaded ahead per worker (``num_workers > 0`` only).
        persistent_workers: Keep workers alive between iterations of the loader.
        multiprocessing_context: ``"fork"``, ``"spawn"``, ``"forkserver"`` or ``None`` (the
            platform default); with spawn, the dataset and mapper must be picklable.
        skip_none: Replace samples the mapper maps to ``None`` (see :class:`MapDataset`).

    Returns:
        A DataLoader yielding, forever, batches of ``total_batch_size / world_size`` mapped
        samples (a ``list`` unless ``collate_fn`` says otherwise).
    """
    if total_batch_size <= 0:
        raise ValueError(f"total_batch_size must be positive, got {total_batch_size}.")
    if start_iter is not None and start_iter < 0:
        raise ValueError(f"start_iter must be >= 0, got {start_iter}.")
    raw_dataset = dataset
    dataset = _to_map_dataset(dataset)
    if len(dataset) == 0:
        raise ValueError("build_train_loader(): the dataset is empty.")

    if isinstance(sampler, str):
        factory = TRAIN_SAMPLER_REGISTRY.get(sampler)
        position = current_train_loader_position()
        if position is not None:
            seed = position.seed if seed is None else seed
            if start_iter is None:
                start_iter = position.start_iter
                position.start_applied = True
        start_iter = start_iter or 0
        seed = int(comm.shared_random_seed()) if seed is None else seed
        sampler = factory(
            raw_dataset,
            seed=seed,
            start=start_iter * total_batch_size,
            repeat_threshold=repeat_threshold,
        )
    else:
        if start_iter:
            raise ValueError(
                "build_train_loader(): start_iter must be 0 when a sampler object is given; "
                "construct the sampler with start=start_iter * total_batch_size instead."
            )
        if seed is None:
            seed = getattr(sampler, "seed", None)
            seed = int(comm.shared_random_seed()) if seed is None else seed

    world_size = int(getattr(sampler, "world_size", comm.get_world_size()))
    if total_batch_size % world_size != 0:
        raise ValueError(
            f"Total batch size ({total_batch_size}) must be divisible by the number of "
            f"processes ({world_size})."
        )
    batch_size = total_batch_size // world_size

    if mapper is not None:
        dataset = MapDataset(dataset, mapper, skip_none=skip_none)
    dataset = PositionSeededDataset(dataset, seed)
    tagged = PositionTaggedSampler(sampler)
    if aspect_ratio_grouping:
        batch_sampler = AspectRatioGroupedBatchSampler(tagged, _group_ids(raw_dataset), batch_size)
    else:
        batch_sampler = data.BatchSampler(tagged, batch_size, drop_last=True)

    # An explicit generator keeps DataLoader from drawing worker seeds from (and thereby
    # advancing) the global torch RNG, and makes worker seeds a function of ``seed``.
    generator = torch.Generator()
    generator.manual_seed(derive_seed(seed, _LOADER_GENERATOR_SALT))
    return data.DataLoader(
        dataset,
        batch_sampler=batch_sampler,
        num_workers=num_workers,
        collate_fn=collate_fn or trivial_batch_collator,
        worker_init_fn=worker_init_reset_seed,
        generator=generator,
        **_worker_kwargs(num_workers, prefetch_factor, persistent_workers, multiprocessing_context),
    )


def _test_loader_from_config(
    cfg: Any, dataset_name: str | Sequence[str], mapper: Callable | None = None
) -> dict[str, Any]:
    names = [dataset_name] if isinstance(dataset_name, str) else list(dataset_name)
    if mapper is None:
        mapper = build_dataset_mapper(cfg, False, names[0])
    dicts = get_dataset_dicts(names)
    limit = int(cfg.TEST.MAX_IMAGES)
    if 0 < limit < len(dicts):
        logger.warning(
            "TEST.MAX_IMAGES %d: evaluating only the first %d of the %d images of %s",
            limit,
            limit,
            len(dicts),
            names,
        )
        dicts = dicts[:limit]
    return {"dataset": dicts, "mapper": mapper, "num_workers": cfg.DATALOADER.NUM_WORKERS}


@configurable(from_config=_test_loader_from_config)
def build_test_loader(
    dataset: list[dict] | data.Dataset,
    *,
    mapper: Callable[[Any], Any] | None,
    sampler: data.Sampler | None = None,
    batch_size: int = 1,
    num_workers: int = 0,
    collate_fn: Callable[[list], Any] | None = None,
    prefetch_factor: int = 2,
    persistent_workers: bool = False,
    multiprocessing_context: Any = None,
) -> data.DataLoader:
    """Build the finite inference loader of this rank.

    Also callable as ``build_test_loader(cfg, dataset_name, mapper=None)`` (``dataset_name``
    a name or a list of names; mapper from ``build_dataset_mapper(cfg, False, name)`` of the
    first name; workers from ``DATALOADER.NUM_WORKERS``; only the first ``TEST.MAX_IMAGES``
    images when that is positive).

    Args:
        dataset: Unmapped dataset dicts or a map-style dataset.
        mapper: Maps a dataset dict to a model input; ``None`` passes dicts through.
        sampler: Defaults to an :class:`InferenceSampler` (contiguous shard of this rank;
            every image exactly once over all ranks).
        batch_size: Images per batch on this rank.
        num_workers: DataLoader worker processes.
        collate_fn: Default keeps the list of samples.
        prefetch_factor: Batches loaded ahead per worker (``num_workers > 0`` only).
        persistent_workers: Keep workers alive between evaluations (memory vs start-up time).
        multiprocessing_context: As in :func:`build_train_loader`.

    Returns:
        A DataLoader over this rank's shard, in dataset order, the last batch possibly short.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}.")
    dataset = _to_map_dataset(dataset)
    if mapper is not None:
        dataset = MapDataset(dataset, mapper)
    if sampler is None:
        sampler = InferenceSampler(len(dataset))
    return data.DataLoader(
        dataset,
        batch_sampler=data.BatchSampler(sampler, batch_size, drop_last=False),
        num_workers=num_workers,
        collate_fn=collate_fn or trivial_batch_collator,
        worker_init_fn=worker_init_reset_seed,
        **_worker_kwargs(num_workers, prefetch_factor, persistent_workers, multiprocessing_context),
    )
