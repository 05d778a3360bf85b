"""Tests of panoptic2/data/datasets/coco.py (COCO instances)."""

from __future__ import annotations

import json
import uuid

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_util

from panoptic2.data import DatasetCatalog, MetadataCatalog
from panoptic2.data.datasets import register_coco_instances
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


@pytest.fixture
def registered():
    """Registers names through register_coco_instances and removes them afterwards."""
    names = []

    def register(metadata, json_file, image_root):
        name = f"_test_coco_instances_{uuid.uuid4().hex[:8]}"
        register_coco_instances(name, metadata, json_file, image_root)
        names.append(name)
        return name

    yield register
    for name in names:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def test_register_coco_instances_reads_nothing_until_used(registered, tmp_path):
    name = registered({}, str(tmp_path / "later.json"), str(tmp_path / "imgs"))
    meta = MetadataCatalog.get(name)
    assert meta.json_file == str(tmp_path / "later.json")
    assert meta.evaluators == ["COCOEvaluator"]
    assert "thing_classes" in meta  # declared, computed on first read
    json_file, image_root = write_instances(
        tmp_path, [_ann(1, 9, [[1, 1, 3, 1, 3, 3, 1, 3]]), _ann(2, 5, [[0, 0, 2, 0, 2, 2]])]
    )
    (tmp_path / "instances.json").rename(tmp_path / "later.json")
    # Categories 5 "a", 9 "b" in id order -> contiguous 1, 2 (0 is void).
    assert meta.thing_classes == ["a", "b"]
    assert meta.thing_dataset_id_to_contiguous_id == {5: 1, 9: 2}
    assert meta.classes == ["void", "a", "b"] and meta.ignore_label == 0
    assert len(meta.thing_colors) == 2
    (d,) = DatasetCatalog.get(name)
    assert d["file_name"] == str(tmp_path / "imgs" / "x.jpg") and d["image_id"] == 3
    assert [a["category_id"] for a in d["annotations"]] == [2, 1]


def test_register_coco_instances_metadata_given_or_checked(registered, tmp_path):
    json_file, image_root = write_instances(tmp_path, [_ann(1, 9, [[1, 1, 3, 1, 3, 3]])])
    # Detectron2-style metadata with 0-based contiguous ids: used as given.
    given = {"thing_classes": ["A", "B"], "thing_dataset_id_to_contiguous_id": {5: 0, 9: 1}}
    name = registered(given, json_file, image_root)
    assert DatasetCatalog.get(name)[0]["annotations"][0]["category_id"] == 1
    # Names or colours that disagree with the JSON's categories are an error naming both.
    name = registered({"thing_classes": ["a", "c"]}, json_file, image_root)
    with pytest.raises(ValueError, match=rf"'{name}'.*\['a', 'c'\].*instances\.json.*\['a', 'b'\]"):
        _ = MetadataCatalog.get(name).thing_ids
    name = registered({"thing_colors": [[1, 2, 3]]}, json_file, image_root)
    with pytest.raises(ValueError, match=rf"'{name}'.*1 thing_colors for the 2 categories"):
        DatasetCatalog.get(name)
    name = registered({"thing_colors": [[1, 2, 3], [4, 5, 6]]}, json_file, image_root)
    assert MetadataCatalog.get(name).thing_colors == [[1, 2, 3], [4, 5, 6]]


def test_register_coco_instances_errors_name_dataset_and_file(registered, tmp_path):
    missing = registered({}, str(tmp_path / "nope.json"), str(tmp_path))
    with pytest.raises(FileNotFoundError, match=rf"nope\.json.*'{missing}'"):
        DatasetCatalog.get(missing)
    json_file, image_root = write_instances(tmp_path, [_ann(8, 4, [[0, 0, 2, 0, 2, 2]])])
    unknown = registered({}, json_file, image_root)
    with pytest.raises(
        ValueError, match=rf"annotation 8 .*'{unknown}'.*unknown category id 4.*instances\.json"
    ):
        DatasetCatalog.get(unknown)
    data = json.loads((tmp_path / "instances.json").read_text())
    data["annotations"] = []
    data["images"].append(dict(data["images"][0], file_name="y.jpg"))
    (tmp_path / "instances.json").write_text(json.dumps(data))
    duplicate = registered({}, json_file, image_root)
    with pytest.raises(
        ValueError, match=rf"Image id 3 appears twice.*instances\.json.*'{duplicate}'"
    ):
        DatasetCatalog.get(duplicate)
    data["images"] = data["images"][:1]
    data["annotations"] = [dict(_ann(9, 5, [[0, 0, 2, 0, 2, 2]]), image_id=44)]
    (tmp_path / "instances.json").write_text(json.dumps(data))
    orphan = registered({}, json_file, image_root)
    with pytest.raises(
        ValueError, match=rf"Annotation 9 of .*instances\.json.*'{orphan}'.*image id 44"
    ):
        DatasetCatalog.get(orphan)
    data["categories"] = []
    (tmp_path / "instances.json").write_text(json.dumps(data))
    no_categories = registered({}, json_file, image_root)
    with pytest.raises(ValueError, match=rf"instances\.json.*'{no_categories}'.*no 'categories'"):
        _ = MetadataCatalog.get(no_categories).thing_ids


def test_box_only_annotations_have_no_segmentation(tmp_path):
    annotations = [
        _ann(1, 5, []),
        {k: v for k, v in _ann(2, 9, None).items() if k != "segmentation"},
    ]
    json_file, image_root = write_instances(tmp_path, annotations)
    (d,) = load_coco_json(json_file, image_root, META)
    assert [a["id"] for a in d["annotations"]] == [1, 2]
    assert all("segmentation" not in a for a in d["annotations"])
    assert d["annotations"][0]["bbox"] == [1.0, 1.0, 2.0, 2.0]
