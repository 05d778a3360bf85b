"""Tiny hand-made COCO panoptic and Cityscapes folders, and independent label references.

The reference functions compute panoptic maps with a lookup table over segment ids, read
with OpenCV, not with the converter's per-segment masks read with PIL.
"""

from __future__ import annotations

import json
import os

import cv2
import numpy as np
from PIL import Image

# Original COCO-style ids, deliberately unsorted and non-contiguous: things 1, 3 and stuff
# 101, 102 map to contiguous 1, 2 (things by id) then 3, 4 (stuff by id).
COCO_CATEGORIES = [
    {"id": 101, "name": "grass", "isthing": 0, "color": [0, 200, 0]},
    {"id": 3, "name": "box", "isthing": 1, "color": [200, 0, 0]},
    {"id": 1, "name": "disk", "isthing": 1, "color": [0, 0, 200]},
    {"id": 102, "name": "sky", "isthing": 0, "color": [100, 100, 250]},
]
COCO_CONTIGUOUS = {1: 1, 3: 2, 101: 3, 102: 4}
COCO_THING_IDS = {1, 2}  # contiguous ids of the things


def _write_rgb_ids(path: str, ids: np.ndarray) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    rgb = np.stack([ids % 256, (ids // 256) % 256, ids // 65536], -1).astype(np.uint8)
    Image.fromarray(rgb, "RGB").save(path)


def _image(rng: np.random.Generator, h: int, w: int, gray: bool = False) -> Image.Image:
    if gray:
        return Image.fromarray(rng.integers(0, 255, (h, w), dtype=np.uint8), "L")
    return Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), "RGB")


def _coco_segments(rng: np.random.Generator, h: int, w: int, n_things: int):
    """A segment-id map and its segments_info: two stuff bands, things, one crowd, void."""
    ids = np.zeros((h, w), np.int64)
    segments = []
    ids[: h // 2] = 300  # ids > 255 exercise the G channel
    ids[h // 2 :] = 70000  # and the B channel
    segments.append({"id": 300, "category_id": 102, "iscrowd": 0})
    segments.append({"id": 70000, "category_id": 101, "iscrowd": 0})
    for k in range(n_things):
        y, x = int(rng.integers(0, h - 2)), int(rng.integers(0, w - 2))
        seg_id = 1000 + k
        ids[y : y + 2, x : x + 2] = seg_id
        segments.append({"id": seg_id, "category_id": [1, 3][k % 2], "iscrowd": 0})
    ids[0, :3] = 555  # a crowd thing
    segments.append({"id": 555, "category_id": 3, "iscrowd": 1})
    ids[-1, -2:] = 0  # void
    for s in segments:
        s["area"] = int((ids == s["id"]).sum())
        ys, xs = np.nonzero(ids == s["id"])
        s["bbox"] = [int(xs.min()), int(ys.min()), int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1]
    segments = [s for s in segments if s["area"] > 0]
    return ids, segments


def make_coco_fixture(root: str, num_train: int = 3, num_val: int = 2, seed: int = 0) -> str:
    """Writes a tiny COCO panoptic layout (val image 0 is a grayscale JPEG) under ``root``."""
    rng = np.random.default_rng(seed)
    h, w = 12, 10
    image_id = 1
    for split, n in (("train", num_train), ("val", num_val)):
        images, annotations = [], []
        for i in range(n):
            stem = f"{image_id:012d}"
            os.makedirs(os.path.join(root, f"{split}2017"), exist_ok=True)
            img = _image(rng, h, w, gray=(split == "val" and i == 0))
            img.save(os.path.join(root, f"{split}2017", stem + ".jpg"), quality=95)
            ids, segments = _coco_segments(rng, h, w, n_things=3 + i)
            _write_rgb_ids(
                os.path.join(root, "annotations", f"panoptic_{split}2017", stem + ".png"), ids
            )
            images.append({"id": image_id, "file_name": stem + ".jpg", "height": h, "width": w})
            annotations.append(
                {"image_id": image_id, "file_name": stem + ".png", "segments_info": segments}
            )
            image_id += 1
        data = {"images": images, "annotations": annotations, "categories": COCO_CATEGORIES}
        with open(os.path.join(root, "annotations", f"panoptic_{split}2017.json"), "w") as f:
            json.dump(data, f)
    return root


# Cityscapes train ids: stuff 0 (road), 8 (vegetation); things 11 (person), 13 (car).
def make_cityscapes_fixture(root: str, seed: int = 0) -> str:
    """Writes a tiny Cityscapes layout after cityscapesscripts preparation under ``root``."""
    rng = np.random.default_rng(seed)
    h, w = 8, 12
    for split, cities in (
        ("train", {"aachen": 2, "bonn": 1}),
        ("val", {"lindau": 2}),
        ("test", {"berlin": 2}),
    ):
        annotations = []
        for city, n in cities.items():
            for i in range(n):
                prefix = f"{city}_{i:06d}_000019"
                img_dir = os.path.join(root, "leftImg8bit", split, city)
                os.makedirs(img_dir, exist_ok=True)
                _image(rng, h, w).save(os.path.join(img_dir, prefix + "_leftImg8bit.png"))
                if split == "test":
                    continue
                ids = np.zeros((h, w), np.int64)
                ids[: h // 2] = 7  # road (label id 7, train id 0)
                ids[h // 2 :] = 21  # vegetation (label id 21, train id 8)
                segments = [
                    {"id": 7, "category_id": 0, "iscrowd": 0},
                    {"id": 21, "category_id": 8, "iscrowd": 0},
                ]
                for k in range(2 + i):
                    y, x = int(rng.integers(0, h - 2)), int(rng.integers(0, w - 2))
                    label_id, train_id = [(24, 11), (26, 13)][k % 2]
                    seg_id = label_id * 1000 + k
                    ids[y : y + 2, x : x + 2] = seg_id
                    segments.append({"id": seg_id, "category_id": train_id, "iscrowd": 0})
                ids[0, -3:] = 26  # a crowd car group
                segments.append({"id": 26, "category_id": 13, "iscrowd": 1})
                ids[-1, :2] = 0  # void
                for s in segments:
                    s["area"] = int((ids == s["id"]).sum())
                segments = [s for s in segments if s["area"] > 0]
                pan_name = prefix + "_gtFine_panoptic.png"
                _write_rgb_ids(
                    os.path.join(root, "gtFine", f"cityscapes_panoptic_{split}_trainId", pan_name),
                    ids,
                )
                annotations.append(
                    {"image_id": prefix, "file_name": pan_name, "segments_info": segments}
                )
                sem = np.full((h, w), 255, np.uint8)
                for s in segments:
                    sem[ids == s["id"]] = s["category_id"]
                gt_dir = os.path.join(root, "gtFine", split, city)
                os.makedirs(gt_dir, exist_ok=True)
                Image.fromarray(sem, "L").save(
                    os.path.join(gt_dir, prefix + "_gtFine_labelTrainIds.png")
                )
        if split != "test":
            path = os.path.join(root, "gtFine", f"cityscapes_panoptic_{split}_trainId.json")
            with open(path, "w") as f:
                json.dump({"annotations": annotations, "categories": []}, f)
    return root


def reference_panoptic(
    png_path: str,
    segments: list[dict],
    mapping: dict[int, int],
    things: set[int],
    divisor: int,
    ignore: int,
    crowd_as_ignore: bool = True,
) -> np.ndarray:
    """The expected panoptic map, computed independently with a lookup table.

    Args:
        png_path: the COCO-format panoptic PNG.
        segments: its segments_info (original category ids).
        mapping: original -> contiguous category id.
        things: contiguous ids of thing classes.
        divisor: the label divisor.
        ignore: the ignore label.
        crowd_as_ignore: crowd things map to the ignore label.

    Returns:
        ``(H, W) int64`` panoptic map.
    """
    bgr = cv2.imread(png_path, cv2.IMREAD_COLOR).astype(np.int64)
    ids = bgr[..., 2] | (bgr[..., 1] << 8) | (bgr[..., 0] << 16)
    lut = {0: ignore * divisor}
    counters: dict[int, int] = {}
    for s in segments:
        cls = mapping[s["category_id"]]
        if cls in things and s["iscrowd"]:
            lut[s["id"]] = (ignore if crowd_as_ignore else cls) * divisor
        elif cls in things:
            counters[cls] = counters.get(cls, 0) + 1
            lut[s["id"]] = cls * divisor + counters[cls]
        else:
            lut[s["id"]] = cls * divisor
    uniq, inverse = np.unique(ids, return_inverse=True)
    values = np.array([lut.get(int(u), ignore * divisor) for u in uniq], np.int64)
    return values[inverse.reshape(ids.shape)]
