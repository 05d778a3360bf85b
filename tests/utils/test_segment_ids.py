"""Tests of panoptic2.utils.segment_ids against np.unique / np.searchsorted."""

from __future__ import annotations

import numpy as np

from panoptic2.utils.segment_ids import SegmentLookup, unique_ids


def test_lookup_is_clean_after_each_call():
    lookup = SegmentLookup()
    rows = lookup(np.array([[5, 0, 7]]), np.array([7, 5]), 0)
    assert rows.tolist() == [[2, 0, 1]]
    assert lookup(np.array([[5, 7]]), np.array([5]), 0).tolist() == [[1, -1]]


def test_lookup_table_and_searchsorted_paths_agree():
    rng = np.random.default_rng(1)
    segment_ids = rng.choice(np.arange(1, 1 << 24), size=30, replace=False)
    id_map = rng.choice(np.append(segment_ids, [0, 12345678]), size=(9, 11))
    expected = np.full(id_map.shape, -1)
    expected[id_map == 0] = 0
    for k, v in enumerate(segment_ids):
        expected[id_map == v] = (k + 1) * 31
    lookup = SegmentLookup()
    assert np.array_equal(lookup(id_map, segment_ids, 0, scale=31), expected)  # table
    shifted = id_map.astype(np.int64) + (1 << 30)  # beyond the table: searchsorted
    segments = segment_ids + (1 << 30)
    assert np.array_equal(lookup(shifted, segments, 1 << 30, scale=31), expected)


def test_unique_ids_equals_np_unique():
    rng = np.random.default_rng(2)
    maps = [
        np.repeat(rng.integers(-1, 9, size=(7, 5)), 3, axis=1),  # runs, negative ids
        rng.integers(0, 1 << 24, size=(6, 4)).astype(np.uint32),  # no runs
        np.full((3, 3), 4),
        np.zeros((0, 5), dtype=np.int64),
    ]
    for id_map in maps:
        got = unique_ids(id_map)
        assert np.array_equal(got, np.unique(id_map)) and got.dtype == id_map.dtype
