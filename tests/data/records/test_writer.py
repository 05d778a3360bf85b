"""Tests of panoptic2/data/records/writer.py: shard names and split, parallelism, resume,
and the manifest that decides whether a rerun may reuse shards."""

from __future__ import annotations

import functools
import os

import pytest

from panoptic2.data.records import (
    RecordsMismatchError,
    find_shard_sets,
    read_manifest,
    read_record_file,
    shard_filename,
    shard_ranges,
    write_sharded_records,
)

OLD_NS = 1_000_000_000  # an mtime no rewrite can produce by chance


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
    names = sorted(os.listdir(tmp_path))
    assert names == sorted([os.path.basename(p) for p in paths] + ["val.manifest.json"])
    manifest = read_manifest(str(tmp_path / "val.manifest.json"))
    assert manifest["status"] == "complete"
    assert (manifest["split"], manifest["num_shards"], manifest["num_records"]) == ("val", 3, 7)


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
    write_sharded_records(out, "train", list(range(4)), new_fn, 2, overwrite=True)
    assert list(read_record_file(paths[1])) == [b"new2", b"new3"]


def _age(paths: list[str]) -> None:
    for path in paths:
        os.utime(path, ns=(OLD_NS, OLD_NS))


def _settings(**settings) -> dict:
    return {"converter": "test", "settings": settings, "inputs": {"a.jpg": [3, 5]}}


def test_identical_rerun_writes_nothing(tmp_path):
    out = str(tmp_path)
    calls = []

    def counting(item: int) -> bytes:
        calls.append(item)
        return _payload(item)

    manifest = _settings(label_format="raw")
    paths = write_sharded_records(out, "val", list(range(5)), counting, 2, manifest=manifest)
    assert len(calls) == 5
    _age(paths + [os.path.join(out, "val.manifest.json")])
    write_sharded_records(out, "val", list(range(5)), counting, 2, manifest=dict(manifest))
    assert len(calls) == 5  # nothing converted again
    assert {os.stat(os.path.join(out, n)).st_mtime_ns for n in os.listdir(out)} == {OLD_NS}


def test_changed_manifest_refuses_then_overwrite(tmp_path):
    out = str(tmp_path)
    write_sharded_records(out, "val", list(range(4)), _payload, 2, manifest=_settings(fmt="raw"))
    with pytest.raises(RecordsMismatchError, match=r"fmt: raw -> png16.*--overwrite") as info:
        write_sharded_records(
            out, "val", list(range(4)), _payload, 2, manifest=_settings(fmt="png16")
        )
    assert f"val records in {out} do not match" in str(info.value)
    new_fn = functools.partial(_payload, prefix=b"new")
    paths = write_sharded_records(
        out, "val", list(range(4)), new_fn, 2, manifest=_settings(fmt="png16"), overwrite=True
    )
    assert [r for p in paths for r in read_record_file(p)] == [b"new0", b"new1", b"new2", b"new3"]
    assert read_manifest(os.path.join(out, "val.manifest.json"))["settings"] == {"fmt": "png16"}


def test_other_shard_count_refused_and_overwrite_removes_it(tmp_path):
    out = str(tmp_path)
    write_sharded_records(out, "val", list(range(4)), _payload, 2)
    write_sharded_records(out, "train", list(range(4)), _payload, 2)
    with pytest.raises(RecordsMismatchError) as info:
        write_sharded_records(out, "val", list(range(4)), _payload, 4)
    message = str(info.value)
    assert "num_shards: 2 -> 4" in message
    assert "another shard set is there: val-*-of-00002.tfrecord (2 files)" in message
    # Even with a matching manifest, a stray set of another count is named.
    os.rename(os.path.join(out, "val-00000-of-00002.tfrecord"), os.path.join(out, "x"))
    open(os.path.join(out, "val-00000-of-00007.tfrecord"), "wb").close()
    with pytest.raises(RecordsMismatchError, match=r"val-\*-of-00007.tfrecord \(1 files\)"):
        write_sharded_records(out, "val", list(range(4)), _payload, 2)
    write_sharded_records(out, "val", list(range(4)), _payload, 4, overwrite=True)
    assert sorted(find_shard_sets(out, "val")) == [4]
    assert sorted(find_shard_sets(out, "train")) == [2]  # other splits are left alone


def test_shards_without_manifest_refused(tmp_path):
    out = str(tmp_path)
    write_sharded_records(out, "val", list(range(4)), _payload, 2)
    os.remove(os.path.join(out, "val.manifest.json"))
    with pytest.raises(RecordsMismatchError, match="2 shard files but no manifest"):
        write_sharded_records(out, "val", list(range(4)), _payload, 2)


class _Killed(Exception):
    """Stands in for SIGKILL: the run stops between two records."""


def _fail_after(limit: int, item: int) -> bytes:
    """The run dies when it reaches item ``limit``."""
    if item >= limit:
        raise _Killed
    return _payload(item)


def test_interrupted_run_resumes_with_same_manifest(tmp_path):
    out = str(tmp_path)
    items, manifest = list(range(6)), _settings(fmt="raw")
    with pytest.raises(_Killed):
        write_sharded_records(
            out, "val", items, functools.partial(_fail_after, 2), 3, manifest=manifest
        )
    shards = find_shard_sets(out, "val")[3]
    assert shards == ["val-00000-of-00003.tfrecord"]
    assert read_manifest(os.path.join(out, "val.manifest.json"))["status"] == "incomplete"
    # A killed worker's temp file is never taken for a shard.
    leftover = os.path.join(out, ".val-00001-of-00003.tfrecord.0123456789ab.tmp")
    with open(leftover, "wb") as f:
        f.write(b"partial")
    first = os.path.join(out, shards[0])
    _age([first])
    # Other flags after the kill: refused.
    with pytest.raises(RecordsMismatchError, match="fmt: raw -> png16"):
        write_sharded_records(out, "val", items, _payload, 3, manifest=_settings(fmt="png16"))
    # Same flags: the complete shard is reused, the others written.
    paths = write_sharded_records(out, "val", items, _payload, 3, manifest=manifest)
    assert os.stat(first).st_mtime_ns == OLD_NS
    assert not os.path.exists(leftover)
    assert [r for p in paths for r in read_record_file(p)] == [_payload(i) for i in items]
    assert read_manifest(os.path.join(out, "val.manifest.json"))["status"] == "complete"


def test_manifest_without_shards_is_replaced(tmp_path):
    out = str(tmp_path)
    with pytest.raises(_Killed):  # dies before its first shard
        write_sharded_records(
            out, "val", [0, 1], functools.partial(_fail_after, 0), 1, manifest=_settings(f=1)
        )
    assert os.listdir(out) == ["val.manifest.json"]
    write_sharded_records(out, "val", [0, 1], _payload, 1, manifest=_settings(f=2))
    assert read_manifest(os.path.join(out, "val.manifest.json"))["settings"] == {"f": 2}


def _failing(item: int) -> bytes:
    if item == 3:
        raise ValueError("Image 3, segment 9: broken")
    return b"ok"


def test_error_leaves_no_partial_shard(tmp_path):
    with pytest.raises(ValueError, match="Image 3, segment 9"):
        write_sharded_records(str(tmp_path), "val", list(range(4)), _failing, 2, workers=2)
    # The failed shard never appears; a temp file a terminated worker may leave is hidden
    # and removed by the next run.
    shards = [p for p in os.listdir(tmp_path) if p.endswith(".tfrecord") and p[0] != "."]
    assert set(shards) <= {"val-00000-of-00002.tfrecord"}
    assert read_manifest(str(tmp_path / "val.manifest.json"))["status"] == "incomplete"
    for p in shards:
        assert list(read_record_file(str(tmp_path / p))) == [b"ok", b"ok"]
