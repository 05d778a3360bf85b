import logging
import pickle
import random

import numpy as np
import pytest
import torch

from panoptic2.data.common import (
    DatasetFromList,
    MapDataset,
    PositionSeededDataset,
    derive_seed,
)


def _varied_dicts():
    return [
        {
            "file_name": "a/b/ü.png",
            "image_id": 0,
            "height": 3,
            "width": 5,
            "segments_info": [{"id": 1, "category_id": 7, "iscrowd": 0, "bbox": [0.5, 1, 2, 3]}],
        },
        {},
        {"image_id": "str_id", "sem_seg_file_name": None, "nested": {"x": [1, (2, 3)], "y": {4}}},
        {"array": np.arange(6, dtype=np.int32).reshape(2, 3), "tensor": torch.tensor([1.5, -2.0])},
        {"big": list(range(1000)), "bytes": b"\x00\xff"},
    ]


def _assert_same(a, b):
    assert type(a) is type(b)
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    else:
        assert a == b


@pytest.mark.parametrize("serialize", [True, False])
def test_dataset_from_list_round_trip(serialize):
    items = _varied_dicts()
    ds = DatasetFromList(items, copy=True, serialize=serialize)
    assert len(ds) == len(items)
    for i, item in enumerate(items):
        _assert_same(ds[i], item)
    _assert_same(ds[-1], items[-1])
    _assert_same(ds[np.int64(2)], items[2])


def test_dataset_from_list_storage_is_two_numpy_buffers():
    items = _varied_dicts()
    ds = DatasetFromList(items)
    arrays = [v for v in vars(ds).values() if isinstance(v, np.ndarray)]
    assert sorted(a.dtype for a in arrays) == sorted([np.dtype(np.uint8), np.dtype(np.int64)])
    # No per-item (or any other container) Python objects are kept.
    for value in vars(ds).values():
        assert isinstance(value, (np.ndarray, bool, int)), type(value)
    total = sum(len(pickle.dumps(x, protocol=-1)) for x in items)
    assert ds._buffer.nbytes == total
    assert ds._ends.shape == (len(items),)
    # Items are fresh objects: mutating one cannot corrupt the stored dataset.
    ds[0]["segments_info"].clear()
    assert len(ds[0]["segments_info"]) == 1


def test_dataset_from_list_copy_semantics_without_serialization():
    items = [{"a": [1]}]
    copied = DatasetFromList(items, copy=True, serialize=False)
    copied[0]["a"].append(2)
    assert items[0]["a"] == [1]
    shared = DatasetFromList(items, copy=False, serialize=False)
    assert shared[0] is items[0]


def test_dataset_from_list_errors_and_empty():
    ds = DatasetFromList([{"x": 1}, {"x": 2}])
    with pytest.raises(IndexError, match="Index 2 out of range for a dataset of 2"):
        ds[2]
    with pytest.raises(IndexError):
        ds[-3]
    with pytest.raises(TypeError, match="must be an int"):
        ds["0"]
    with pytest.raises(TypeError, match="list of items"):
        DatasetFromList("abc")
    assert len(DatasetFromList([])) == 0


def test_dataset_from_list_pickles_to_workers():
    ds = DatasetFromList(_varied_dicts())
    back = pickle.loads(pickle.dumps(ds))
    for i in range(len(ds)):
        _assert_same(back[i], ds[i])


def test_map_dataset_maps_and_rejects_none():
    ds = MapDataset(DatasetFromList([{"v": 1}, {"v": 2}]), lambda d: d["v"] * 10)
    assert len(ds) == 2
    assert [ds[0], ds[1]] == [10, 20]

    def drop_odd(d):
        return None if d["v"] % 2 else d["v"]

    strict = MapDataset(DatasetFromList([{"v": 1}, {"v": 2}]), drop_odd)
    with pytest.raises(ValueError, match="returned None for dataset item 0.*skip_none=True"):
        strict[0]
    with pytest.raises(TypeError, match="callable"):
        MapDataset(strict, None)


def test_map_dataset_skip_none_uses_next_item_and_counts(caplog):
    def drop_odd(d):
        return None if d["v"] % 2 else d["v"]

    ds = MapDataset(DatasetFromList([{"v": v} for v in [2, 3, 5, 6, 7]]), drop_odd, skip_none=True)
    with caplog.at_level(logging.WARNING, logger="panoptic2.data.common"):
        assert ds[1] == 6  # 3 and 5 are skipped
        assert ds[4] == 2  # wraps around
    assert ds.num_skipped == 3
    assert "3 items skipped so far" in caplog.text
    all_none = MapDataset(DatasetFromList([{"v": 1}]), drop_odd, skip_none=True)
    with pytest.raises(RuntimeError, match="all 1 dataset items"):
        all_none[0]


def test_derive_seed_is_deterministic_and_mixes():
    assert derive_seed(3, 4) == derive_seed(3, 4)
    seeds = {derive_seed(3, p) for p in range(1000)}
    assert len(seeds) == 1000
    assert derive_seed(3, 4) != derive_seed(4, 3)
    assert all(0 <= s < 2**64 for s in seeds)
    with pytest.raises(ValueError, match="non-negative"):
        derive_seed(-1, 0)


def _random_sample(d):
    return (d["i"], random.random(), float(np.random.rand()), float(torch.rand(())))


def test_position_seeded_dataset_depends_on_position_only():
    base = MapDataset(DatasetFromList([{"i": i} for i in range(4)]), _random_sample)
    ds = PositionSeededDataset(base, seed=11)
    a = ds[(5, 1)]
    assert a[0] == 1
    assert ds[(5, 1)] == a  # same position: same randomness
    assert ds[(5, 2)][1:] == a[1:]  # randomness is a function of position, not of index
    assert ds[(6, 1)][1:] != a[1:]
    assert PositionSeededDataset(base, seed=12)[(5, 1)] != a
    # Survives pickling (spawned workers).
    assert pickle.loads(pickle.dumps(ds))[(5, 1)] == a
    with pytest.raises(TypeError, match=r"\(position, index\)"):
        ds[1]
    with pytest.raises(ValueError, match="non-negative"):
        PositionSeededDataset(base, seed=-1)


def test_position_seeded_dataset_leaves_main_process_rng_untouched():
    base = MapDataset(DatasetFromList([{"i": 0}]), _random_sample)
    ds = PositionSeededDataset(base, seed=0)

    def draws():
        return random.random(), float(np.random.rand()), float(torch.rand(()))

    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    expected = draws()
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    ds[(0, 0)]
    ds[(1, 0)]
    assert draws() == expected
