"""Tests of the synthetic shapes dataset (panoptic2/data/datasets/shapes*.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_util

from panoptic2.data.datasets.shapes import (
    COMPLETE_MARKER,
    SHAPES_CATEGORIES,
    ensure_shapes,
    generate_shapes,
    iter_shapes_samples,
    shapes_metadata,
)
from panoptic2.data.datasets.shapes_render import load_shapes_styles

SIZE = (96, 120)


def _rgb2id(path: str) -> np.ndarray:
    rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]


def _bbox(mask: np.ndarray) -> list[int]:
    ys, xs = np.where(mask)
    return [
        int(xs.min()),
        int(ys.min()),
        int(xs.max() - xs.min() + 1),
        int(ys.max() - ys.min() + 1),
    ]


def _read_json(path: str):
    with open(path) as f:
        return json.load(f)


def _read_lines(path: str) -> list[str]:
    with open(path) as f:
        return f.read().split()


def _tree_bytes(root: str) -> dict[str, bytes]:
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = f.read()
    return out


@pytest.fixture(scope="module")
def coco_dir(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("shapes_coco"))
    generate_shapes(out, "coco", num_train=8, num_val=2, seed=0, image_size=SIZE)
    return out


def test_categories_and_metadata():
    things = [c for c in SHAPES_CATEGORIES if c["isthing"]]
    stuff = [c for c in SHAPES_CATEGORIES if not c["isthing"]]
    assert len(things) >= 3 and len(stuff) >= 3
    ids = [c["id"] for c in SHAPES_CATEGORIES]
    assert len(set(ids)) == len(ids) and 0 not in ids
    assert ids != list(range(1, len(ids) + 1))  # non-contiguous like COCO
    meta = shapes_metadata()
    # Hand-computed from the table: things 1, 2, 3 -> 1..3, stuff 101..103 -> 4..6.
    assert meta["thing_dataset_id_to_contiguous_id"] == {1: 1, 2: 2, 3: 3}
    assert meta["stuff_dataset_id_to_contiguous_id"] == {101: 4, 102: 5, 103: 6}
    assert meta["thing_ids"] == [1, 2, 3]
    assert meta["num_classes"] == 7 and meta["label_divisor"] == 256 and meta["ignore_label"] == 0
    assert meta["classes"] == ["void", "disk", "square", "triangle", "grass", "water", "sand"]


def test_coco_layout(coco_dir):
    ann = os.path.join(coco_dir, "annotations")
    for split, n, first in (("train", 8, 1), ("val", 2, 1_000_001)):
        pan = _read_json(os.path.join(ann, f"panoptic_{split}2017.json"))
        assert [im["file_name"] for im in pan["images"]][0] == f"{first:012d}.jpg"
        assert len(pan["images"]) == len(pan["annotations"]) == n
        assert pan["categories"] == SHAPES_CATEGORIES
        for im, a in zip(pan["images"], pan["annotations"]):
            assert a["image_id"] == im["id"] and a["file_name"] == im["file_name"][:-4] + ".png"
            jpg = Image.open(os.path.join(coco_dir, f"{split}2017", im["file_name"]))
            png = Image.open(os.path.join(ann, f"panoptic_{split}2017", a["file_name"]))
            assert jpg.format == "JPEG" and jpg.mode == "RGB" and png.mode == "RGB"
            assert jpg.size == png.size == (im["width"], im["height"]) == SIZE[::-1]
        inst = _read_json(os.path.join(ann, f"instances_{split}2017.json"))
        assert inst["images"] == pan["images"]
        assert {c["id"] for c in inst["categories"]} == {1, 2, 3}


def test_coco_panoptic_png_matches_json(coco_dir):
    ann = os.path.join(coco_dir, "annotations")
    pan = _read_json(os.path.join(ann, "panoptic_train2017.json"))
    cats = {c["id"]: c for c in pan["categories"]}
    seen_cats, crowd, void_fracs = set(), 0, []
    for a in pan["annotations"]:
        ids = _rgb2id(os.path.join(ann, "panoptic_train2017", a["file_name"]))
        listed = {s["id"] for s in a["segments_info"]}
        assert len(listed) == len(a["segments_info"])
        assert set(np.unique(ids).tolist()) - {0} == listed  # PNG <-> JSON, both ways
        assert sorted(listed) != list(range(1, len(listed) + 1))  # COCO-like, not contiguous
        void_fracs.append(float((ids == 0).mean()))
        for s in a["segments_info"]:
            mask = ids == s["id"]
            assert s["area"] == int(mask.sum()) and s["bbox"] == _bbox(mask)
            assert s["category_id"] in cats
            seen_cats.add(s["category_id"])
            if s["iscrowd"]:
                crowd += 1
                assert cats[s["category_id"]]["isthing"] == 1
    assert crowd >= 1
    assert 0.005 < np.mean(void_fracs) < 0.15
    assert sum(cats[c]["isthing"] for c in seen_cats) >= 3
    assert sum(1 - cats[c]["isthing"] for c in seen_cats) >= 3


def test_coco_instances_match_panoptic(coco_dir):
    from scipy import ndimage

    ann = os.path.join(coco_dir, "annotations")
    pan = _read_json(os.path.join(ann, "panoptic_train2017.json"))
    inst = _read_json(os.path.join(ann, "instances_train2017.json"))
    by_image: dict[int, list[dict]] = {}
    for a in inst["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    checked_poly = checked_rle = 0
    for p in pan["annotations"]:
        ids = _rgb2id(os.path.join(ann, "panoptic_train2017", p["file_name"]))
        h, w = ids.shape
        things = [s for s in p["segments_info"] if s["category_id"] < 100]
        insts = by_image.get(p["image_id"], [])
        assert len(insts) == len(things)
        for s, a in zip(things, insts):  # written in the same order
            mask = ids == s["id"]
            assert (a["category_id"], a["iscrowd"], a["area"]) == (
                s["category_id"],
                s["iscrowd"],
                int(mask.sum()),
            )
            assert a["bbox"] == [float(v) for v in _bbox(mask)]
            if a["iscrowd"]:
                assert isinstance(a["segmentation"]["counts"], str)
                decoded = mask_util.decode(a["segmentation"]).astype(bool)
                assert np.array_equal(decoded, mask)
                checked_rle += 1
            else:
                rles = mask_util.frPyObjects(a["segmentation"], h, w)
                decoded = mask_util.decode(mask_util.merge(rles)).astype(bool)
                # COCO polygons cannot have holes: exact up to the mask's holes.
                assert np.array_equal(decoded, ndimage.binary_fill_holes(mask))
                checked_poly += 1
    assert checked_rle >= 1 and checked_poly >= 10


def test_deterministic(tmp_path):
    a, b, c = (str(tmp_path / n) for n in "abc")
    for out, seed in ((a, 1), (b, 1), (c, 2)):
        generate_shapes(out, "coco", num_train=3, num_val=1, seed=seed, image_size=SIZE)
    files_a, files_b = _tree_bytes(a), _tree_bytes(b)
    assert len(files_a) > 10 and files_a == files_b
    assert _tree_bytes(c) != files_a
    # Image i does not depend on the number of images generated.
    s3 = list(iter_shapes_samples("train", 3, 1, SIZE))
    s1 = list(iter_shapes_samples("train", 1, 1, SIZE))
    assert np.array_equal(s3[0][4], s1[0][4])


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="layout"):
        generate_shapes(str(tmp_path), "kitti")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="negative"):
        generate_shapes(str(tmp_path), "coco", num_train=-1)


def test_cityscapes_layout(tmp_path):
    from cityscapesscripts.helpers.labels import id2label, name2label

    out = str(tmp_path)
    generate_shapes(out, "cityscapes", num_train=4, num_val=2, image_size=SIZE)
    assert sorted(os.listdir(os.path.join(out, "leftImg8bit", "train"))) == ["aachen", "bochum"]
    assert os.listdir(os.path.join(out, "leftImg8bit", "val")) == ["frankfurt"]
    lut = np.full(256, 255, np.int64)
    for lb in id2label.values():
        if lb.id >= 0:
            lut[lb.id] = lb.trainId
    cs_labels = load_shapes_styles()["cityscapes"]["labels"]
    samples = list(iter_shapes_samples("train", 4, 0, SIZE))
    gt = os.path.join(out, "gtFine")
    pan = _read_json(os.path.join(gt, "cityscapes_panoptic_train_trainId.json"))
    assert len(pan["images"]) == 4
    pan_by_id = {a["image_id"]: a for a in pan["annotations"]}
    crowd = 0
    for index, _, scene, segment_map, _ in samples:
        city = ["aachen", "bochum"][index % 2]
        stem = f"{city}_{index // 2:06d}_000019"
        base = os.path.join(gt, "train", city, stem + "_gtFine_")
        image = Image.open(
            os.path.join(out, "leftImg8bit", "train", city, stem + "_leftImg8bit.png")
        )
        label_ids = np.asarray(Image.open(base + "labelIds.png"), np.int64)
        train_ids = np.asarray(Image.open(base + "labelTrainIds.png"), np.int64)
        instance_ids = np.asarray(Image.open(base + "instanceIds.png"), np.int64)
        assert image.size == SIZE[::-1] and label_ids.shape == SIZE
        assert np.array_equal(train_ids, lut[label_ids])
        # Our rasterisation and cityscapesscripts' agree: labelIds from the scene directly.
        expected = np.full(len(scene.segments) + 1, name2label["static"].id)
        for i, seg in enumerate(scene.segments, start=1):
            expected[i] = name2label[cs_labels[str(seg.category_id)]].id
        assert np.array_equal(label_ids, expected[segment_map])
        # Panoptic PNG/JSON consistent with instanceIds.
        a = pan_by_id[stem]
        ids = _rgb2id(os.path.join(gt, "cityscapes_panoptic_train_trainId", a["file_name"]))
        evaluated = ~np.isin(label_ids, [lb.id for lb in id2label.values() if lb.ignoreInEval])
        assert np.array_equal(ids, np.where(evaluated, instance_ids, 0))
        assert {s["id"] for s in a["segments_info"]} == set(np.unique(ids).tolist()) - {0}
        for s in a["segments_info"]:
            mask = ids == s["id"]
            assert s["area"] == int(mask.sum()) and s["bbox"] == _bbox(mask)
            label = id2label[s["id"] // 1000 if s["id"] >= 1000 else s["id"]]
            assert s["category_id"] == label.trainId
            assert s["iscrowd"] == int(label.hasInstances and s["id"] < 1000)
            crowd += s["iscrowd"]
    assert crowd >= 1


def test_voc_layout(tmp_path):
    from panoptic2.data.datasets.metadata import voc_colormap

    out = str(tmp_path)
    generate_shapes(out, "voc", num_train=4, num_val=2, image_size=SIZE)
    root = os.path.join(out, "VOCdevkit", "VOC2012")
    sets = os.path.join(root, "ImageSets", "Segmentation")
    train = _read_lines(os.path.join(sets, "train.txt"))
    val = _read_lines(os.path.join(sets, "val.txt"))
    assert len(train) == 4 and len(val) == 2 and not set(train) & set(val)
    assert _read_lines(os.path.join(sets, "trainval.txt")) == train + val
    values = set()
    for name in train + val:
        image = Image.open(os.path.join(root, "JPEGImages", name + ".jpg"))
        label = Image.open(os.path.join(root, "SegmentationClass", name + ".png"))
        assert label.mode == "P" and image.size == label.size == SIZE[::-1]
        assert label.getpalette()[:6] == [0, 0, 0, 128, 0, 0]
        assert label.getpalette()[255 * 3 : 256 * 3] == voc_colormap(256)[255]
        values |= set(np.unique(np.asarray(label)).tolist())
    assert values <= set(range(21)) | {255}
    assert {0, 255, 15, 7, 8} <= values  # background, ignore band, person/car/cat


def test_ensure_shapes_concurrent(tmp_path):
    root = str(tmp_path / "datasets")
    # Patch the defaults down to a tiny dataset inside each child process.
    code = textwrap.dedent(
        f"""
        import panoptic2.data.datasets.shapes as s
        orig = s.generate_shapes
        def small(out, layout):
            print("GENERATING", flush=True)
            orig(out, layout, num_train=3, num_val=1, image_size=(64, 80))
        s.generate_shapes = small
        print("RESULT", s.ensure_shapes({root!r}, "coco"))
        """
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    target = os.path.join(root, "shapes_coco")
    assert all(f"RESULT {target}" in o for o in outs)
    assert sum(o.count("GENERATING") for o in outs) == 1  # the lock serialised them
    assert os.path.isfile(os.path.join(target, COMPLETE_MARKER))
    assert not [n for n in os.listdir(root) if n.endswith(".tmp")]  # no leftover temp dirs
    pan = _read_json(os.path.join(target, "annotations", "panoptic_train2017.json"))
    assert len(os.listdir(os.path.join(target, "train2017"))) == len(pan["images"]) == 3
    # Complete: returned at once, without regenerating.
    assert ensure_shapes(root, "coco") == target


def test_ensure_shapes_refuses_incomplete_dir(tmp_path):
    os.makedirs(tmp_path / "shapes_voc")
    (tmp_path / "shapes_voc" / "junk.txt").write_text("x")
    with pytest.raises(RuntimeError, match="marker"):
        ensure_shapes(str(tmp_path), "voc")
    with pytest.raises(ValueError, match="layout"):
        ensure_shapes(str(tmp_path), "ade20k")
