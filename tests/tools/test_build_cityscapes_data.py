"""Tests of tools/build_cityscapes_data.py: Cityscapes layout -> records -> our reader, and
reruns that reuse, refuse or overwrite existing shards."""

from __future__ import annotations

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
    convert_cityscapes_dataset,
    read_manifest,
)
from tests.data.records.fixtures import make_cityscapes_fixture, reference_panoptic

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOL = os.path.join(REPO, "tools", "build_cityscapes_data.py")
TRAIN_IDS = {i: i for i in range(19)}
THING_TRAIN_IDS = set(range(11, 19))


def _images(root: str, split: str) -> dict[str, str]:
    """prefix -> image path, for every image of the split."""
    out = {}
    for city in os.listdir(os.path.join(root, "leftImg8bit", split)):
        for name in os.listdir(os.path.join(root, "leftImg8bit", split, city)):
            out[name[: -len("_leftImg8bit.png")]] = os.path.join(
                root, "leftImg8bit", split, city, name
            )
    return out


def _records(out: str, split: str, num_shards: int) -> list[dict]:
    files = sorted(p for p in os.listdir(out) if p.startswith(f"{split}-"))
    assert files == [f"{split}-{i:05d}-of-{num_shards:05d}.tfrecord" for i in range(num_shards)]
    return list(RecordDataset([os.path.join(out, p) for p in files]))


def _check_panoptic(root, out, split, num_shards, crowd_as_ignore=True):
    with open(os.path.join(root, "gtFine", f"cityscapes_panoptic_{split}_trainId.json")) as f:
        anns = {a["image_id"]: a for a in json.load(f)["annotations"]}
    images = _images(root, split)
    records = _records(out, split, num_shards)
    # Sorted by image path (city folder, then name), as DeepLab2 does.
    assert [r["file_name"] for r in records] == sorted(images, key=lambda p: images[p])
    for rec in records:
        ann = anns[rec["file_name"]]
        png = os.path.join(root, "gtFine", f"cityscapes_panoptic_{split}_trainId", ann["file_name"])
        ref = reference_panoptic(
            png, ann["segments_info"], TRAIN_IDS, THING_TRAIN_IDS, 1000, 255, crowd_as_ignore
        )
        np.testing.assert_array_equal(rec["panoptic_label"], ref)
        np.testing.assert_array_equal(
            rec["image"], np.asarray(Image.open(images[rec["file_name"]]).convert("RGB"))
        )
        with open(images[rec["file_name"]], "rb") as f:
            assert f.read()[:8] == b"\x89PNG\r\n\x1a\n"
    return records


def test_panoptic_round_trip_function(tmp_path):
    root = make_cityscapes_fixture(str(tmp_path / "cs"))
    out = str(tmp_path / "rec")
    convert_cityscapes_dataset(root, out, num_shards=2, workers=2)
    for split in ("train", "val"):
        records = _check_panoptic(root, out, split, 2)
        assert (np.concatenate([r["panoptic_label"].ravel() for r in records]) == 255000).any()
    test = _records(out, "test", 2)
    assert len(test) == 2 and all(
        r["panoptic_label"] is None and r["sem_seg"] is None for r in test
    )


def test_semantic_only_cli(tmp_path):
    root = make_cityscapes_fixture(str(tmp_path / "cs"))
    out = str(tmp_path / "rec")
    cmd = [sys.executable, TOOL, "--cityscapes_root", root, "--output_dir", out,
           "--create_panoptic_data=false", "--num_shards", "3", "--splits", "train,val"]  # fmt: skip
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    manifest = read_manifest(os.path.join(out, "val.manifest.json"))
    assert manifest["settings"] == {"create_panoptic_data": False}
    assert "gtFine/val/lindau/lindau_000000_000019_gtFine_labelTrainIds.png" in manifest["inputs"]
    # Panoptic labels into the same folder: refused, naming the change.
    cmd[cmd.index("--create_panoptic_data=false")] = "--create_panoptic_data=true"
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "create_panoptic_data: false -> true" in result.stderr
    assert "--overwrite" in result.stderr and "Traceback" not in result.stderr
    images = _images(root, "val")
    for rec in _records(out, "val", 3):
        city = rec["file_name"].split("_")[0]
        gt = os.path.join(
            root, "gtFine", "val", city, rec["file_name"] + "_gtFine_labelTrainIds.png"
        )
        assert rec["label_format"] == "png" and rec["panoptic_label"] is None
        np.testing.assert_array_equal(rec["sem_seg"], np.asarray(Image.open(gt)))
        np.testing.assert_array_equal(
            rec["image"], np.asarray(Image.open(images[rec["file_name"]]))
        )


def test_crowd_kept_png_rgb(tmp_path):
    root = make_cityscapes_fixture(str(tmp_path / "cs"))
    out = str(tmp_path / "rec")
    convert_cityscapes_dataset(
        root, out, splits=["val"], num_shards=1, treat_crowd_as_ignore=False, label_format="png_rgb"
    )
    records = _check_panoptic(root, out, "val", 1, crowd_as_ignore=False)
    assert all((r["panoptic_label"][0, -3:] == 13000).all() for r in records)  # crowd car group


def test_shapes_cityscapes_layout(tmp_path):
    from panoptic2.data.datasets import shapes

    root = str(tmp_path / "shapes")
    shapes.generate_shapes(root, "cityscapes", num_train=3, num_val=2, seed=0)
    out = str(tmp_path / "rec")
    convert_cityscapes_dataset(root, out, splits=["train", "val"], num_shards=2)
    for split in ("train", "val"):
        _check_panoptic(root, out, split, 2)
    sem_out = str(tmp_path / "sem")
    convert_cityscapes_dataset(
        root, sem_out, splits=["val"], num_shards=1, create_panoptic_data=False
    )
    for rec in _records(sem_out, "val", 1):
        city = rec["file_name"].split("_")[0]
        gt = os.path.join(
            root, "gtFine", "val", city, rec["file_name"] + "_gtFine_labelTrainIds.png"
        )
        np.testing.assert_array_equal(rec["sem_seg"], np.asarray(Image.open(gt)))


def test_changed_mode_refuses_then_overwrite(tmp_path):
    root = make_cityscapes_fixture(str(tmp_path / "cs"))
    out = str(tmp_path / "rec")
    convert_cityscapes_dataset(root, out, num_shards=2)
    assert read_manifest(os.path.join(out, "test.manifest.json"))["settings"] == {}
    # Images-only test shards do not depend on the flags: they are reused.
    test_shards = [os.path.join(out, f"test-0000{i}-of-00002.tfrecord") for i in range(2)]
    for path in test_shards:
        os.utime(path, ns=(10**9, 10**9))
    convert_cityscapes_dataset(root, out, splits=["test"], num_shards=2, label_format="png16")
    assert {os.stat(p).st_mtime_ns for p in test_shards} == {10**9}
    with pytest.raises(
        RecordsMismatchError,
        match=r"train records in .*: create_panoptic_data: true -> false; label_format: raw -> "
        r"\(none\); treat_crowd_as_ignore: true -> \(none\); .*--overwrite",
    ):
        convert_cityscapes_dataset(root, out, num_shards=2, create_panoptic_data=False)
    with pytest.raises(RecordsMismatchError, match=r"num_shards: 2 -> 1; another shard set"):
        convert_cityscapes_dataset(root, out, splits=["val"], num_shards=1)
    convert_cityscapes_dataset(
        root, out, splits=["val"], num_shards=1, create_panoptic_data=False, overwrite=True
    )
    records = _records(out, "val", 1)  # only the new set is left
    assert all(r["label_format"] == "png" for r in records)


@pytest.mark.parametrize("panoptic", [True, False])
def test_missing_image_errors_or_is_skipped(tmp_path, caplog, panoptic):
    root = make_cityscapes_fixture(str(tmp_path / "cs"))
    out = str(tmp_path / "rec")
    prefix = "lindau_000001_000019"
    os.remove(os.path.join(root, "leftImg8bit", "val", "lindau", prefix + "_leftImg8bit.png"))
    annotation = (
        rf"annotation {prefix}_gtFine_panoptic.png in .*cityscapes_panoptic_val_trainId.json"
        if panoptic
        else rf"semantic label .*gtFine/val/lindau/{prefix}_gtFine_labelTrainIds.png"
    )
    kwargs = {"splits": ["val"], "num_shards": 1, "create_panoptic_data": panoptic}
    with pytest.raises(
        FileNotFoundError,
        match=rf"image .*leftImg8bit/val/lindau/{prefix}_leftImg8bit.png does not exist, but "
        rf"{annotation} refers to it \(1 of 2 annotated images are missing\)",
    ):
        convert_cityscapes_dataset(root, out, **kwargs)
    with caplog.at_level(logging.WARNING):
        written = convert_cityscapes_dataset(root, out, skip_missing=True, **kwargs)
    assert [r["file_name"] for r in RecordDataset(written["val"])] == ["lindau_000000_000019"]
    assert read_manifest(os.path.join(out, "val.manifest.json"))["skipped_missing"] == [
        f"leftImg8bit/val/lindau/{prefix}_leftImg8bit.png"
    ]
    assert "skipped 1 of 2 images whose file is missing" in caplog.text


def test_cli_skip_missing(tmp_path):
    root = make_cityscapes_fixture(str(tmp_path / "cs"))
    os.remove(
        os.path.join(root, "leftImg8bit", "val", "lindau", "lindau_000001_000019_leftImg8bit.png")
    )
    out = str(tmp_path / "rec")
    cmd = [sys.executable, TOOL, "--cityscapes_root", root, "--output_dir", out,
           "--num_shards", "1", "--splits", "val"]  # fmt: skip
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "lindau_000001_000019_leftImg8bit.png does not exist" in result.stderr
    result = subprocess.run(
        cmd + ["--skip-missing"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "skipped 1 of 2 images whose file is missing" in result.stderr
    assert len(_records(out, "val", 1)) == 1
