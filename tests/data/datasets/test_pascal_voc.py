"""Tests of panoptic2/data/datasets/pascal_voc.py (VOC 2012 and SBD train_aug)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io
from PIL import Image

from panoptic2.data.datasets.metadata import get_voc_metadata, voc_colormap
from panoptic2.data.datasets.pascal_voc import (
    convert_sbd_to_aug,
    load_voc_sem_seg,
    read_voc_label,
)
from panoptic2.data.datasets.shapes import generate_shapes

PALETTE = [v for rgb in voc_colormap() for v in rgb]


def _palette_png(path, labels):
    img = Image.fromarray(labels.astype(np.uint8), mode="L").convert("P")
    img.putpalette(PALETTE)
    img.save(path)


def make_voc(root, splits):
    """Tiny VOC2012: each image id gets a 4x5 JPEG and a palette label."""
    voc = root / "VOCdevkit/VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    for split, ids in splits.items():
        (voc / "ImageSets/Segmentation" / f"{split}.txt").write_text("".join(i + "\n" for i in ids))
        for k, image_id in enumerate(ids):
            Image.new("RGB", (5, 4)).save(voc / "JPEGImages" / f"{image_id}.jpg")
            labels = np.full((4, 5), k % 21, np.uint8)
            labels[0] = 255  # object border
            _palette_png(voc / "SegmentationClass" / f"{image_id}.png", labels)
    return voc


def test_load_and_read_indices(tmp_path):
    voc = make_voc(tmp_path, {"train": ["2007_000001", "2007_000002"], "val": ["2007_000003"]})
    dicts = load_voc_sem_seg(str(voc), "train", meta=get_voc_metadata(), validate=True)
    assert [d["image_id"] for d in dicts] == ["2007_000001", "2007_000002"]
    assert (dicts[1]["height"], dicts[1]["width"]) == (4, 5)
    labels = read_voc_label(dicts[1]["sem_seg_file_name"])
    assert labels[0].tolist() == [255] * 5 and (labels[1:] == 1).all()


def test_rgb_label_and_bad_values_rejected(tmp_path):
    voc = make_voc(tmp_path, {"train": ["a"]})
    png = voc / "SegmentationClass/a.png"
    Image.open(png).convert("RGB").save(png)
    with pytest.raises(ValueError, match=r"a\.png' has PIL mode 'RGB'"):
        read_voc_label(str(png))
    _palette_png(png, np.full((4, 5), 30, np.uint8))
    with pytest.raises(ValueError, match=r"a\.png' has values \[30\]"):
        read_voc_label(str(png))
    with pytest.raises(ValueError, match=r"a\.png' has values \[30\]"):
        load_voc_sem_seg(str(voc), "train", meta=get_voc_metadata(), validate=True)


def test_missing_files_named(tmp_path):
    voc = make_voc(tmp_path, {"train": ["a", "b"]})
    (voc / "JPEGImages/b.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"JPEGImages/b\.jpg' of dataset 'v'"):
        load_voc_sem_seg(str(voc), "train", dataset_name="v")
    with pytest.raises(FileNotFoundError, match=r"Segmentation/val\.txt"):
        load_voc_sem_seg(str(voc), "val")


def test_sbd_train_aug(tmp_path):
    voc = make_voc(tmp_path, {"train": ["v1", "v2"], "val": ["v3"]})
    sbd = tmp_path / "benchmark_RELEASE/dataset"
    (sbd / "cls").mkdir(parents=True)
    (sbd / "train.txt").write_text("s1\nv3\n")  # v3 is VOC val: must stay out of train_aug
    (sbd / "val.txt").write_text("v1\n")  # already labelled by VOC: VOC's label wins
    for image_id, value in (("s1", 7), ("v3", 9), ("v1", 4)):
        Image.new("RGB", (5, 4)).save(voc / "JPEGImages" / f"{image_id}.jpg")
        seg = np.full((4, 5), value, np.uint8)
        gt = {"Segmentation": seg, "Boundaries": np.zeros(1)}
        scipy.io.savemat(sbd / "cls" / f"{image_id}.mat", {"GTcls": gt})
    assert convert_sbd_to_aug(str(voc), str(sbd)) == 3
    ids = (voc / "ImageSets/Segmentation/train_aug.txt").read_text().split()
    assert ids == ["s1", "v1", "v2"]
    dicts = load_voc_sem_seg(str(voc), "train_aug", meta=get_voc_metadata(), validate=True)
    labels = {d["image_id"]: read_voc_label(d["sem_seg_file_name"], palette=False) for d in dicts}
    assert (labels["s1"] == 7).all()
    assert (labels["v1"][1:] == 0).all() and (labels["v1"][0] == 255).all()  # VOC's own label


def test_bad_sbd_mat_named(tmp_path):
    voc = make_voc(tmp_path, {"train": ["v1"], "val": ["v2"]})
    sbd = tmp_path / "sbd"
    (sbd / "cls").mkdir(parents=True)
    (sbd / "train.txt").write_text("s1\n")
    (sbd / "val.txt").write_text("s1\n")
    scipy.io.savemat(sbd / "cls/s1.mat", {"Other": np.zeros((2, 2))})
    with pytest.raises(ValueError, match=r"s1\.mat' has no GTcls"):
        convert_sbd_to_aug(str(voc), str(sbd))


def test_on_shapes_voc(tmp_path):
    generate_shapes(str(tmp_path), "voc", num_train=3, num_val=2)
    voc = tmp_path / "VOCdevkit/VOC2012"
    for split, n in (("train", 3), ("val", 2)):
        dicts = load_voc_sem_seg(str(voc), split, meta=get_voc_metadata(), validate=True)
        assert len(dicts) == n
        for d in dicts:
            labels = read_voc_label(d["sem_seg_file_name"])
            assert labels.shape == (d["height"], d["width"])
            assert set(np.unique(labels).tolist()) <= set(range(21)) | {255}
