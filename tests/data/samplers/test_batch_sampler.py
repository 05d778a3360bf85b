import itertools

import pytest

from panoptic2.data.samplers import (
    AspectRatioGroupedBatchSampler,
    PositionTaggedSampler,
    TrainingSampler,
)


def test_position_tagged_sampler_uses_sampler_positions():
    sampler = TrainingSampler(5, seed=1, start=3, rank=1, world_size=2)
    tagged = list(itertools.islice(PositionTaggedSampler(sampler), 6))
    assert tagged == list(itertools.islice(sampler.iter_with_positions(), 6))
    assert [p for p, _ in tagged] == [4, 6, 8, 10, 12, 14]


def test_position_tagged_sampler_fallback_for_plain_samplers():
    assert list(PositionTaggedSampler([7, 3, 5])) == [(0, 7), (1, 3), (2, 5)]
    assert len(PositionTaggedSampler([7, 3, 5])) == 3

    class Shard:
        rank, world_size = 1, 3

        def __iter__(self):
            return iter([4, 2])

    assert list(PositionTaggedSampler(Shard())) == [(1, 4), (4, 2)]


def test_aspect_ratio_grouping_batches_are_homogeneous_and_ordered():
    group_ids = [1, 0, 0, 1, 1, 0, 1, 0]
    stream = [(p, i) for p, i in enumerate([0, 1, 2, 3, 4, 5, 6, 7, 3, 1])]
    batches = list(AspectRatioGroupedBatchSampler(stream, group_ids, batch_size=2))
    # Hand-computed: buckets fill in stream order and flush when they reach 2 elements.
    assert batches == [
        [(1, 1), (2, 2)],
        [(0, 0), (3, 3)],
        [(4, 4), (6, 6)],
        [(5, 5), (7, 7)],
    ]
    # Plain index streams work too.
    assert list(AspectRatioGroupedBatchSampler([0, 1, 3, 2], group_ids, 2)) == [[0, 3], [1, 2]]
    with pytest.raises(ValueError, match="batch_size"):
        AspectRatioGroupedBatchSampler(stream, group_ids, 0)
