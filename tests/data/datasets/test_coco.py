"""Tests of panoptic2/data/datasets/coco.py (COCO instances)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_util

from panoptic2.data.datasets.coco import load_coco_json
from panoptic2.data.datasets.coco_panoptic import load_coco_panoptic_json
from panoptic2.data.datasets.shapes import generate_shapes, shapes_metadata

META = {"thing_dataset_id_to_contiguous_id": {5: 1, 9: 2}}


def write_instances(root, annotations):
    (root / "imgs").mkdir(exist_ok=True)
    Image.new("RGB", (8, 6)).save(root / "imgs/x.jpg")
    data = {
        "images": [{"id": 3, "file_name": "x.jpg", "height": 6, "width": 8}],
        "categories": [{"id": 5, "name": "a"}, {"id": 9, "name": "b"}],
        "annotations": annotations,
    }
    path = root / "instances.json"
    path.write_text(json.dumps(data))
    return str(path), str(root / "imgs")


def _ann(i, cat, seg, crowd=0):
    return {
        "id": i,
        "image_id": 3,
        "category_id": cat,
        "bbox": [1, 1, 2, 2],
        "area": 4,
        "iscrowd": crowd,
        "segmentation": seg,
    }


def test_polygons_rle_and_contiguous_ids(tmp_path):
    counts = [8, 4, 36]  # column-major uncompressed RLE of a 6x8 mask
    json_file, image_root = write_instances(
        tmp_path,
        [
            _ann(1, 9, [[1, 1, 3, 1, 3, 3, 1, 3]]),
            _ann(2, 5, {"size": [6, 8], "counts": counts}, crowd=1),
        ],
    )
    (d,) = load_coco_json(json_file, image_root, META)
    assert (d["image_id"], d["height"], d["width"]) == (3, 6, 8)
    poly, crowd = d["annotations"]
    assert poly["category_id"] == 2 and poly["bbox_mode"] == "XYWH_ABS"
    assert poly["segmentation"] == [[1, 1, 3, 1, 3, 3, 1, 3]]
    assert crowd["category_id"] == 1 and crowd["iscrowd"] == 1
    assert isinstance(crowd["segmentation"]["counts"], str)
    expected = np.zeros((6, 8), np.uint8)
    # Column-major: 8 zeros (column 0, then rows 0-1 of column 1), 4 ones (rows 2-5).
    expected[2:6, 1] = 1
    np.testing.assert_array_equal(mask_util.decode(crowd["segmentation"]), expected)


def test_unknown_category_names_image_and_annotation(tmp_path):
    json_file, image_root = write_instances(tmp_path, [_ann(77, 4, [[0, 0, 2, 0, 2, 2]])])
    with pytest.raises(ValueError, match=r"annotation 77 of image 'x\.jpg'.*category id 4"):
        load_coco_json(json_file, image_root, META)


def test_invalid_polygons_dropped_or_raised(tmp_path):
    json_file, image_root = write_instances(
        tmp_path, [_ann(1, 5, [[0, 0, 2, 0]]), _ann(2, 5, [[0, 0, 2, 0, 2, 2], [1, 1]])]
    )
    (d,) = load_coco_json(json_file, image_root, META)
    assert [a["id"] for a in d["annotations"]] == [2]
    assert d["annotations"][0]["segmentation"] == [[0, 0, 2, 0, 2, 2]]
    with pytest.raises(ValueError, match=r"annotation 1 of image 'x\.jpg'.*fewer than 3"):
        load_coco_json(json_file, image_root, META, drop_invalid_polygons=False)


def test_missing_files_named(tmp_path):
    json_file, image_root = write_instances(tmp_path, [])
    (tmp_path / "imgs/x.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"imgs/x\.jpg"):
        load_coco_json(json_file, image_root, META)
    with pytest.raises(FileNotFoundError, match=r"nope\.json"):
        load_coco_json(str(tmp_path / "nope.json"), image_root, META)


def test_on_shapes_coco_agrees_with_panoptic(tmp_path):
    generate_shapes(str(tmp_path), "coco", num_train=0, num_val=3)
    meta = shapes_metadata()
    ann_dir = tmp_path / "annotations"
    inst = load_coco_json(str(ann_dir / "instances_val2017.json"), str(tmp_path / "val2017"), meta)
    pan = load_coco_panoptic_json(
        str(ann_dir / "panoptic_val2017.json"),
        str(tmp_path / "val2017"),
        str(ann_dir / "panoptic_val2017"),
        meta,
    )
    pan = {d["image_id"]: d for d in pan}
    for d in inst:
        things = [s for s in pan[d["image_id"]]["segments_info"] if s["isthing"]]
        # One instance annotation per thing segment, same classes and crowd flags.
        assert sorted((a["category_id"], a["iscrowd"]) for a in d["annotations"]) == sorted(
            (s["category_id"], s["iscrowd"]) for s in things
        )
        assert all(a["category_id"] in meta["thing_ids"] for a in d["annotations"])
