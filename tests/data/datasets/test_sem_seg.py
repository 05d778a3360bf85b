"""Tests of panoptic2/data/datasets/sem_seg.py."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from panoptic2.data import DatasetCatalog, MetadataCatalog
from panoptic2.data.datasets.metadata import get_sem_seg_metadata
from panoptic2.data.datasets.sem_seg import load_sem_seg, register_sem_seg


def make_folders(root):
    """images/{a,sub/b}.jpg (sizes 3x4 and 5x6) + labels/{a,sub/b}.png."""
    for rel, (h, w) in (("a", (3, 4)), ("sub/b", (5, 6))):
        for top in ("images", "labels"):
            (root / top / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (w, h)).save(root / "images" / f"{rel}.jpg")
        Image.fromarray(np.full((h, w), 1, np.uint8)).save(root / "labels" / f"{rel}.png")
    return str(root / "labels"), str(root / "images")


def test_pairs_by_relative_path(tmp_path):
    gt_root, image_root = make_folders(tmp_path)
    meta = get_sem_seg_metadata(["bg", "fg"])
    dicts = load_sem_seg(gt_root, image_root, meta=meta, validate=True)
    assert [d["image_id"] for d in dicts] == ["a", "sub/b"]
    assert dicts[1]["file_name"] == f"{image_root}/sub/b.jpg"
    assert dicts[1]["sem_seg_file_name"] == f"{gt_root}/sub/b.png"
    assert [(d["height"], d["width"]) for d in dicts] == [(3, 4), (5, 6)]


def test_missing_image_named(tmp_path):
    gt_root, image_root = make_folders(tmp_path)
    (tmp_path / "images/sub/b.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"sub/b\.jpg' of dataset 'segs'"):
        load_sem_seg(gt_root, image_root, dataset_name="segs")


def test_validate_finds_out_of_range_and_size_mismatch(tmp_path):
    gt_root, image_root = make_folders(tmp_path)
    Image.fromarray(np.full((3, 4), 7, np.uint8)).save(tmp_path / "labels/a.png")
    Image.fromarray(np.zeros((2, 2), np.uint8)).save(tmp_path / "labels/sub/b.png")
    with pytest.raises(ValueError) as err:
        load_sem_seg(gt_root, image_root, meta=get_sem_seg_metadata(["x", "y"]), validate=True)
    assert "a.png' has values [7]" in str(err.value)
    assert "sub/b.png' is 2x2 but its image is 5x6" in str(err.value)


def test_register_sem_seg_one_call(tmp_path):
    gt_root, image_root = make_folders(tmp_path)
    name = "test_sem_seg_register"
    register_sem_seg(name, {"stuff_classes": ["bg", "fg"]}, image_root, gt_root)
    try:
        md = MetadataCatalog.get(name)
        assert md.num_classes == 2 and md.ignore_label == 255
        assert md.evaluators == ["SemSegEvaluator"]
        assert len(DatasetCatalog.get(name)) == 2
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
