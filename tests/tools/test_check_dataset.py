"""Tests of tools/check_dataset.py on shapes and on deliberately corrupted copies."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from panoptic2.data import DatasetCatalog, MetadataCatalog
from panoptic2.data.datasets import register_coco_panoptic, register_sem_seg
from panoptic2.data.datasets.metadata import get_voc_metadata
from panoptic2.data.datasets.shapes import generate_shapes, shapes_metadata

_TOOL = os.path.join(os.path.dirname(__file__), "..", "..", "tools", "check_dataset.py")
_spec = importlib.util.spec_from_file_location("check_dataset", _TOOL)
check_dataset = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_dataset)


@pytest.fixture(scope="module")
def shapes_coco(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes_coco")
    generate_shapes(str(root), "coco", num_train=0, num_val=3)
    return root


@pytest.fixture()
def registered(shapes_coco, tmp_path):
    """Registers a private copy of shapes (COCO layout) and yields (name, copy root)."""
    root = tmp_path / "copy"
    shutil.copytree(shapes_coco, root)
    name = f"check_dataset_test_{tmp_path.name}"
    register_coco_panoptic(
        name,
        shapes_metadata(),
        str(root / "val2017"),
        str(root / "annotations/panoptic_val2017"),
        str(root / "annotations/panoptic_val2017.json"),
    )
    yield name, root
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def _ids(path):
    rgb = np.asarray(Image.open(path), dtype=np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


def test_clean_shapes_pass(registered, capsys):
    name, root = registered
    assert check_dataset.main([name]) == 0
    out = capsys.readouterr().out
    assert "| images " in out and "| problems       | 0" in out
    result = check_dataset.check_dataset(name, progress=False)
    with open(root / "annotations/panoptic_val2017.json") as f:
        data = json.load(f)
    n_segments = sum(len(a["segments_info"]) for a in data["annotations"])
    n_crowd = sum(s["iscrowd"] for a in data["annotations"] for s in a["segments_info"])
    assert sum(result["segments"].values()) == n_segments
    assert result["crowd"] == n_crowd
    pans = [
        _ids(root / "annotations/panoptic_val2017" / a["file_name"]) for a in data["annotations"]
    ]
    void = sum((p == 0).sum() for p in pans) / sum(p.size for p in pans)
    assert result["void_fraction"] == pytest.approx(void)


def test_corrupted_copy_reports_each_problem(registered, capsys):
    name, root = registered
    json_path = root / "annotations/panoptic_val2017.json"
    with open(json_path) as f:
        data = json.load(f)
    ann0, ann1, ann2 = data["annotations"]
    # 1. A segment erased from its PNG (still in the JSON).
    png0 = root / "annotations/panoptic_val2017" / ann0["file_name"]
    victim = ann0["segments_info"][-1]["id"]
    rgb = np.asarray(Image.open(png0)).copy()
    rgb[_ids(png0) == victim] = 0
    Image.fromarray(rgb).save(png0)
    # 2. A wrong area and 3. a PNG id missing from the JSON.
    ann1["segments_info"][0]["area"] += 5
    dropped = ann1["segments_info"].pop()["id"]
    with open(json_path, "w") as f:
        json.dump(data, f)
    # 4. An image whose size differs from the JSON.
    img2 = root / "val2017" / data["images"][2]["file_name"]
    Image.new("RGB", (9, 9)).save(img2)

    assert check_dataset.main([name, "--max-images", "3"]) == 1
    out = capsys.readouterr().out
    assert f"segment {victim} of '{png0}'" in out and "missing from its PNG" in out
    assert f"area {ann1['segments_info'][0]['area']} in the JSON" in out
    assert f"id {dropped} (" in out and "is not in the JSON segments_info" in out
    assert f"image '{img2}' is 9x9" in out


def test_semantic_values_out_of_range(tmp_path, capsys):
    (tmp_path / "img").mkdir()
    (tmp_path / "gt").mkdir()
    Image.new("RGB", (4, 3)).save(tmp_path / "img/a.jpg")
    labels = np.zeros((3, 4), np.uint8)
    labels[0, 0] = 40
    labels[1] = 255
    Image.fromarray(labels).save(tmp_path / "gt/a.png")
    name = f"check_dataset_sem_{tmp_path.name}"
    register_sem_seg(name, get_voc_metadata(), str(tmp_path / "img"), str(tmp_path / "gt"))
    try:
        result = check_dataset.check_dataset(name, progress=False)
        assert result["void_fraction"] == pytest.approx(4 / 12)
        assert check_dataset.main([name]) == 1
        assert "a.png' has values [40]" in capsys.readouterr().out
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def test_missing_dataset_files_reported(tmp_path, capsys):
    name = f"check_dataset_missing_{tmp_path.name}"
    register_sem_seg(name, get_voc_metadata(), str(tmp_path / "img"), str(tmp_path / "gt"))
    try:
        assert check_dataset.main([name]) == 1
        assert f"loading failed: The label folder '{tmp_path / 'gt'}'" in capsys.readouterr().out
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
