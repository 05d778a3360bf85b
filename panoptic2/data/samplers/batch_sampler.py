"""Batch samplers over ``(position, index)`` streams.

The training loader batches in the main process (a DataLoader ``batch_sampler``), so the
content of every batch is fixed before any worker sees it and cannot depend on the number of
workers or on their timing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

__all__ = ["PositionTaggedSampler", "AspectRatioGroupedBatchSampler"]


class PositionTaggedSampler(Sampler[tuple[int, int]]):
    """Adapt an index sampler to yield ``(global_position, index)`` pairs.

    Samplers of this package provide ``iter_with_positions()`` and are used as they are.
    For any other sampler, the ``k``-th index of this process is given the position
    ``k * world_size + rank`` (``rank``/``world_size`` taken from the sampler's attributes
    when present, else 0 and 1); such a sampler has no notion of ``start``, so exact resume
    is then the sampler's own business.

    Args:
        sampler: An iterable of dataset indices.
    """

    def __init__(self, sampler: Iterable[int]) -> None:
        self.sampler = sampler

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if hasattr(self.sampler, "iter_with_positions"):
            yield from self.sampler.iter_with_positions()
            return
        rank = int(getattr(self.sampler, "rank", 0))
        world_size = int(getattr(self.sampler, "world_size", 1))
        for k, index in enumerate(self.sampler):
            yield k * world_size + rank, int(index)

    def __len__(self) -> int:
        return len(self.sampler)  # type: ignore[arg-type]


class AspectRatioGroupedBatchSampler(Sampler[list]):
    """Batch elements so that each batch holds only landscape or only portrait images.

    Elements are put in one bucket per group, in stream order; a bucket is emitted as a batch
    as soon as it holds ``batch_size`` elements. Grouping uses the dataset dicts' ``width``
    and ``height`` (before mapping), in the main process, so batches do not depend on the
    number of workers (Detectron2 groups after mapping, inside workers, where they do).

    Caveats: consecutive batches are no longer consecutive stream slices, so the batches of
    several ranks do not union to the single-process batch, and elements left in the buckets
    when a run stops are not replayed on resume (the resumed stream is exact, the grouping of
    the first batches after it is not).

    Args:
        sampler: Yields ``(position, index)`` pairs (see :class:`PositionTaggedSampler`) or
            plain indices.
        group_ids: Group of each dataset index, shape ``(N,)``; e.g. 1 for width > height.
        batch_size: Elements per batch.
    """

    def __init__(
        self, sampler: Iterable, group_ids: Sequence[int] | np.ndarray, batch_size: int
    ) -> None:
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}.")
        self.sampler = sampler
        self.group_ids = np.asarray(group_ids, dtype=np.int64)
        self.batch_size = batch_size

    def __iter__(self) -> Iterator[list]:
        buckets: dict[int, list] = {}
        for element in self.sampler:
            index = element[1] if isinstance(element, tuple) else element
            bucket = buckets.setdefault(int(self.group_ids[index]), [])
            bucket.append(element)
            if len(bucket) == self.batch_size:
                yield bucket[:]
                bucket.clear()
