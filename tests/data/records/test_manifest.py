"""Tests of panoptic2/data/records/manifest.py: file layout, change descriptions, inputs."""

from __future__ import annotations

import json
import logging
import os

import pytest

from panoptic2.data.records import RecordsMismatchError, manifest_filename, read_manifest
from panoptic2.data.records.manifest import (
    describe_changes,
    input_stats,
    resolve_missing_images,
    skipped_summary,
    write_manifest,
)


def _manifest(**changes) -> dict:
    manifest = {
        "format": 1,
        "status": "complete",
        "split": "val",
        "num_shards": 2,
        "num_records": 3,
        "converter": "coco_panoptic",
        "converter_version": 1,
        "settings": {"label_format": "raw", "treat_crowd_as_ignore": True},
        "skipped_missing": [],
        "inputs": {"val2017/a.jpg": [1234, 10**18], "val2017/b.jpg": [99, 10**18]},
    }
    manifest.update(changes)
    return manifest


def test_write_read_round_trip(tmp_path):
    assert manifest_filename("val") == "val.manifest.json"
    path = str(tmp_path / "val.manifest.json")
    assert read_manifest(path) is None
    for manifest in (_manifest(), _manifest(inputs={})):
        write_manifest(path, manifest)
        assert read_manifest(path) == manifest
    write_manifest(path, _manifest())
    with open(path) as f:
        lines = f.read().splitlines()
    assert '    "val2017/a.jpg": [1234, 1000000000000000000],' in lines  # one line per input
    assert os.listdir(tmp_path) == ["val.manifest.json"]  # no temp file left


def test_invalid_manifest_names_file(tmp_path):
    path = tmp_path / "val.manifest.json"
    path.write_text("{truncated")
    with pytest.raises(RecordsMismatchError, match=r"val.manifest.json is not valid JSON.*--over"):
        read_manifest(str(path))
    path.write_text(json.dumps([1, 2]))
    with pytest.raises(RecordsMismatchError, match="holds a list"):
        read_manifest(str(path))


def test_matching_manifests_ignore_status():
    assert describe_changes(_manifest(), _manifest(status="incomplete")) == []


def test_describe_flag_changes():
    new = _manifest(num_shards=4, converter_version=2)
    new["settings"] = {"label_format": "png16", "treat_crowd_as_ignore": False}
    assert describe_changes(_manifest(), new) == [
        "label_format: raw -> png16",
        "treat_crowd_as_ignore: true -> false",
        "num_shards: 2 -> 4",
        "converter_version: 1 -> 2",
    ]
    semantic = _manifest(settings={"create_panoptic_data": False})
    assert describe_changes(_manifest(), semantic) == [
        "create_panoptic_data: (none) -> false",
        "label_format: raw -> (none)",
        "treat_crowd_as_ignore: true -> (none)",
    ]


def test_describe_input_changes():
    old = _manifest()
    inputs = {
        "val2017/a.jpg": [1240, 10**18],  # rewritten
        "val2017/b.jpg": [99, 10**18 + 3 * 10**9],  # touched
        "val2017/c.jpg": [5, 1],
        "val2017/d.jpg": [5, 1],
    }
    changes = describe_changes(old, _manifest(inputs=inputs, num_records=4))
    assert changes == [
        "num_records: 3 -> 4",
        "2 input files changed, first: val2017/a.jpg (size 1234 -> 1240)",
        "2 inputs added, first: val2017/c.jpg",
    ]
    touched = {"val2017/b.jpg": [99, 10**18 + 3 * 10**9]}
    (change,) = describe_changes(
        _manifest(inputs={"val2017/b.jpg": [99, 10**18]}), _manifest(inputs=touched)
    )
    assert change.startswith("1 input file changed, first: val2017/b.jpg (modified ")
    assert describe_changes(old, _manifest(inputs={"val2017/a.jpg": [1234, 10**18]})) == [
        "1 input removed, first: val2017/b.jpg"
    ]
    assert describe_changes(old, _manifest(skipped_missing=["val2017/x.jpg"])) == [
        "images skipped as missing: 0 -> 1"
    ]


def test_input_stats(tmp_path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "b.jpg").write_bytes(b"12345")
    (tmp_path / "a.json").write_bytes(b"{}")
    stats = input_stats(
        str(tmp_path), [str(tmp_path / "imgs" / "b.jpg"), str(tmp_path / "a.json")], "DS"
    )
    assert list(stats) == ["a.json", "imgs/b.jpg"]
    assert stats["imgs/b.jpg"] == [5, os.stat(tmp_path / "imgs" / "b.jpg").st_mtime_ns]
    with pytest.raises(FileNotFoundError, match=r"DS: input file .*nope.png does not exist"):
        input_stats(str(tmp_path), [str(tmp_path / "nope.png")], "DS")


def test_resolve_missing_images(caplog):
    missing = [("r/val2017/2.jpg", "annotation 2.png in r/pan.json")]
    assert resolve_missing_images("DS", [], 8, skip_missing=False) == []
    with pytest.raises(
        FileNotFoundError,
        match=r"DS: image r/val2017/2.jpg does not exist, but annotation 2.png in r/pan.json "
        r"refers to it \(1 of 8 annotated images are missing\).*--skip-missing",
    ):
        resolve_missing_images("DS", missing, 8, skip_missing=False)
    with caplog.at_level(logging.WARNING):
        assert resolve_missing_images("DS", missing, 8, skip_missing=True) == ["r/val2017/2.jpg"]
    assert "skipping 1 of 8 annotated images whose file is missing" in caplog.text
    many = [f"{i}.jpg" for i in range(7)]
    assert skipped_summary("DS", many, 9) == (
        "DS: skipped 7 of 9 images whose file is missing: "
        "0.jpg, 1.jpg, 2.jpg, 3.jpg, 4.jpg (+2 more)"
    )
