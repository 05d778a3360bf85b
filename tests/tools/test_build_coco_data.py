"""Tests of tools/build_coco_data.py: COCO layout -> records -> our reader, round trip, and
reruns that reuse, refuse or overwrite existing shards."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from panoptic2.data.records import (
    RecordDataset,
    RecordsMismatchError,
    convert_coco_dataset,
    find_shard_sets,
    read_manifest,
)
from panoptic2.data.records import coco as coco_records
from panoptic2.data.records.example import encode_example
from tests.data.records.fixtures import (
    COCO_CONTIGUOUS,
    COCO_THING_IDS,
    make_coco_fixture,
    reference_panoptic,
)

OLD_NS = 1_000_000_000  # an mtime no rewrite can produce by chance
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOL = os.path.join(REPO, "tools", "build_coco_data.py")


def _tool_main():
    spec = importlib.util.spec_from_file_location("build_coco_data", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def _check_split(root, out, split, mapping, thing_ids, crowd_as_ignore=True, num_shards=None):
    """Asserts the split's records hold every image and exactly the reference labels."""
    with open(os.path.join(root, "annotations", f"panoptic_{split}2017.json")) as f:
        anns = {a["file_name"][:-4]: a for a in json.load(f)["annotations"]}
    files = sorted(p for p in os.listdir(out) if p.startswith(f"{split}-"))
    if num_shards is not None:
        assert files == [f"{split}-{i:05d}-of-{num_shards:05d}.tfrecord" for i in range(num_shards)]
    records = list(RecordDataset([os.path.join(out, p) for p in files]))
    assert [r["file_name"] for r in records] == sorted(anns)  # sorted image order
    for rec in records:
        stem = rec["file_name"]
        png = os.path.join(root, "annotations", f"panoptic_{split}2017", stem + ".png")
        ref = reference_panoptic(
            png, anns[stem]["segments_info"], mapping, thing_ids, 256, 0, crowd_as_ignore
        )
        assert rec["panoptic_label"].dtype == np.int32
        np.testing.assert_array_equal(rec["panoptic_label"], ref)
        original = Image.open(os.path.join(root, f"{split}2017", stem + ".jpg"))
        image = np.asarray(original.convert("RGB")).astype(np.int16)
        if original.mode == "RGB":  # original bytes stored
            np.testing.assert_array_equal(rec["image"], image)
        else:  # converted to RGB and re-encoded: lossy, but close
            assert np.abs(rec["image"] - image).max() <= 8
    return records


def test_fixture_round_trip_function(tmp_path):
    root = make_coco_fixture(str(tmp_path / "coco"))
    out = str(tmp_path / "rec")
    written = convert_coco_dataset(root, out, num_shards=2, workers=2)
    assert set(written) == {"train", "val"}  # no test2017 folder: no test shards
    for split in ("train", "val"):
        records = _check_split(root, out, split, COCO_CONTIGUOUS, COCO_THING_IDS, num_shards=2)
        # Crowd pixels (the fixture's segment 555) are ignore, not their class.
        assert all((r["panoptic_label"] // 256 <= 4).all() for r in records)


def test_fixture_crowd_kept_and_png16(tmp_path):
    root = make_coco_fixture(str(tmp_path / "coco"))
    out = str(tmp_path / "rec")
    _tool_main()(["--coco_root", root, "--output_dir", out, "--num_shards", "3", "--workers", "1",
                  "--treat_crowd_as_ignore=false", "--label_format", "png16"])  # fmt: skip
    records = _check_split(root, out, "val", COCO_CONTIGUOUS, COCO_THING_IDS, crowd_as_ignore=False)
    assert {r["label_format"] for r in records} == {"png16"}


def test_test_split_has_images_only(tmp_path):
    root = make_coco_fixture(str(tmp_path / "coco"), num_train=1, num_val=1)
    os.makedirs(os.path.join(root, "test2017"))
    Image.new("RGB", (6, 4), (1, 2, 3)).save(os.path.join(root, "test2017", "000000000009.jpg"))
    out = str(tmp_path / "rec")
    convert_coco_dataset(root, out, splits=["test"], num_shards=1)
    (rec,) = RecordDataset(os.path.join(out, "test-00000-of-00001.tfrecord"))
    assert rec["panoptic_label"] is None and rec["file_name"] == "000000000009"
    assert rec["image"].shape == (4, 6, 3)


def test_bad_area_names_image_and_segment(tmp_path):
    root = make_coco_fixture(str(tmp_path / "coco"), num_train=1, num_val=1)
    path = os.path.join(root, "annotations", "panoptic_val2017.json")
    with open(path) as f:
        data = json.load(f)
    data["annotations"][0]["segments_info"][0]["area"] += 1
    with open(path, "w") as f:
        json.dump(data, f)
    with pytest.raises(
        ValueError,
        match=r"000000000002.png' \(image .*val2017/000000000002.jpg\), segment 300: .*'area'",
    ):
        convert_coco_dataset(root, str(tmp_path / "rec"), splits=["val"], num_shards=1)


def test_cli_subprocess_on_shapes(tmp_path):
    from panoptic2.data.datasets import shapes

    root = str(tmp_path / "shapes")
    shapes.generate_shapes(root, "coco", num_train=3, num_val=2, seed=0)
    out = str(tmp_path / "rec")
    cmd = [
        sys.executable,
        TOOL,
        "--coco_root",
        root,
        "--output_dir",
        out,
        "--num_shards",
        "2",
        "--workers",
        "2",
    ]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    with open(os.path.join(root, "annotations", "panoptic_val2017.json")) as f:
        categories = json.load(f)["categories"]
    things = sorted(c["id"] for c in categories if c["isthing"])
    stuff = sorted(c["id"] for c in categories if not c["isthing"])
    mapping = {cid: i + 1 for i, cid in enumerate(things + stuff)}
    for split in ("train", "val"):
        _check_split(root, out, split, mapping, set(range(1, len(things) + 1)), num_shards=2)
    # Resume: a rerun leaves complete shards (and the manifests and indexes) untouched.
    mtimes = {p: os.stat(os.path.join(out, p)).st_mtime_ns for p in os.listdir(out)}
    assert sorted(p for p in mtimes if p.endswith(".json")) == [
        "train.index.json",
        "train.manifest.json",
        "val.index.json",
        "val.manifest.json",
    ]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert {p: os.stat(os.path.join(out, p)).st_mtime_ns for p in os.listdir(out)} == mtimes
    # Another flag: refused, with the change and the way out named, nothing touched.
    result = subprocess.run(
        cmd + ["--label_format", "png16"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1
    assert "label_format: raw -> png16" in result.stderr and "--overwrite" in result.stderr
    assert "Traceback" not in result.stderr
    assert {p: os.stat(os.path.join(out, p)).st_mtime_ns for p in os.listdir(out)} == mtimes


def _outputs(out: str) -> dict[str, int]:
    return {p: os.stat(os.path.join(out, p)).st_mtime_ns for p in sorted(os.listdir(out))}


def _age(out: str) -> None:
    for name in os.listdir(out):
        os.utime(os.path.join(out, name), ns=(OLD_NS, OLD_NS))


class _Killed(Exception):
    """Stands in for SIGKILL: the run stops between two records."""


def _count_examples(monkeypatch, fail_after: int | None = None) -> list[int]:
    """Counts the examples the converter builds; the run dies after ``fail_after`` of them."""
    calls: list[int] = []
    real = encode_example

    def counting(features):
        if fail_after is not None and len(calls) == fail_after:
            raise _Killed
        calls.append(1)
        return real(features)

    monkeypatch.setattr(coco_records, "encode_example", counting)
    return calls


def test_rerun_reuses_only_matching_shards(tmp_path, monkeypatch):
    root = make_coco_fixture(str(tmp_path / "coco"))
    out = str(tmp_path / "rec")
    convert_coco_dataset(root, out, num_shards=2)
    manifest = read_manifest(os.path.join(out, "val.manifest.json"))
    assert manifest["status"] == "complete" and manifest["converter"] == "coco_panoptic"
    assert manifest["settings"] == {"label_format": "raw", "treat_crowd_as_ignore": True}
    assert sorted(manifest["inputs"]) == [
        "annotations/panoptic_val2017.json",
        "annotations/panoptic_val2017/000000000004.png",
        "annotations/panoptic_val2017/000000000005.png",
        "val2017/000000000004.jpg",
        "val2017/000000000005.jpg",
    ]
    _age(out)
    calls = _count_examples(monkeypatch)
    convert_coco_dataset(root, out, num_shards=2)
    assert calls == [] and set(_outputs(out).values()) == {OLD_NS}  # nothing rewritten

    for kwargs, change in [
        ({"label_format": "png16"}, r"label_format: raw -> png16"),
        ({"treat_crowd_as_ignore": False}, r"treat_crowd_as_ignore: true -> false"),
        ({"num_shards": 3}, r"num_shards: 2 -> 3; another shard set is there: train-\*-of-00002"),
    ]:
        with pytest.raises(RecordsMismatchError, match=rf"train records in .*{change}.*--overw"):
            convert_coco_dataset(root, out, **{"num_shards": 2, **kwargs})
    image = os.path.join(root, "val2017", "000000000005.jpg")
    size = os.path.getsize(image)
    Image.open(image).save(image, quality=50)
    new_size = os.path.getsize(image)
    with pytest.raises(
        RecordsMismatchError,
        match=rf"1 input file changed, first: val2017/000000000005.jpg \(size {size} -> {new_size}",
    ):
        convert_coco_dataset(root, out, splits=["val"], num_shards=2)
    os.utime(image, ns=(2 * OLD_NS, 2 * OLD_NS))
    os.utime(os.path.join(root, "train2017", "000000000001.jpg"), ns=(2 * OLD_NS, 2 * OLD_NS))
    with pytest.raises(RecordsMismatchError, match=r"first: train2017/000000000001.jpg \(modif"):
        convert_coco_dataset(root, out, num_shards=2)
    assert calls == [] and set(_outputs(out).values()) == {OLD_NS}  # refusals touch nothing

    convert_coco_dataset(root, out, num_shards=3, label_format="png16", overwrite=True)
    for split in ("train", "val"):
        records = _check_split(root, out, split, COCO_CONTIGUOUS, COCO_THING_IDS, num_shards=3)
        assert {r["label_format"] for r in records} == {"png16"}
    assert sorted(find_shard_sets(out, "train")) == [3]  # the 2-shard set is gone


def test_interrupted_conversion_resumes(tmp_path, monkeypatch):
    root = make_coco_fixture(str(tmp_path / "coco"), num_train=3, num_val=1)
    out = str(tmp_path / "rec")
    _count_examples(monkeypatch, fail_after=1)  # killed while writing train shard 1
    with pytest.raises(_Killed):
        convert_coco_dataset(root, out, splits=["train"], num_shards=3)
    assert find_shard_sets(out, "train") == {3: ["train-00000-of-00003.tfrecord"]}
    assert read_manifest(os.path.join(out, "train.manifest.json"))["status"] == "incomplete"
    _age(out)
    calls = _count_examples(monkeypatch)
    with pytest.raises(RecordsMismatchError, match="treat_crowd_as_ignore: true -> false"):
        convert_coco_dataset(root, out, splits=["train"], num_shards=3, treat_crowd_as_ignore=False)
    convert_coco_dataset(root, out, splits=["train"], num_shards=3)
    assert len(calls) == 2  # only the images of the two missing shards
    assert os.stat(os.path.join(out, "train-00000-of-00003.tfrecord")).st_mtime_ns == OLD_NS
    assert read_manifest(os.path.join(out, "train.manifest.json"))["status"] == "complete"
    _check_split(root, out, "train", COCO_CONTIGUOUS, COCO_THING_IDS, num_shards=3)


def test_missing_image_errors_or_is_skipped(tmp_path, caplog):
    root = make_coco_fixture(str(tmp_path / "coco"), num_train=1, num_val=3)
    out = str(tmp_path / "rec")
    image = os.path.join(root, "val2017", "000000000003.jpg")
    os.rename(image, image + ".away")
    with pytest.raises(
        FileNotFoundError,
        match=r"image .*val2017/000000000003.jpg does not exist, but annotation 000000000003.png "
        r"in .*panoptic_val2017.json refers to it \(1 of 3 annotated images are missing\)",
    ):
        convert_coco_dataset(root, out, splits=["val"], num_shards=1)
    assert not os.path.exists(out)  # refused before writing anything
    with caplog.at_level(logging.WARNING):
        written = convert_coco_dataset(root, out, splits=["val"], num_shards=1, skip_missing=True)
    records = list(RecordDataset(written["val"]))
    assert [r["file_name"] for r in records] == ["000000000002", "000000000004"]
    manifest = read_manifest(os.path.join(out, "val.manifest.json"))
    assert manifest["skipped_missing"] == ["val2017/000000000003.jpg"]
    assert "skipped 1 of 3 images whose file is missing: val2017/000000000003.jpg" in caplog.text
    os.rename(image + ".away", image)  # back again: the records lack it
    with pytest.raises(RecordsMismatchError, match=r"images skipped as missing: 1 -> 0"):
        convert_coco_dataset(root, out, splits=["val"], num_shards=1, skip_missing=True)
