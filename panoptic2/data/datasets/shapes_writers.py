"""Writers of the shapes dataset in the official COCO panoptic, Cityscapes and VOC layouts.

Each writer receives rendered samples (scene, segment map, RGB image) split by split and
writes the files of its layout. Every file is written atomically (temp file + rename)
except those that ``cityscapesscripts.preparation.createPanopticImgs`` writes itself.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from typing import Any

import cv2
import numpy as np
from PIL import Image

from panoptic2.data.panoptic_label import id2rgb, rgb2id
from panoptic2.structures import mask_to_xywh
from panoptic2.utils.file_io import atomic_write

from .shapes_render import VOID, Scene

__all__ = [
    "CityscapesWriter",
    "CocoPanopticWriter",
    "VocWriter",
    "mask_to_polygons",
]


def _save_bytes(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    atomic_write(path, lambda f: f.write(data))


def _save_image(path: str, image: Image.Image, **kwargs: Any) -> None:
    buf = io.BytesIO()
    fmt = "JPEG" if path.endswith(".jpg") else "PNG"
    image.save(buf, format=fmt, **kwargs)
    _save_bytes(path, buf.getvalue())


def _save_json(path: str, obj: Any) -> None:
    _save_bytes(path, json.dumps(obj, indent=None, separators=(",", ":")).encode("utf-8"))


def mask_to_polygons(mask: np.ndarray) -> list[list[float]]:
    """COCO polygons tracing the pixel-corner outline of each connected part of a mask.

    ``cv2.findContours`` traces pixel centres, which drops half a pixel all round; tracing
    the 3x nearest-upsampled mask and mapping the contour back to corner coordinates gives
    polygons that ``pycocotools`` rasterises back to exactly the mask with its holes filled
    (COCO polygons cannot express holes).

    Args:
        mask: ``(H, W) bool`` non-empty mask.

    Returns:
        One flat ``[x0, y0, x1, y1, ...]`` list (>= 3 points) per outer contour.
    """
    x0, y0, w, h = mask_to_xywh(mask)
    crop = mask[y0 : y0 + h, x0 : x0 + w].astype(np.uint8)
    up = cv2.resize(crop, (3 * w, 3 * h), interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(up, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polygons = []
    for contour in contours:
        # Upsampled centre 3x -> corner x (left/top side), 3x + 2 -> corner x + 1.
        corners = np.floor((contour.reshape(-1, 2) + 1) / 3 + 0.5) + [x0, y0]
        polygons.append([float(v) for v in corners.flatten()])
    return polygons


def _segment_stats(segment_map: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """Non-void segment indices present in the map with their masks, in index order."""
    return [(int(i), segment_map == i) for i in np.unique(segment_map) if i != VOID]


class CocoPanopticWriter:
    """Writes ``train2017/``, ``val2017/`` and ``annotations/{panoptic,instances}_*2017``.

    Args:
        output_dir: root of the COCO layout.
        categories: shapes categories (COCO panoptic category dicts).
        styles: rendering styles (``jpeg_quality``).
    """

    def __init__(self, output_dir: str, categories: list[dict], styles: dict):
        self.output_dir = output_dir
        self.categories = categories
        self.cat_by_id = {int(c["id"]): c for c in categories}
        self.jpeg_quality = int(styles["jpeg_quality"])

    def begin_split(self, split: str) -> None:
        self.split = f"{split}2017"
        self.images: list[dict] = []
        self.pan_annotations: list[dict] = []
        self.ins_annotations: list[dict] = []

    def _segment_id(self, rng: np.random.Generator, category_id: int, used: set[int]) -> int:
        # Like COCO's panopticapi IdGenerator: the category colour, jittered until unused,
        # so ids are non-contiguous and the PNG is viewable.
        base = np.asarray(self.cat_by_id[category_id]["color"], np.int64)
        color = base
        while True:
            seg_id = int(rgb2id(color))
            if seg_id not in used and seg_id != 0:
                used.add(seg_id)
                return seg_id
            color = np.clip(base + rng.integers(-30, 31, 3), 0, 255)

    def add(
        self,
        image_id: int,
        rng: np.random.Generator,
        scene: Scene,
        segment_map: np.ndarray,
        image: np.ndarray,
    ) -> None:
        """Writes one image and its panoptic PNG; collects its JSON entries.

        Args:
            image_id: COCO image id (file stem is the 12-digit zero-padded id).
            rng: random generator for segment ids.
            scene: the scene.
            segment_map: ``(H, W) int32`` segment indices (0 void).
            image: ``(H, W, 3) uint8`` RGB image.
        """
        stem = f"{image_id:012d}"
        h, w = segment_map.shape
        _save_image(
            os.path.join(self.output_dir, self.split, stem + ".jpg"),
            Image.fromarray(image),
            quality=self.jpeg_quality,
        )
        self.images.append({"id": image_id, "file_name": stem + ".jpg", "height": h, "width": w})
        pan = np.zeros((h, w), np.int64)
        used: set[int] = set()
        segments_info = []
        for index, mask in _segment_stats(segment_map):
            seg = scene.segments[index - 1]
            seg_id = self._segment_id(rng, seg.category_id, used)
            pan[mask] = seg_id
            info = {
                "id": seg_id,
                "category_id": seg.category_id,
                "iscrowd": seg.iscrowd,
                "area": int(mask.sum()),
                "bbox": mask_to_xywh(mask),
            }
            segments_info.append(info)
            if self.cat_by_id[seg.category_id]["isthing"]:
                self._add_instance(image_id, info, mask)
        _save_image(
            os.path.join(self.output_dir, "annotations", f"panoptic_{self.split}", stem + ".png"),
            Image.fromarray(id2rgb(pan)),
        )
        self.pan_annotations.append(
            {"image_id": image_id, "file_name": stem + ".png", "segments_info": segments_info}
        )

    def _add_instance(self, image_id: int, info: dict, mask: np.ndarray) -> None:
        if info["iscrowd"]:
            from pycocotools import mask as mask_util

            rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
            segmentation: Any = {"size": list(rle["size"]), "counts": rle["counts"].decode()}
        else:
            segmentation = mask_to_polygons(mask)
        self.ins_annotations.append(
            {
                "id": len(self.ins_annotations) + 1,
                "image_id": image_id,
                "category_id": info["category_id"],
                "segmentation": segmentation,
                "area": info["area"],
                "bbox": [float(v) for v in info["bbox"]],
                "iscrowd": info["iscrowd"],
            }
        )

    def end_split(self) -> None:
        """Writes ``panoptic_{split}2017.json`` and ``instances_{split}2017.json``."""
        info = {"description": "panoptic2 synthetic shapes dataset", "version": "1.0"}
        ann_dir = os.path.join(self.output_dir, "annotations")
        _save_json(
            os.path.join(ann_dir, f"panoptic_{self.split}.json"),
            {
                "info": info,
                "licenses": [],
                "images": self.images,
                "annotations": self.pan_annotations,
                "categories": self.categories,
            },
        )
        things = [
            {"id": c["id"], "name": c["name"], "supercategory": c["supercategory"]}
            for c in self.categories
            if c["isthing"]
        ]
        _save_json(
            os.path.join(ann_dir, f"instances_{self.split}.json"),
            {
                "info": info,
                "licenses": [],
                "images": self.images,
                "annotations": self.ins_annotations,
                "categories": things,
            },
        )


class CityscapesWriter:
    """Writes ``leftImg8bit/`` and ``gtFine/`` as the official Cityscapes tools make them.

    Annotations are written as ``*_gtFine_polygons.json``; the label images
    (``labelIds``, ``instanceIds``, ``color``, ``labelTrainIds``) are drawn from them by
    ``cityscapesscripts`` (``json2labelImg`` / ``json2instanceImg`` logic), and
    ``createPanopticImgs.convert2panoptic(useTrainId=True)`` then writes
    ``gtFine/cityscapes_panoptic_{split}_trainId.json`` and its PNG folder.

    Args:
        output_dir: root of the Cityscapes layout.
        categories: shapes categories.
        styles: rendering styles (``cityscapes`` label map and city names).
    """

    def __init__(self, output_dir: str, categories: list[dict], styles: dict):
        from cityscapesscripts.helpers.labels import name2label

        self.output_dir = output_dir
        self.cat_by_id = {int(c["id"]): c for c in categories}
        cfg = styles["cityscapes"]
        self.labels = {int(k): v for k, v in cfg["labels"].items()}
        self.void_label = cfg["void_label"]
        self.cities = {"train": cfg["train_cities"], "val": cfg["val_cities"]}
        for name in [*self.labels.values(), self.void_label]:
            if name not in name2label:
                raise ValueError(f"shapes_styles.json: {name!r} is not a Cityscapes label")
        self.splits: list[str] = []

    def begin_split(self, split: str) -> None:
        self.split = split
        self.splits.append(split)

    def add(
        self,
        index: int,
        rng: np.random.Generator,
        scene: Scene,
        segment_map: np.ndarray,
        image: np.ndarray,
    ) -> None:
        """Writes one ``leftImg8bit`` PNG, its polygons JSON and its label images.

        Args:
            index: image index within the split (cities alternate over it).
            rng: unused (the layout needs no randomness of its own).
            scene: the scene.
            segment_map: unused: cityscapesscripts rasterises the polygons itself.
            image: ``(H, W, 3) uint8`` RGB image.
        """
        from cityscapesscripts.helpers.annotation import Annotation
        from cityscapesscripts.preparation.json2instanceImg import createInstanceImage
        from cityscapesscripts.preparation.json2labelImg import createLabelImage

        cities = self.cities[self.split]
        city = cities[index % len(cities)]
        stem = f"{city}_{index // len(cities):06d}_000019"
        _save_image(
            os.path.join(
                self.output_dir, "leftImg8bit", self.split, city, stem + "_leftImg8bit.png"
            ),
            Image.fromarray(image),
        )
        objects = []
        for seg_index, poly in scene.draw_order:
            if seg_index == VOID:
                label = self.void_label
            else:
                seg = scene.segments[seg_index - 1]
                label = self.labels[seg.category_id] + ("group" if seg.iscrowd else "")
            objects.append({"label": label, "polygon": poly.tolist()})
        polygons = {"imgHeight": scene.height, "imgWidth": scene.width, "objects": objects}
        gt_dir = os.path.join(self.output_dir, "gtFine", self.split, city)
        json_path = os.path.join(gt_dir, stem + "_gtFine_polygons.json")
        _save_bytes(json_path, json.dumps(polygons, indent=4).encode("utf-8"))

        annotation = Annotation()
        annotation.fromJsonFile(json_path)
        _save_image(
            os.path.join(gt_dir, stem + "_gtFine_labelIds.png"),
            createLabelImage(annotation, "ids"),
        )
        _save_image(
            os.path.join(gt_dir, stem + "_gtFine_labelTrainIds.png"),
            createLabelImage(annotation, "trainIds"),
        )
        _save_image(
            os.path.join(gt_dir, stem + "_gtFine_color.png"),
            createLabelImage(annotation, "color"),
        )
        # Official instanceIds PNGs are 16-bit; recent Pillow cannot save mode "I" as PNG.
        instance_ids = np.asarray(createInstanceImage(annotation, "ids"), dtype=np.int64)
        _save_image(
            os.path.join(gt_dir, stem + "_gtFine_instanceIds.png"),
            Image.fromarray(instance_ids.astype(np.uint16)),
        )

    def end_split(self) -> None:
        """Runs cityscapesscripts' panoptic conversion (train ids) for the split."""
        from cityscapesscripts.preparation.createPanopticImgs import convert2panoptic

        gt_root = os.path.join(self.output_dir, "gtFine")
        # The official tool prints progress per file; keep generation quiet.
        with contextlib.redirect_stdout(io.StringIO()):
            convert2panoptic(
                cityscapesPath=gt_root,
                outputFolder=gt_root,
                useTrainId=True,
                setNames=[self.split],
            )


class VocWriter:
    """Writes ``VOCdevkit/VOC2012/{JPEGImages,SegmentationClass,ImageSets/Segmentation}``.

    Shapes things map to VOC classes, stuff to background 0; void pixels and a thin band
    along every object boundary get 255, as in the VOC annotations.

    Args:
        output_dir: the directory that receives ``VOCdevkit/``.
        categories: shapes categories.
        styles: rendering styles (``voc`` label map, boundary width, ``jpeg_quality``).
    """

    def __init__(self, output_dir: str, categories: list[dict], styles: dict):
        from .metadata import voc_colormap

        self.root = os.path.join(output_dir, "VOCdevkit", "VOC2012")
        cfg = styles["voc"]
        self.labels = {int(k): int(v) for k, v in cfg["labels"].items()}
        self.ignore = int(cfg["ignore_label"])
        self.boundary_width = int(cfg["boundary_width"])
        self.palette = [v for rgb in voc_colormap(256) for v in rgb]
        self.jpeg_quality = int(styles["jpeg_quality"])
        self.cat_by_id = {int(c["id"]): c for c in categories}
        self.names: dict[str, list[str]] = {}

    def begin_split(self, split: str) -> None:
        self.split = split
        self.names[split] = []

    def label_map(self, scene: Scene, segment_map: np.ndarray) -> np.ndarray:
        """VOC class map of a scene.

        Args:
            scene: the scene.
            segment_map: ``(H, W) int32`` segment indices (0 void).

        Returns:
            ``(H, W) uint8`` class indices 0..20, 255 on void and object boundaries.
        """
        lut = np.zeros(len(scene.segments) + 1, np.uint8)
        objects = np.zeros(len(scene.segments) + 1, np.int32)
        lut[VOID] = self.ignore
        for i, seg in enumerate(scene.segments, start=1):
            lut[i] = self.labels[seg.category_id]
            if self.cat_by_id[seg.category_id]["isthing"]:
                objects[i] = i
        label = lut[segment_map]
        # Object boundaries: pixels whose neighbourhood holds another object (or background).
        obj = objects[segment_map].astype(np.float32)
        k = np.ones((2 * self.boundary_width + 1,) * 2, np.uint8)
        boundary = cv2.dilate(obj, k) != cv2.erode(obj, k)
        label[boundary] = self.ignore
        return label

    def add(
        self,
        index: int,
        rng: np.random.Generator,
        scene: Scene,
        segment_map: np.ndarray,
        image: np.ndarray,
    ) -> None:
        """Writes one JPEG and its palette label PNG.

        Args:
            index: image index within the split.
            rng: unused.
            scene: the scene.
            segment_map: ``(H, W) int32`` segment indices (0 void).
            image: ``(H, W, 3) uint8`` RGB image.
        """
        # VOC names are "{year}_{number:06d}"; val numbers start at 500001 so splits differ.
        name = f"2012_{index + 1 + (0 if self.split == 'train' else 500000):06d}"
        self.names[self.split].append(name)
        _save_image(
            os.path.join(self.root, "JPEGImages", name + ".jpg"),
            Image.fromarray(image),
            quality=self.jpeg_quality,
        )
        label_map = self.label_map(scene, segment_map)
        h, w = label_map.shape
        label = Image.frombytes("P", (w, h), label_map.tobytes())
        label.putpalette(self.palette)
        _save_image(os.path.join(self.root, "SegmentationClass", name + ".png"), label)

    def end_split(self) -> None:
        """Writes ``ImageSets/Segmentation/{split}.txt`` (and ``trainval.txt`` once both exist)."""
        sets = os.path.join(self.root, "ImageSets", "Segmentation")
        _save_bytes(
            os.path.join(sets, f"{self.split}.txt"),
            "".join(n + "\n" for n in self.names[self.split]).encode(),
        )
        if "train" in self.names and "val" in self.names:
            names = self.names["train"] + self.names["val"]
            _save_bytes(
                os.path.join(sets, "trainval.txt"), "".join(n + "\n" for n in names).encode()
            )
