"""Tests of panoptic2/data/records/index.py: the index beside the shards, and its use.

The expected entries come from reading the shard files in the test itself (the TFRecord
framing with ``struct``, the example with ``parse_example``), not from the module.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import struct
import subprocess
import sys

import pytest

from panoptic2.data.records import (
    convert_coco_dataset,
    index_filename,
    load_record_dicts,
    parse_example,
    tfrecord,
    write_split_index,
)
from panoptic2.data.records import dataset as records_dataset
from panoptic2.data.records import index as records_index

from .fixtures import make_coco_fixture

REPO = os.path.join(os.path.dirname(__file__), "..", "..", "..")
TOOL = os.path.join(REPO, "tools", "index_records.py")


def _scan_by_hand(path: str) -> list[list]:
    """``[offset, stem, height, width, has_label]`` of each record, from the raw file."""
    with open(path, "rb") as f:
        data = f.read()
    entries, offset = [], 0
    while offset < len(data):
        (length,) = struct.unpack_from("<Q", data, offset)
        example = parse_example(data[offset + 12 : offset + 12 + length])
        entries.append(
            [
                offset,
                example["image/filename"][0].decode(),
                example["image/height"][0],
                example["image/width"][0],
                bool(example.get("image/segmentation/class/encoded")),
            ]
        )
        offset += 12 + length + 4
    return entries


def _expected_dicts(paths: list[str]) -> list[dict]:
    return [
        {
            "record_file": path,
            "record_offset": offset,
            "image_id": stem,
            "file_name": stem,
            "height": height,
            "width": width,
            "has_label": has_label,
        }
        for path in paths
        for offset, stem, height, width, has_label in _scan_by_hand(path)
    ]


@pytest.fixture()
def converted(tmp_path):
    root = make_coco_fixture(str(tmp_path / "coco"), num_train=1, num_val=5)
    out = str(tmp_path / "rec")
    paths = convert_coco_dataset(root, out, splits=["val"], num_shards=3, workers=1)["val"]
    return root, out, paths


def _forbid_reading_records(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_read(*args, **kwargs):
        raise AssertionError("a record was read although the index is valid")

    monkeypatch.setattr(tfrecord, "_read_payload", no_read)
    monkeypatch.setattr(records_dataset, "scan_shard", no_read)
    monkeypatch.setattr(records_index, "read_record_file", no_read)


def test_converter_index_matches_a_full_scan(converted):
    _, out, paths = converted
    with open(os.path.join(out, index_filename("val"))) as f:
        index = json.load(f)
    assert [row[0] for row in index["shards"]] == [os.path.basename(p) for p in paths]
    assert [row[1] for row in index["shards"]] == [os.path.getsize(p) for p in paths]
    by_hand = [[k, *entry] for k, path in enumerate(paths) for entry in _scan_by_hand(path)]
    assert index["records"] == by_hand and len(by_hand) == 5
    assert [row[2] for row in index["shards"]] == [2, 2, 1]


def test_loading_with_the_index_reads_no_record(converted, monkeypatch, caplog):
    _, out, paths = converted
    expected = _expected_dicts(paths)
    _forbid_reading_records(monkeypatch)
    with caplog.at_level(logging.WARNING):
        assert load_record_dicts(os.path.join(out, "val-*.tfrecord")) == expected
        # A subset of the shards takes the subset of the index.
        assert load_record_dicts(paths[1]) == _expected_dicts(paths[1:2])
    assert not caplog.records


def test_without_an_index_records_are_read_with_a_warning_naming_the_fix(converted, caplog):
    _, out, paths = converted
    os.remove(os.path.join(out, index_filename("val")))
    with caplog.at_level(logging.WARNING):
        assert load_record_dicts(paths) == _expected_dicts(paths)
    assert "have no" in caplog.text and "tools/index_records.py" in caplog.text
    assert "--overwrite" in caplog.text
    # The tool indexes the existing shards; then nothing is read.
    env = {**os.environ, "PYTHONPATH": os.path.abspath(REPO)}
    result = subprocess.run(
        [sys.executable, TOOL, "--records_dir", out, "--split", "val"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    with open(os.path.join(out, index_filename("val"))) as f:
        records = json.load(f)["records"]
    assert records == [[k, *e] for k, p in enumerate(paths) for e in _scan_by_hand(p)]


def test_stale_index_after_a_new_conversion_is_detected_via_the_manifest(converted, caplog):
    root, out, _ = converted
    old_index = os.path.join(out, "old.index")
    shutil.copy(os.path.join(out, index_filename("val")), old_index)
    # Converted again with other flags: other records at other offsets, another manifest.
    paths = convert_coco_dataset(
        root, out, splits=["val"], num_shards=3, label_format="png16", overwrite=True
    )["val"]
    shutil.copy(old_index, os.path.join(out, index_filename("val")))
    with caplog.at_level(logging.WARNING):
        dicts = load_record_dicts(paths)
    assert dicts == _expected_dicts(paths)  # read from the shards, not the stale index
    assert "written for another val.manifest.json" in caplog.text


def test_stale_index_after_a_shard_changed_is_detected(converted, caplog):
    _, out, paths = converted
    with open(paths[2], "ab") as f:  # a shard rewritten by hand, manifest untouched
        f.write(tfrecord.encode_record(b"extra"))
    with caplog.at_level(logging.WARNING), pytest.raises(Exception, match="image/filename"):
        load_record_dicts(paths)  # falls back to reading, which meets the bad record
    assert "rewritten since" in caplog.text


def test_a_resumed_conversion_rewrites_the_index(converted):
    root, out, paths = converted
    with open(os.path.join(out, index_filename("val"))) as f:
        before = json.load(f)
    os.remove(paths[1])  # as if killed before the second shard was written
    os.remove(os.path.join(out, index_filename("val")))
    convert_coco_dataset(root, out, splits=["val"], num_shards=3)
    with open(os.path.join(out, index_filename("val"))) as f:
        assert json.load(f) == before


def test_the_index_needs_a_manifest(tmp_path):
    out = str(tmp_path)
    with open(os.path.join(out, "val-00000-of-00001.tfrecord"), "wb") as f:
        f.write(tfrecord.encode_record(b"x"))
    with pytest.raises(records_index.StaleIndexError, match="no val.manifest.json"):
        write_split_index(out, "val")
    with pytest.raises(FileNotFoundError, match="No train-"):
        write_split_index(out, "train")
