"""Index samplers that shard one global, seeded sample stream across ranks.

Training samplers define an infinite *global stream* of dataset indices that depends only on
the seed and the dataset (never on the number of ranks or workers). Rank ``r`` of ``W`` takes
the stream elements ``start + r``, ``start + r + W``, ``start + r + 2W``, ... so that the
union over ranks of the ``i``-th per-rank batches is exactly the ``i``-th batch of a
single-process run with the same total batch size, and ``start = start_iter * total_batch``
resumes the stream exactly.

Besides plain indices (``__iter__``, as torch expects), training samplers provide
``iter_with_positions()`` yielding ``(global_position, index)`` pairs, which
:class:`~panoptic2.data.common.PositionSeededDataset` uses to seed augmentations.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections import defaultdict
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler

from panoptic2.utils import comm

from ..common import derive_seed

__all__ = [
    "TrainingSampler",
    "InferenceSampler",
    "RepeatFactorTrainingSampler",
    "repeat_factors_from_category_frequency",
]

logger = logging.getLogger(__name__)


def _resolve_shard(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """Fill in ``rank``/``world_size`` from the process group and validate them."""
    rank = comm.get_rank() if rank is None else int(rank)
    world_size = comm.get_world_size() if world_size is None else int(world_size)
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"Invalid shard: rank={rank}, world_size={world_size}.")
    return rank, world_size


def _resolve_seed(seed: int | None) -> int:
    seed = int(comm.shared_random_seed()) if seed is None else int(seed)
    if seed < 0:
        raise ValueError(f"Sampler seed must be non-negative (or None for random), got {seed}.")
    return seed


class TrainingSampler(Sampler[int]):
    """Infinite stream of shuffled dataset indices, sharded across ranks.

    The global stream is the concatenation of epochs; epoch ``e`` is
    ``torch.randperm(size)`` drawn from a generator seeded with ``derive_seed(seed, e)``
    (or ``0..size-1`` without shuffling). Seeding per epoch lets ``start`` skip whole epochs
    arithmetically, in O(1), instead of drawing every skipped permutation.

    Args:
        size: Number of items in the dataset.
        shuffle: Shuffle each epoch.
        seed: Base seed; must be the same on all ranks. ``None`` draws one shared by all
            ranks (``comm.shared_random_seed()``).
        start: Number of global stream positions to skip (``start_iter * total_batch_size``
            to resume).
        rank: Shard to produce; defaults to the process's distributed rank.
        world_size: Number of shards; defaults to the distributed world size.
    """

    def __init__(
        self,
        size: int,
        shuffle: bool = True,
        seed: int | None = None,
        start: int = 0,
        *,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        if not isinstance(size, (int, np.integer)) or size <= 0:
            raise ValueError(f"TrainingSampler(size={size!r}): size must be a positive int.")
        if int(start) < 0:
            raise ValueError(f"TrainingSampler(start={start}): start must be >= 0.")
        self._size = int(size)
        self._shuffle = shuffle
        self.seed = _resolve_seed(seed)
        self.start = int(start)
        self.rank, self.world_size = _resolve_shard(rank, world_size)

    def _epoch_order(self, epoch: int) -> list[int]:
        """Return the dataset indices of global epoch ``epoch``, in stream order."""
        if not self._shuffle:
            return list(range(self._size))
        g = torch.Generator()
        g.manual_seed(derive_seed(self.seed, epoch))
        return torch.randperm(self._size, generator=g).tolist()

    def iter_with_positions(self) -> Iterator[tuple[int, int]]:
        """Yield ``(global_position, dataset_index)`` of this rank's elements, forever."""
        position = self.start + self.rank
        cur_epoch, order = -1, []
        while True:
            epoch, offset = divmod(position, self._size)
            if epoch != cur_epoch:
                cur_epoch, order = epoch, self._epoch_order(epoch)
            yield position, order[offset]
            position += self.world_size

    def __iter__(self) -> Iterator[int]:
        for _, index in self.iter_with_positions():
            yield index


class RepeatFactorTrainingSampler(Sampler[int]):
    """Like :class:`TrainingSampler`, but item ``i`` appears ``repeat_factors[i]`` times per
    epoch on average (class-balanced resampling, as in the LVIS paper).

    Epoch ``e`` draws, with a generator seeded by ``derive_seed(seed, e)``, a stochastic
    rounding of every factor (``floor(r) + Bernoulli(frac(r))``), repeats each index that many
    times and shuffles the result. Epoch lengths vary, so ``start`` is skipped epoch by epoch,
    drawing only the roundings (vectorised) of the skipped epochs, not their permutations.

    Args:
        repeat_factors: Float factor per dataset item, shape ``(N,)``; non-negative, not all
            zero.
        shuffle: Shuffle each epoch.
        seed: As in :class:`TrainingSampler`.
        start: As in :class:`TrainingSampler`.
        rank: As in :class:`TrainingSampler`.
        world_size: As in :class:`TrainingSampler`.
    """

    def __init__(
        self,
        repeat_factors: torch.Tensor | Sequence[float],
        shuffle: bool = True,
        seed: int | None = None,
        start: int = 0,
        *,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        factors = torch.as_tensor(repeat_factors, dtype=torch.float64).flatten()
        if factors.numel() == 0:
            raise ValueError("RepeatFactorTrainingSampler: repeat_factors is empty.")
        if not torch.isfinite(factors).all() or (factors < 0).any() or factors.sum() <= 0:
            raise ValueError(
                "RepeatFactorTrainingSampler: repeat_factors must be finite, non-negative and "
                "not all zero."
            )
        if int(start) < 0:
            raise ValueError(f"RepeatFactorTrainingSampler(start={start}): start must be >= 0.")
        self._int_part = torch.floor(factors)
        self._frac_part = factors - self._int_part
        self._shuffle = shuffle
        self.seed = _resolve_seed(seed)
        self.start = int(start)
        self.rank, self.world_size = _resolve_shard(rank, world_size)

    def _epoch_repeats(self, g: torch.Generator) -> torch.Tensor:
        """Draw the per-item repeat counts of one epoch, shape ``(N,)``, int64."""
        rands = torch.rand(self._frac_part.shape, generator=g, dtype=torch.float64)
        return (self._int_part + (rands < self._frac_part).to(torch.float64)).to(torch.int64)

    def _epoch_generator(self, epoch: int) -> torch.Generator:
        g = torch.Generator()
        g.manual_seed(derive_seed(self.seed, epoch))
        return g

    def _epoch_order(self, epoch: int) -> list[int]:
        g = self._epoch_generator(epoch)
        repeats = self._epoch_repeats(g)
        indices = torch.repeat_interleave(torch.arange(len(repeats)), repeats)
        if self._shuffle:
            indices = indices[torch.randperm(len(indices), generator=g)]
        return indices.tolist()

    def _epoch_length(self, epoch: int) -> int:
        return int(self._epoch_repeats(self._epoch_generator(epoch)).sum())

    def iter_with_positions(self) -> Iterator[tuple[int, int]]:
        """Yield ``(global_position, dataset_index)`` of this rank's elements, forever."""
        position = self.start + self.rank
        epoch, epoch_start = 0, 0
        # Skip whole epochs using their lengths only.
        while position >= epoch_start + (length := self._epoch_length(epoch)):
            epoch_start += length
            epoch += 1
        for cur_epoch in itertools.count(epoch):
            order = self._epoch_order(cur_epoch)
            while position < epoch_start + len(order):
                yield position, order[position - epoch_start]
                position += self.world_size
            epoch_start += len(order)

    def __iter__(self) -> Iterator[int]:
        for _, index in self.iter_with_positions():
            yield index


def _image_categories(record: dict) -> set[int]:
    """Category ids present in one dataset dict (instances and panoptic segments)."""
    cats = {ann["category_id"] for ann in record.get("annotations", ())}
    cats.update(seg["category_id"] for seg in record.get("segments_info", ()))
    return cats


def repeat_factors_from_category_frequency(
    dataset_dicts: Sequence[dict], repeat_thresh: float, *, sqrt: bool = True
) -> torch.Tensor:
    """Per-image repeat factors from category frequency (LVIS rule).

    For category ``c`` with image frequency ``f(c)`` (fraction of images containing it),
    ``r(c) = max(1, sqrt(t / f(c)))`` (``t / f(c)`` without ``sqrt``); an image's factor is
    the max over its categories, 1 for an image without categories. Categories come from
    ``annotations[*].category_id`` and ``segments_info[*].category_id``.

    Args:
        dataset_dicts: Standard dataset dicts.
        repeat_thresh: Frequency threshold ``t`` below which categories are oversampled.
        sqrt: Use the square root as in the LVIS paper.

    Returns:
        Repeat factors, shape ``(len(dataset_dicts),)``, float32.
    """
    if repeat_thresh <= 0:
        raise ValueError(f"repeat_thresh must be positive, got {repeat_thresh}.")
    num_images = len(dataset_dicts)
    if num_images == 0:
        raise ValueError("repeat_factors_from_category_frequency: dataset_dicts is empty.")
    per_image = [_image_categories(d) for d in dataset_dicts]
    image_count: dict[int, int] = defaultdict(int)
    for cats in per_image:
        for c in cats:
            image_count[c] += 1
    category_rep = {}
    for c, count in image_count.items():
        ratio = repeat_thresh / (count / num_images)
        category_rep[c] = max(1.0, math.sqrt(ratio) if sqrt else ratio)
    factors = [max((category_rep[c] for c in cats), default=1.0) for cats in per_image]
    return torch.tensor(factors, dtype=torch.float32)


class InferenceSampler(Sampler[int]):
    """Each rank gets a contiguous shard of ``range(size)``; every index is produced once.

    Shard sizes differ by at most one (the first ``size % world_size`` ranks get the extra
    item), so evaluators gathering results in rank order see the dataset order.

    Args:
        size: Number of items in the dataset.
        rank: Shard to produce; defaults to the distributed rank.
        world_size: Number of shards; defaults to the distributed world size.
    """

    def __init__(self, size: int, *, rank: int | None = None, world_size: int | None = None):
        if not isinstance(size, (int, np.integer)) or size < 0:
            raise ValueError(f"InferenceSampler(size={size!r}): size must be an int >= 0.")
        self._size = int(size)
        self.rank, self.world_size = _resolve_shard(rank, world_size)
        base, extra = divmod(self._size, self.world_size)
        begin = self.rank * base + min(self.rank, extra)
        self._local_indices = range(begin, begin + base + (1 if self.rank < extra else 0))

    def __iter__(self) -> Iterator[int]:
        return iter(self._local_indices)

    def __len__(self) -> int:
        return len(self._local_indices)
