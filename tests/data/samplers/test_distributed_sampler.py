import itertools
import math
import time
from collections import Counter

import pytest
import torch
from torch.utils.data import BatchSampler, DataLoader

from panoptic2.data.samplers import (
    InferenceSampler,
    RepeatFactorTrainingSampler,
    TrainingSampler,
    repeat_factors_from_category_frequency,
)


def take(iterable, n):
    return list(itertools.islice(iterable, n))


# --------------------------------------------------------------------------- TrainingSampler


def test_training_sampler_epochs_are_permutations_and_reproducible():
    size = 50
    stream = take(TrainingSampler(size, seed=3), 3 * size)
    epochs = [stream[i * size : (i + 1) * size] for i in range(3)]
    for epoch in epochs:
        assert sorted(epoch) == list(range(size))
    assert epochs[0] != epochs[1] and epochs[0] != list(range(size))
    assert take(TrainingSampler(size, seed=3), 3 * size) == stream
    assert take(TrainingSampler(size, seed=4), 3 * size) != stream


def test_training_sampler_without_shuffle_repeats_range():
    assert take(TrainingSampler(4, shuffle=False, seed=0), 10) == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]


@pytest.mark.parametrize("world_size", [2, 3])
def test_training_sampler_ranks_interleave_to_single_rank_stream(world_size):
    size, n = 7, 40
    full = take(TrainingSampler(size, seed=5, rank=0, world_size=1), n * world_size)
    shards = [
        take(TrainingSampler(size, seed=5, rank=r, world_size=world_size), n)
        for r in range(world_size)
    ]
    interleaved = [shards[k % world_size][k // world_size] for k in range(n * world_size)]
    assert interleaved == full


@pytest.mark.parametrize("start", [0, 1, 6, 7, 8, 3 * 7 + 5])
@pytest.mark.parametrize("world_size", [1, 2])
def test_training_sampler_start_equals_iterating_and_dropping(start, world_size):
    # Skip `start` elements of the global (1-rank) stream, then deal the rest round-robin.
    size, n = 7, 30
    full = take(TrainingSampler(size, seed=9, rank=0, world_size=1), start + n * world_size)
    remaining = full[start:]
    for rank in range(world_size):
        resumed = TrainingSampler(size, seed=9, start=start, rank=rank, world_size=world_size)
        assert take(resumed, n) == remaining[rank::world_size]
        positions = [p for p, _ in take(resumed.iter_with_positions(), n)]
        assert positions == list(range(start + rank, start + n * world_size, world_size))


def test_training_sampler_positions_are_global():
    pairs = take(TrainingSampler(5, seed=0, start=4, rank=1, world_size=2).iter_with_positions(), 4)
    assert [p for p, _ in pairs] == [5, 7, 9, 11]


def test_training_sampler_skips_huge_start_in_constant_time():
    t0 = time.perf_counter()
    far = take(TrainingSampler(1000, seed=1, start=10**12), 5)
    nearer = take(TrainingSampler(1000, seed=1, start=10**12 - 3), 8)
    assert time.perf_counter() - t0 < 1.0
    assert far == nearer[3:]
    assert all(0 <= i < 1000 for i in far)


def test_training_sampler_default_seed_and_shard():
    sampler = TrainingSampler(10)  # seed from comm.shared_random_seed(), single process
    assert isinstance(sampler.seed, int) and 0 <= sampler.seed < 2**31
    assert (sampler.rank, sampler.world_size) == (0, 1)


def test_training_sampler_rejects_bad_arguments():
    with pytest.raises(ValueError, match="size"):
        TrainingSampler(0, seed=0)
    with pytest.raises(ValueError, match="start"):
        TrainingSampler(3, seed=0, start=-1)
    with pytest.raises(ValueError, match="non-negative"):
        TrainingSampler(3, seed=-2)
    with pytest.raises(ValueError, match="rank=2, world_size=2"):
        TrainingSampler(3, seed=0, rank=2, world_size=2)


# ------------------------------------------------------------------- repeat-factor sampling


def test_repeat_factors_from_category_frequency_matches_hand_computation():
    dicts = [
        {"annotations": [{"category_id": 1}, {"category_id": 2}]},
        {"annotations": [{"category_id": 1}], "segments_info": [{"category_id": 3}]},
        {"segments_info": [{"category_id": 1}, {"category_id": 3}, {"category_id": 3}]},
        {"annotations": [{"category_id": 1}]},
        {},
    ]
    # Image frequencies: f(1) = 4/5, f(2) = 1/5, f(3) = 2/5; threshold t = 0.8.
    # sqrt rule: r(1) = max(1, 1) = 1, r(2) = sqrt(4) = 2, r(3) = sqrt(2).
    got = repeat_factors_from_category_frequency(dicts, 0.8)
    assert got.dtype == torch.float32
    expected = torch.tensor([2.0, math.sqrt(2), math.sqrt(2), 1.0, 1.0])
    torch.testing.assert_close(got, expected)
    # Without sqrt: r(2) = 4, r(3) = 2.
    got = repeat_factors_from_category_frequency(dicts, 0.8, sqrt=False)
    torch.testing.assert_close(got, torch.tensor([4.0, 2.0, 2.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="positive"):
        repeat_factors_from_category_frequency(dicts, 0.0)


def test_repeat_factor_sampler_integer_factors_fix_epoch_content():
    sampler = RepeatFactorTrainingSampler([1.0, 2.0, 3.0], seed=0)
    stream = take(sampler, 18)
    for e in range(3):
        assert Counter(stream[6 * e : 6 * e + 6]) == {0: 1, 1: 2, 2: 3}
    unshuffled = take(RepeatFactorTrainingSampler([1.0, 2.0, 3.0], shuffle=False, seed=0), 6)
    assert unshuffled == [0, 1, 1, 2, 2, 2]


def test_repeat_factor_sampler_stochastic_rounding_mean():
    # Items 0..49 appear 1 or 2 times per epoch (mean 1.25); items 50..99 exactly once.
    sampler = RepeatFactorTrainingSampler([1.25] * 50 + [1.0] * 50, seed=7)
    stream = take(sampler, 2000)
    counts = Counter(i < 50 for i in stream)
    assert abs(counts[True] / counts[False] - 1.25) < 0.06
    # Stochastic rounding makes epoch lengths vary between 100 and 150.
    first_epoch_len = next(k for k in range(100, 151) if len(set(stream[:k])) == 100)
    assert 100 < first_epoch_len <= 150


@pytest.mark.parametrize("start", [0, 1, 5, 37, 123])
def test_repeat_factor_sampler_start_and_ranks(start):
    factors = [1.5, 0.5, 2.7, 1.0]
    n = 40
    full = take(RepeatFactorTrainingSampler(factors, seed=2, world_size=1, rank=0), start + 2 * n)
    resumed = take(RepeatFactorTrainingSampler(factors, seed=2, start=start, world_size=1), n)
    assert resumed == full[start : start + n]
    shards = [
        take(RepeatFactorTrainingSampler(factors, seed=2, start=start, rank=r, world_size=2), n)
        for r in range(2)
    ]
    assert [shards[k % 2][k // 2] for k in range(2 * n)] == full[start : start + 2 * n]


def test_repeat_factor_sampler_rejects_bad_factors():
    with pytest.raises(ValueError, match="non-negative"):
        RepeatFactorTrainingSampler([1.0, -1.0], seed=0)
    with pytest.raises(ValueError, match="not all zero"):
        RepeatFactorTrainingSampler([0.0, 0.0], seed=0)
    with pytest.raises(ValueError, match="empty"):
        RepeatFactorTrainingSampler([], seed=0)


# -------------------------------------------------------------------------- InferenceSampler


@pytest.mark.parametrize("size,world_size", [(10, 3), (10, 1), (2, 3), (0, 2), (9, 4)])
def test_inference_sampler_contiguous_balanced_shards(size, world_size):
    shards = [
        list(InferenceSampler(size, rank=r, world_size=world_size)) for r in range(world_size)
    ]
    assert [i for shard in shards for i in shard] == list(range(size))
    lengths = [len(s) for s in shards]
    assert max(lengths) - min(lengths) <= 1
    assert lengths == [
        len(InferenceSampler(size, rank=r, world_size=world_size)) for r in range(world_size)
    ]
    for shard in shards:
        assert shard == list(range(shard[0], shard[0] + len(shard))) if shard else True


def test_inference_sampler_two_workers_two_ranks_visit_each_item_once():
    size = 11
    dataset = list(range(100, 100 + size))
    seen = []
    for rank in range(2):
        sampler = InferenceSampler(size, rank=rank, world_size=2)
        loader = DataLoader(
            dataset,
            batch_sampler=BatchSampler(sampler, batch_size=2, drop_last=False),
            num_workers=2,
            collate_fn=list,
        )
        seen.extend(x for batch in loader for x in batch)
    assert sorted(seen) == dataset
    assert len(seen) == size
