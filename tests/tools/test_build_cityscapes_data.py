"""Tests of tools/build_cityscapes_data.py: Cityscapes layout -> records -> our reader."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image

from panoptic2.data.records import RecordDataset, convert_cityscapes_dataset
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
