"""Tests of panoptic2/data/records/writer.py: shard names and split, parallelism, resume."""

from __future__ import annotations

import functools
import os

import pytest

from panoptic2.data.records import (
    read_record_file,
    shard_filename,
    shard_ranges,
    write_sharded_records,
)


def _payload(item: int, prefix: bytes = b"item") -> bytes:
    return prefix + str(item).encode()


def test_shard_names_and_ranges():
    assert shard_filename("train", 7, 1000) == "train-00007-of-01000.tfrecord"
    # DeepLab2: ceil(10 / 4) = 3 per shard -> 3, 3, 3, 1.
    assert shard_ranges(10, 4) == [(0, 3), (3, 6), (6, 9), (9, 10)]
    # ceil(5 / 4) = 2 -> the last shard is empty but still exists.
    assert shard_ranges(5, 4) == [(0, 2), (2, 4), (4, 5), (5, 5)]
    assert shard_ranges(0, 2) == [(0, 0), (0, 0)]
    with pytest.raises(ValueError):
        shard_ranges(3, 0)


@pytest.mark.parametrize("workers", [1, 2])
def test_contents_in_order(tmp_path, workers):
    paths = write_sharded_records(
        str(tmp_path), "val", list(range(7)), _payload, 3, workers=workers
    )
    assert [os.path.basename(p) for p in paths] == [
        f"val-0000{i}-of-00003.tfrecord" for i in range(3)
    ]
    records = [r for p in paths for r in read_record_file(p)]
    assert records == [_payload(i) for i in range(7)]
    assert [len(list(read_record_file(p))) for p in paths] == [3, 3, 1]
    assert sorted(os.listdir(tmp_path)) == sorted(os.path.basename(p) for p in paths)


def test_resume_skips_complete_and_replaces_leftovers(tmp_path):
    out = str(tmp_path)
    paths = write_sharded_records(out, "train", list(range(4)), _payload, 2)
    os.utime(paths[1], ns=(1_000_000_000, 1_000_000_000))
    mtime = os.stat(paths[1]).st_mtime_ns
    os.remove(paths[0])
    # A temp file from a killed run (atomic_write's naming) holding garbage.
    leftover = os.path.join(out, ".train-00000-of-00002.tfrecord.0123456789ab.tmp")
    with open(leftover, "wb") as f:
        f.write(b"partial")
    new_fn = functools.partial(_payload, prefix=b"new")
    write_sharded_records(out, "train", list(range(4)), new_fn, 2)
    assert not os.path.exists(leftover)
    assert os.stat(paths[1]).st_mtime_ns == mtime  # untouched
    assert list(read_record_file(paths[0])) == [b"new0", b"new1"]  # rewritten
    assert list(read_record_file(paths[1])) == [b"item2", b"item3"]
    write_sharded_records(out, "train", list(range(4)), new_fn, 2, resume=False)
    assert list(read_record_file(paths[1])) == [b"new2", b"new3"]


def _failing(item: int) -> bytes:
    if item == 3:
        raise ValueError("Image 3, segment 9: broken")
    return b"ok"


def test_error_leaves_no_partial_shard(tmp_path):
    with pytest.raises(ValueError, match="Image 3, segment 9"):
        write_sharded_records(str(tmp_path), "val", list(range(4)), _failing, 2, workers=2)
    # The failed shard never appears; a temp file a terminated worker may leave is hidden
    # and removed by the next run.
    shards = [p for p in os.listdir(tmp_path) if not p.startswith(".")]
    assert set(shards) <= {"val-00000-of-00002.tfrecord"}
    for p in shards:
        assert list(read_record_file(str(tmp_path / p))) == [b"ok", b"ok"]
