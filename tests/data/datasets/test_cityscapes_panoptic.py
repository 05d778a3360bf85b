"""Tests of panoptic2/data/datasets/cityscapes_panoptic.py."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
from cityscapesscripts.preparation.createPanopticImgs import convert2panoptic
from PIL import Image

from panoptic2.data.datasets.cityscapes_panoptic import load_cityscapes_panoptic
from panoptic2.data.datasets.metadata import get_cityscapes_metadata
from panoptic2.data.datasets.shapes import generate_shapes

from .test_cityscapes import STEM, make_tiny_cityscapes


def _prepare(root):
    """Runs cityscapesscripts' own panoptic preparation (train ids) on the tiny fixture."""
    with contextlib.redirect_stdout(io.StringIO()):
        convert2panoptic(str(root / "gtFine"), str(root / "gtFine"), True, ["train"])
    return (
        str(root / "leftImg8bit/train"),
        str(root / "gtFine/cityscapes_panoptic_train_trainId"),
        str(root / "gtFine/cityscapes_panoptic_train_trainId.json"),
    )


def test_official_preparation_output(tmp_path):
    ids = make_tiny_cityscapes(tmp_path)
    (d,) = load_cityscapes_panoptic(*_prepare(tmp_path), get_cityscapes_metadata(), validate=True)
    assert d["image_id"] == STEM and (d["height"], d["width"]) == (6, 8)
    assert d["file_name"].endswith(f"leftImg8bit/train/aachen/{STEM}_leftImg8bit.png")
    segs = {s["id"]: s for s in d["segments_info"]}
    # Expected from the hand-made instanceIds: road stuff, two cars, a person crowd.
    assert set(segs) == {7, 26001, 26002, 24}
    assert segs[7]["category_id"] == 0 and not segs[7]["isthing"]
    assert segs[26001]["category_id"] == 13 and segs[26001]["isthing"]
    assert segs[24]["category_id"] == 11 and segs[24]["iscrowd"] == 1
    assert segs[26002]["bbox"] == [5.0, 3.0, 3.0, 2.0]
    for sid, seg in segs.items():
        assert seg["area"] == (ids == sid).sum()


def test_unknown_category_names_image_and_segment(tmp_path):
    make_tiny_cityscapes(tmp_path)
    image_dir, gt_dir, gt_json = _prepare(tmp_path)
    with open(gt_json) as f:
        data = json.load(f)
    data["annotations"][0]["segments_info"][0]["category_id"] = 99
    with open(gt_json, "w") as f:
        json.dump(data, f)
    with pytest.raises(ValueError, match=rf"Segment \d+ of image '.*{STEM}_leftImg8bit\.png'"):
        load_cityscapes_panoptic(image_dir, gt_dir, gt_json, get_cityscapes_metadata())


def test_missing_json_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"x_trainId\.json' of dataset 'cs'"):
        load_cityscapes_panoptic(
            str(tmp_path),
            str(tmp_path),
            str(tmp_path / "x_trainId.json"),
            get_cityscapes_metadata(),
            dataset_name="cs",
        )


def test_on_shapes_cityscapes(tmp_path):
    generate_shapes(str(tmp_path), "cityscapes", num_train=2, num_val=1)
    meta = get_cityscapes_metadata()
    dicts = load_cityscapes_panoptic(
        str(tmp_path / "leftImg8bit/train"),
        str(tmp_path / "gtFine/cityscapes_panoptic_train_trainId"),
        str(tmp_path / "gtFine/cityscapes_panoptic_train_trainId.json"),
        meta,
    )
    assert len(dicts) == 2
    for d in dicts:
        rgb = np.asarray(Image.open(d["pan_seg_file_name"]), dtype=np.int64)
        pan = rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]
        train_ids = np.asarray(
            Image.open(
                d["pan_seg_file_name"]
                .replace(
                    "cityscapes_panoptic_train_trainId", "train/" + d["image_id"].split("_")[0]
                )
                .replace("_panoptic.png", "_labelTrainIds.png")
            )
        )
        for seg in d["segments_info"]:
            mask = pan == seg["id"]
            assert seg["area"] == mask.sum()
            assert (train_ids[mask] == seg["category_id"]).all()
            assert seg["isthing"] == (seg["category_id"] in meta["thing_ids"])
            assert seg["iscrowd"] == int(seg["isthing"] and seg["id"] < 1000)
