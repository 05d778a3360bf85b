"""Tests of panoptic2/data/datasets/cityscapes.py (semantic and instance readers)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_util

from panoptic2.data.datasets.cityscapes import load_cityscapes_instances, load_cityscapes_semantic
from panoptic2.data.datasets.metadata import get_cityscapes_metadata
from panoptic2.data.datasets.shapes import generate_shapes

STEM = "aachen_000000_000019"


def make_tiny_cityscapes(root) -> np.ndarray:
    """One 6x8 image: road (7), two cars (26001, 26002), a person crowd (24), ego vehicle (1)."""
    ids = np.full((6, 8), 7, np.int32)
    ids[0:2, 0:3] = 26001
    ids[3:5, 5:8] = 26002
    ids[4:6, 0:2] = 24  # crowd: label id only
    ids[0, 7] = 1  # ego vehicle: ignored in eval
    img_dir = root / "leftImg8bit" / "train" / "aachen"
    gt_dir = root / "gtFine" / "train" / "aachen"
    img_dir.mkdir(parents=True)
    gt_dir.mkdir(parents=True)
    Image.new("RGB", (8, 6)).save(img_dir / f"{STEM}_leftImg8bit.png")
    Image.fromarray(ids.astype(np.uint16)).save(gt_dir / f"{STEM}_gtFine_instanceIds.png")
    train = np.where(ids >= 1000, ids // 1000, ids)
    train = np.select([train == 7, train == 26, train == 24], [0, 13, 11], 255).astype(np.uint8)
    Image.fromarray(train).save(gt_dir / f"{STEM}_gtFine_labelTrainIds.png")
    return ids


def test_instances_hand_fixture(tmp_path):
    ids = make_tiny_cityscapes(tmp_path)
    (d,) = load_cityscapes_instances(
        str(tmp_path / "leftImg8bit/train"), str(tmp_path / "gtFine/train")
    )
    assert d["image_id"] == STEM and (d["height"], d["width"]) == (6, 8)
    assert len(d["annotations"]) == 3  # road and ego vehicle are not instances
    by_box = {tuple(a["bbox"]): a for a in d["annotations"]}
    car1 = by_box[(0.0, 0.0, 3.0, 2.0)]
    car2 = by_box[(5.0, 3.0, 3.0, 2.0)]
    crowd = by_box[(0.0, 4.0, 2.0, 2.0)]
    assert car1["category_id"] == car2["category_id"] == 13
    assert car1["iscrowd"] == car2["iscrowd"] == 0
    assert crowd["category_id"] == 11 and crowd["iscrowd"] == 1
    assert car1["bbox_mode"] == "XYWH_ABS"
    for value, ann in ((26001, car1), (26002, car2), (24, crowd)):
        np.testing.assert_array_equal(mask_util.decode(ann["segmentation"]), ids == value)
        assert ann["area"] == (ids == value).sum()


def test_semantic_hand_fixture_and_missing_gt(tmp_path):
    make_tiny_cityscapes(tmp_path)
    meta = get_cityscapes_metadata()
    img_dir, gt_dir = str(tmp_path / "leftImg8bit/train"), str(tmp_path / "gtFine/train")
    (d,) = load_cityscapes_semantic(img_dir, gt_dir, meta=meta, validate=True)
    assert d["sem_seg_file_name"].endswith(f"aachen/{STEM}_gtFine_labelTrainIds.png")
    os.remove(d["sem_seg_file_name"])
    with pytest.raises(FileNotFoundError, match=rf"{STEM}_gtFine_labelTrainIds\.png.*'cs_x'"):
        load_cityscapes_semantic(img_dir, gt_dir, dataset_name="cs_x")


def test_semantic_validate_catches_bad_value(tmp_path):
    make_tiny_cityscapes(tmp_path)
    gt = tmp_path / "gtFine/train/aachen" / f"{STEM}_gtFine_labelTrainIds.png"
    Image.fromarray(np.full((6, 8), 19, np.uint8)).save(gt)
    with pytest.raises(ValueError, match=r"labelTrainIds\.png' has values \[19\]"):
        load_cityscapes_semantic(
            str(tmp_path / "leftImg8bit/train"),
            str(tmp_path / "gtFine/train"),
            meta=get_cityscapes_metadata(),
            validate=True,
        )


def test_missing_image_folder_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="leftImg8bit/val"):
        load_cityscapes_semantic(str(tmp_path / "leftImg8bit/val"), str(tmp_path))


def test_on_shapes_cityscapes(tmp_path):
    generate_shapes(str(tmp_path), "cityscapes", num_train=2, num_val=2)
    meta = get_cityscapes_metadata()
    sem = load_cityscapes_semantic(
        str(tmp_path / "leftImg8bit/val"), str(tmp_path / "gtFine/val"), meta=meta, validate=True
    )
    inst = load_cityscapes_instances(
        str(tmp_path / "leftImg8bit/val"), str(tmp_path / "gtFine/val")
    )
    assert [d["image_id"] for d in sem] == [d["image_id"] for d in inst]
    for s, d in zip(sem, inst):
        train_ids = np.asarray(Image.open(s["sem_seg_file_name"]))
        assert d["annotations"], "shapes scenes always hold thing instances"
        for ann in d["annotations"]:
            mask = mask_util.decode(ann["segmentation"]).astype(bool)
            assert ann["category_id"] in meta["thing_ids"]
            # Independent check: the trainIds map agrees on the instance's pixels.
            assert (train_ids[mask] == ann["category_id"]).all()
            ys, xs = np.nonzero(mask)
            assert ann["bbox"] == [xs.min(), ys.min(), np.ptp(xs) + 1, np.ptp(ys) + 1]
