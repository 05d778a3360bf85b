"""Tests of panoptic2/data/datasets/coco_panoptic.py on the real COCO panoptic samples."""

from __future__ import annotations

import gc
import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from panoptic2.data import DatasetCatalog, MetadataCatalog
from panoptic2.data.datasets import coco_panoptic, file_checks
from panoptic2.data.datasets.coco_panoptic import (
    get_panoptic_fpn_stuff_metadata,
    load_coco_panoptic_json,
    register_coco_panoptic,
    register_coco_panoptic_separated,
    separate_coco_semantic_from_panoptic,
)
from panoptic2.data.datasets.metadata import (
    get_coco_panoptic_metadata,
    load_coco_panoptic_categories,
)

SAMPLE = "/work/shared/data/coco_panoptic_sample"
if not os.path.isdir(SAMPLE):  # the shared folder sits beside the repo in the team layout
    SAMPLE = os.path.join(os.path.dirname(__file__), "../../../../shared/data/coco_panoptic_sample")


@pytest.fixture()
def coco(tmp_path):
    """A writable copy of the samples plus blank JPEGs of the right sizes."""
    ann_dir = tmp_path / "panoptic_val2017"
    shutil.copytree(os.path.join(SAMPLE, "panoptic_examples"), ann_dir)
    for p in ann_dir.iterdir():
        p.chmod(0o644)
    json_file = tmp_path / "panoptic_val2017.json"
    shutil.copy(os.path.join(SAMPLE, "panoptic_examples.json"), json_file)
    json_file.chmod(0o644)
    image_dir = tmp_path / "val2017"
    image_dir.mkdir()
    with open(os.path.join(SAMPLE, "images_info_examples.json")) as f:
        for im in json.load(f)["images"]:
            Image.new("RGB", (im["width"], im["height"])).save(image_dir / im["file_name"])
    meta = get_coco_panoptic_metadata(load_coco_panoptic_categories())
    return {"json": str(json_file), "images": str(image_dir), "pngs": str(ann_dir), "meta": meta}


def _ids(png_path: str) -> np.ndarray:
    rgb = np.asarray(Image.open(png_path), dtype=np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


def test_contents_match_pngs(coco):
    dicts = load_coco_panoptic_json(coco["json"], coco["images"], coco["pngs"], coco["meta"])
    assert [d["image_id"] for d in dicts] == [142238, 439180]
    assert (dicts[0]["height"], dicts[0]["width"]) == (427, 640)
    assert dicts[0]["file_name"] == os.path.join(coco["images"], "000000142238.jpg")
    with open(coco["json"]) as f:
        raw = {a["image_id"]: a for a in json.load(f)["annotations"]}
    # Hand-checked points of DeepLab2's label space: things 1..80 first, then stuff.
    hand = {1: 1, 90: 80, 92: 81, 200: 133}
    for d in dicts:
        ids = _ids(d["pan_seg_file_name"])
        assert ids.shape == (d["height"], d["width"])
        raw_segs = raw[d["image_id"]]["segments_info"]
        assert len(d["segments_info"]) == len(raw_segs)
        for seg, raw_seg in zip(d["segments_info"], raw_segs):
            mask = ids == seg["id"]
            assert seg["area"] == mask.sum()
            ys, xs = np.nonzero(mask)
            box = [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
            assert seg["bbox"] == [float(v) for v in box]
            assert seg["iscrowd"] == raw_seg["iscrowd"]
            assert seg["isthing"] == (raw_seg["category_id"] <= 90)
            assert isinstance(seg["category_id"], int)
            if raw_seg["category_id"] in hand:
                assert seg["category_id"] == hand[raw_seg["category_id"]]
            assert (seg["category_id"] <= 80) == seg["isthing"]
        # Every non-void PNG id is described.
        assert set(np.unique(ids)) - {0} == {s["id"] for s in d["segments_info"]}
    crowd = sum(s["iscrowd"] for d in dicts for s in d["segments_info"])
    raw_crowd = sum(s["iscrowd"] for a in raw.values() for s in a["segments_info"])
    assert crowd == raw_crowd


def test_validate_passes_on_real_samples(coco):
    dicts = load_coco_panoptic_json(
        coco["json"], coco["images"], coco["pngs"], coco["meta"], validate=True
    )
    assert len(dicts) == 2


def test_missing_files_name_the_file(coco):
    meta = coco["meta"]
    with pytest.raises(FileNotFoundError, match="nope.json"):
        load_coco_panoptic_json(coco["json"] + "nope.json", coco["images"], coco["pngs"], meta)
    os.remove(os.path.join(coco["images"], "000000439180.jpg"))
    with pytest.raises(FileNotFoundError, match=r"000000439180\.jpg.*dataset 'my_set'"):
        load_coco_panoptic_json(
            coco["json"], coco["images"], coco["pngs"], meta, dataset_name="my_set"
        )


def test_missing_png_names_the_file(coco):
    os.remove(os.path.join(coco["pngs"], "000000142238.png"))
    with pytest.raises(FileNotFoundError, match=r"panoptic PNG .*000000142238\.png"):
        load_coco_panoptic_json(coco["json"], coco["images"], coco["pngs"], coco["meta"])


def test_unknown_category_names_image_and_segment(coco):
    with open(coco["json"]) as f:
        data = json.load(f)
    seg = data["annotations"][1]["segments_info"][3]
    seg["category_id"] = 12  # not a COCO panoptic category
    with open(coco["json"], "w") as f:
        json.dump(data, f)
    with pytest.raises(ValueError, match=rf"Segment {seg['id']} of image '000000439180\.jpg'"):
        load_coco_panoptic_json(coco["json"], coco["images"], coco["pngs"], coco["meta"])


def _edit_json(coco, edit) -> None:
    with open(coco["json"]) as f:
        data = json.load(f)
    edit(data)
    with open(coco["json"], "w") as f:
        json.dump(data, f)


@pytest.fixture(params=["msgspec", "json"])
def parser(request, monkeypatch):
    """Runs a test with msgspec parsing and checking the JSON, and with plain json."""
    if request.param == "json":
        monkeypatch.setattr(file_checks, "_msgspec", None)
        monkeypatch.setattr(coco_panoptic, "SCHEMA_CHECKS", False)
    elif not file_checks.SCHEMA_CHECKS:
        pytest.skip("msgspec is not installed")
    return request.param


def test_both_parsers_give_the_same_dicts(coco, parser, monkeypatch):
    got = load_coco_panoptic_json(coco["json"], coco["images"], coco["pngs"], coco["meta"])
    monkeypatch.undo()
    with open(coco["json"]) as f:
        raw = json.load(f)
    meta = coco["meta"]
    contiguous = {**meta["thing_dataset_id_to_contiguous_id"]}
    contiguous.update(meta["stuff_dataset_id_to_contiguous_id"])
    expected = [
        [
            {
                "id": s["id"],
                "category_id": contiguous[s["category_id"]],
                "iscrowd": s["iscrowd"],
                "area": s["area"],
                "bbox": s["bbox"],
                "isthing": s["category_id"] in meta["thing_dataset_id_to_contiguous_id"],
            }
            for s in a["segments_info"]
        ]
        for a in raw["annotations"]
    ]
    assert [d["segments_info"] for d in got] == expected
    assert gc.isenabled()  # the collector paused while loading runs again


def test_missing_segment_field_names_the_place(coco, parser):
    _edit_json(coco, lambda data: data["annotations"][1]["segments_info"][2].pop("area"))
    pattern = "area" + (r".*annotations\[1\]\.segments_info\[2\]" if parser == "msgspec" else "")
    with pytest.raises(ValueError, match=pattern) as error:
        load_coco_panoptic_json(coco["json"], coco["images"], coco["pngs"], coco["meta"])
    assert "panoptic_val2017" in str(error.value)


def test_duplicates_are_named(coco, parser):
    def duplicate(data):
        data["annotations"][1]["image_id"] = data["annotations"][0]["image_id"]

    _edit_json(coco, duplicate)
    with pytest.raises(ValueError, match=r"Annotated image id 142238 appears twice"):
        load_coco_panoptic_json(coco["json"], coco["images"], coco["pngs"], coco["meta"])


def test_files_in_subfolders_and_folders_named_like_files(coco):
    # A name with a folder part is not in the folder listing and is checked on its own.
    os.makedirs(os.path.join(coco["images"], "sub"))
    os.rename(
        os.path.join(coco["images"], "000000142238.jpg"),
        os.path.join(coco["images"], "sub", "000000142238.jpg"),
    )

    def into_subfolder(data):
        for image in data["images"]:
            if image["id"] == 142238:
                image["file_name"] = "sub/000000142238.jpg"

    _edit_json(coco, into_subfolder)
    dicts = load_coco_panoptic_json(coco["json"], coco["images"], coco["pngs"], coco["meta"])
    assert dicts[0]["file_name"] == os.path.join(coco["images"], "sub", "000000142238.jpg")
    # A directory with a PNG's name is not the PNG.
    png = os.path.join(coco["pngs"], "000000439180.png")
    os.remove(png)
    os.makedirs(png)
    with pytest.raises(FileNotFoundError, match=r"panoptic PNG .*000000439180\.png"):
        load_coco_panoptic_json(coco["json"], coco["images"], coco["pngs"], coco["meta"])


def test_validate_finds_segment_missing_from_png(coco):
    png = os.path.join(coco["pngs"], "000000142238.png")
    ids = _ids(png)
    with open(coco["json"]) as f:
        victim = json.load(f)["annotations"][0]["segments_info"][0]["id"]
    rgb = np.asarray(Image.open(png)).copy()
    rgb[ids == victim] = 0  # the segment becomes void in the PNG but stays in the JSON
    Image.fromarray(rgb).save(png)
    with pytest.raises(ValueError, match=rf"segment {victim} of '.*000000142238\.png'.*missing"):
        load_coco_panoptic_json(
            coco["json"], coco["images"], coco["pngs"], coco["meta"], validate=True
        )


def test_validate_finds_size_mismatch(coco):
    Image.new("RGB", (10, 10)).save(os.path.join(coco["images"], "000000439180.jpg"))
    with pytest.raises(ValueError, match=r"000000439180\.jpg' is 10x10"):
        load_coco_panoptic_json(
            coco["json"], coco["images"], coco["pngs"], coco["meta"], validate=True
        )


def test_register_coco_panoptic_is_lazy(coco):
    name = "test_coco_panoptic_register"
    meta = dict(coco["meta"])
    register_coco_panoptic(name, meta, coco["images"], coco["pngs"], coco["json"])
    try:
        md = MetadataCatalog.get(name)
        assert md.panoptic_json == coco["json"]
        assert md.evaluators == ["COCOPanopticEvaluator", "SemSegEvaluator"]
        assert md.num_classes == 134
        assert len(DatasetCatalog.get(name)) == 2
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def test_separate_stuff_pngs(coco, tmp_path):
    cats = load_coco_panoptic_categories()
    out = tmp_path / "panoptic_stuff_val2017"
    assert separate_coco_semantic_from_panoptic(coco["json"], coco["pngs"], str(out), cats) == 2
    assert separate_coco_semantic_from_panoptic(coco["json"], coco["pngs"], str(out), cats) == 0
    stuff_meta = get_panoptic_fpn_stuff_metadata(cats)
    assert stuff_meta["sem_seg_num_classes"] == 54
    assert stuff_meta["sem_seg_classes"][1] == "banner"
    with open(coco["json"]) as f:
        ann = json.load(f)["annotations"][0]
    ids = _ids(os.path.join(coco["pngs"], ann["file_name"]))
    sem = np.asarray(Image.open(out / ann["file_name"]))
    assert sem.dtype == np.uint8
    assert (sem[ids == 0] == 255).all()
    stuff_ids = sorted(c["id"] for c in cats if not c["isthing"])
    for seg in ann["segments_info"]:
        expected = 0 if seg["category_id"] <= 90 else stuff_ids.index(seg["category_id"]) + 1
        assert (sem[ids == seg["id"]] == expected).all()


def test_register_separated_merges_instances(coco, tmp_path):
    cats = load_coco_panoptic_categories()
    sem_root = tmp_path / "stuff"
    separate_coco_semantic_from_panoptic(coco["json"], coco["pngs"], str(sem_root), cats)
    with open(coco["json"]) as f:
        data = json.load(f)
    # A tiny instances JSON for the same images: one polygon and one crowd RLE.
    instances = {
        "images": data["images"],
        "categories": [c for c in cats if c["isthing"]],
        "annotations": [
            {
                "id": 1,
                "image_id": 142238,
                "category_id": 1,
                "bbox": [10, 20, 30, 40],
                "area": 1200,
                "iscrowd": 0,
                "segmentation": [[10, 20, 40, 20, 40, 60, 10, 60]],
            },
            {
                "id": 2,
                "image_id": 439180,
                "category_id": 3,
                "bbox": [0, 0, 2, 1],
                "area": 2,
                "iscrowd": 1,
                "segmentation": {"size": [360, 640], "counts": [0, 2, 360 * 640 - 2]},
            },
        ],
    }
    inst_json = tmp_path / "instances_val2017.json"
    inst_json.write_text(json.dumps(instances))
    name = "test_coco_panoptic_separated"
    meta = {**coco["meta"], **get_panoptic_fpn_stuff_metadata(cats)}
    register_coco_panoptic_separated(
        name, meta, coco["images"], coco["pngs"], coco["json"], str(sem_root), str(inst_json)
    )
    try:
        dicts = DatasetCatalog.get(name)
        assert dicts[0]["annotations"][0]["category_id"] == 1
        assert dicts[0]["annotations"][0]["bbox_mode"] == "XYWH_ABS"
        crowd = dicts[1]["annotations"][0]
        assert crowd["category_id"] == 3 and crowd["iscrowd"] == 1
        assert isinstance(crowd["segmentation"]["counts"], str)  # compressed RLE
        assert dicts[1]["sem_seg_file_name"] == str(sem_root / "000000439180.png")
        assert dicts[1]["segments_info"]  # panoptic fields kept for evaluation
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
