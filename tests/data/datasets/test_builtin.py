"""Tests of panoptic2/data/datasets/builtin.py: lazy registration under PANOPTIC2_DATASETS."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from panoptic2.data import DatasetCatalog, MetadataCatalog
from panoptic2.data.datasets import builtin
from panoptic2.data.datasets.shapes import COMPLETE_MARKER, generate_shapes

EXPECTED_NAMES = [
    f"{prefix}_{split}"
    for split in ("train", "val")
    for prefix in (
        "cityscapes_fine_panoptic",
        "cityscapes_fine_sem_seg",
        "cityscapes_fine_instance_seg",
        "voc_2012_sem_seg",
        "shapes_panoptic",
        "shapes_panoptic_separated",
        "shapes_instances",
        "shapes_cityscapes_fine_panoptic",
        "shapes_cityscapes_fine_sem_seg",
        "shapes_voc_sem_seg",
    )
] + [
    "coco_2017_train_panoptic",
    "coco_2017_val_panoptic",
    "coco_2017_train_panoptic_separated",
    "coco_2017_val_panoptic_separated",
    "coco_2017_train",
    "coco_2017_val",
    "voc_2012_sem_seg_train_aug",
]


def _small_shapes(root, layout):
    """A small pre-generated layout that ensure_shapes accepts (marker present)."""
    target = os.path.join(root, f"shapes_{layout}")
    generate_shapes(target, layout, num_train=2, num_val=2)
    with open(os.path.join(target, COMPLETE_MARKER), "w") as f:
        json.dump({"layout": layout}, f)


def test_all_names_registered_with_metadata_without_files(monkeypatch, tmp_path):
    monkeypatch.setenv("PANOPTIC2_DATASETS", str(tmp_path / "does_not_exist"))
    for name in EXPECTED_NAMES:
        assert name in DatasetCatalog, name
        evaluators = MetadataCatalog.get(name).evaluators
        assert evaluators, name
    assert MetadataCatalog.get("coco_2017_val_panoptic").num_classes == 134
    assert MetadataCatalog.get("coco_2017_val_panoptic").evaluators == [
        "COCOPanopticEvaluator",
        "SemSegEvaluator",
    ]
    assert MetadataCatalog.get("cityscapes_fine_sem_seg_val").evaluators == [
        "CityscapesSemSegEvaluator"
    ]
    assert MetadataCatalog.get("cityscapes_fine_panoptic_val").label_divisor == 1000
    assert MetadataCatalog.get("voc_2012_sem_seg_val").num_classes == 21
    assert MetadataCatalog.get("shapes_panoptic_val").num_classes == 7
    # Instance-only names: the thing classes only, with the panoptic names' contiguous ids.
    coco = MetadataCatalog.get("coco_2017_val")
    assert coco.evaluators == ["COCOEvaluator"] and coco.stuff_classes == []
    assert len(coco.thing_classes) == 80 and coco.thing_classes[0] == "person"
    panoptic = MetadataCatalog.get("coco_2017_val_panoptic")
    assert coco.thing_dataset_id_to_contiguous_id == panoptic.thing_dataset_id_to_contiguous_id
    shapes = MetadataCatalog.get("shapes_instances_train")
    assert shapes.thing_ids == [1, 2, 3] and shapes.thing_classes == ["disk", "square", "triangle"]
    assert not (tmp_path / "does_not_exist").exists()


@pytest.mark.parametrize(
    "name, expected",
    [
        ("coco_2017_val_panoptic", "coco/annotations/panoptic_val2017.json"),
        ("coco_2017_train", "coco/annotations/instances_train2017.json"),
        ("cityscapes_fine_sem_seg_train", "cityscapes/leftImg8bit/train"),
        ("voc_2012_sem_seg_val", "VOCdevkit/VOC2012"),
    ],
)
def test_missing_real_dataset_names_path_and_readme(monkeypatch, tmp_path, name, expected):
    monkeypatch.setenv("PANOPTIC2_DATASETS", str(tmp_path))
    with pytest.raises(FileNotFoundError) as err:
        DatasetCatalog.get(name)
    assert str(tmp_path / expected) in str(err.value)
    assert "datasets/README.md" in str(err.value)
    assert name in str(err.value)


def test_root_read_at_load_time(monkeypatch, tmp_path):
    _small_shapes(str(tmp_path), "coco")
    monkeypatch.setenv("PANOPTIC2_DATASETS", str(tmp_path))
    dicts = DatasetCatalog.get("shapes_panoptic_val")
    assert len(dicts) == 2
    assert dicts[0]["file_name"].startswith(str(tmp_path / "shapes_coco" / "val2017"))
    md = MetadataCatalog.get("shapes_panoptic_val")
    assert md.panoptic_json == str(tmp_path / "shapes_coco/annotations/panoptic_val2017.json")


def test_shapes_separated_makes_stuff_pngs(monkeypatch, tmp_path):
    _small_shapes(str(tmp_path), "coco")
    monkeypatch.setenv("PANOPTIC2_DATASETS", str(tmp_path))
    dicts = DatasetCatalog.get("shapes_panoptic_separated_train")
    md = MetadataCatalog.get("shapes_panoptic_separated_train")
    assert md.sem_seg_classes[0] == "things" and md.sem_seg_num_classes == 4
    for d in dicts:
        rgb = np.asarray(Image.open(d["pan_seg_file_name"]), dtype=np.int64)
        ids = rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]
        sem = np.asarray(Image.open(d["sem_seg_file_name"]))
        for seg in d["segments_info"]:
            # Stuff contiguous ids 4, 5, 6 -> 1, 2, 3; things -> 0.
            expected = 0 if seg["isthing"] else seg["category_id"] - 3
            assert (sem[ids == seg["id"]] == expected).all()
        assert (sem[ids == 0] == 255).all()
        assert d["annotations"] and all(a["bbox_mode"] == "XYWH_ABS" for a in d["annotations"])


def test_shapes_instances_read_the_coco_layouts_instances_json(monkeypatch, tmp_path):
    _small_shapes(str(tmp_path), "coco")
    monkeypatch.setenv("PANOPTIC2_DATASETS", str(tmp_path))
    dicts = DatasetCatalog.get("shapes_instances_val")
    md = MetadataCatalog.get("shapes_instances_val")
    json_file = tmp_path / "shapes_coco/annotations/instances_val2017.json"
    assert md.json_file == str(json_file)
    data = json.loads(json_file.read_text())
    assert [d["image_id"] for d in dicts] == sorted(i["id"] for i in data["images"])
    assert sum(len(d["annotations"]) for d in dicts) == len(data["annotations"])
    # Dataset ids 1, 2, 3 (disk, square, triangle) -> contiguous 1, 2, 3.
    by_id = {a["id"]: a for a in data["annotations"]}
    for d in dicts:
        for a in d["annotations"]:
            assert a["category_id"] == by_id[a["id"]]["category_id"]
            assert a["bbox"] == by_id[a["id"]]["bbox"] and a["bbox_mode"] == "XYWH_ABS"
    assert "pan_seg_file_name" not in dicts[0]


def test_shapes_cityscapes_and_voc(monkeypatch, tmp_path):
    _small_shapes(str(tmp_path), "cityscapes")
    _small_shapes(str(tmp_path), "voc")
    monkeypatch.setenv("PANOPTIC2_DATASETS", str(tmp_path))
    pan = DatasetCatalog.get("shapes_cityscapes_fine_panoptic_val")
    sem = DatasetCatalog.get("shapes_cityscapes_fine_sem_seg_val")
    assert [d["image_id"] for d in pan] == [d["image_id"] for d in sem]
    assert all(s["category_id"] < 19 for d in pan for s in d["segments_info"])
    voc = DatasetCatalog.get("shapes_voc_sem_seg_train")
    assert len(voc) == 2 and voc[0]["sem_seg_file_name"].endswith(".png")


def test_datasets_root_default(monkeypatch):
    monkeypatch.delenv("PANOPTIC2_DATASETS", raising=False)
    assert builtin.get_datasets_root() == "datasets"
