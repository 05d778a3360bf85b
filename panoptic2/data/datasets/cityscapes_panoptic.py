"""Cityscapes panoptic reader (``cityscapesscripts`` ``createPanopticImgs --use-train-id``).

Layout::

    leftImg8bit/{split}/{city}/{image_id}_leftImg8bit.png
    gtFine/cityscapes_panoptic_{split}_trainId.json
    gtFine/cityscapes_panoptic_{split}_trainId/{image_id}_gtFine_panoptic.png

The JSON is in COCO panoptic format with category ids equal to train ids; PNG segment ids
are ``labelId * 1000 + k`` for things and ``labelId`` for stuff and crowd regions.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from .coco_panoptic import (
    check_unique_entries,
    finish_panoptic_dicts,
    panoptic_record,
    panoptic_segment,
)
from .file_checks import dataset_label, read_json, require_dir, require_file, required

__all__ = ["load_cityscapes_panoptic"]

logger = logging.getLogger(__name__)


def load_cityscapes_panoptic(
    image_dir: str,
    gt_dir: str,
    gt_json: str,
    meta: Mapping[str, Any],
    *,
    dataset_name: str | None = None,
    validate: bool = False,
) -> list[dict]:
    """Reads Cityscapes panoptic annotations into standard dicts.

    Args:
        image_dir: ``leftImg8bit/{split}``.
        gt_dir: folder of the panoptic PNGs.
        gt_json: the panoptic JSON.
        meta: metadata with the id maps (``get_cityscapes_metadata()``: train ids).
        dataset_name: used in error messages.
        validate: decode every image and PNG and raise on any problem.

    Returns:
        Dicts sorted by image id with ``file_name``, ``image_id``, ``height``, ``width``,
        ``pan_seg_file_name`` and ``segments_info`` (contiguous = train-id ``category_id``,
        ``iscrowd``, ``area``, ``bbox``, ``isthing``).

    Raises:
        FileNotFoundError: a file or folder is missing (names it).
        ValueError: an unknown category id (names the image and segment).
    """
    where = dataset_label(dataset_name, gt_json)
    data = read_json(gt_json, "panoptic JSON", where)
    require_dir(image_dir, "image folder", where)
    require_dir(gt_dir, "panoptic PNG folder", where)
    thing_map = {int(k): v for k, v in meta["thing_dataset_id_to_contiguous_id"].items()}
    stuff_map = {int(k): v for k, v in meta["stuff_dataset_id_to_contiguous_id"].items()}
    image_list = data.get("images", [])
    check_unique_entries(image_list, data.get("annotations", []), gt_json, where)
    images = {img["id"]: img for img in image_list}
    dicts = []
    for ann in sorted(data.get("annotations", []), key=lambda a: a["image_id"]):
        image_id = ann["image_id"]
        if image_id not in images:
            raise ValueError(
                f"Annotation '{ann.get('file_name')}' of {where} refers to image "
                f"'{image_id}', which is not in the 'images' list of '{gt_json}'."
            )
        city = image_id.split("_")[0]
        image_file = os.path.join(image_dir, city, image_id + "_leftImg8bit.png")
        pan_file = os.path.join(gt_dir, ann["file_name"])
        require_file(image_file, f"image of '{image_id}'", where)
        require_file(pan_file, f"panoptic PNG of '{image_id}'", where)
        segments = []
        for seg in required(ann, "segments_info", f"annotation '{pan_file}' of {where}"):
            what = f"segment {seg.get('id')} of annotation '{pan_file}' in {where}"
            cat = int(required(seg, "category_id", what))
            if cat not in thing_map and cat not in stuff_map:
                raise ValueError(
                    f"Segment {seg['id']} of image '{image_file}' (annotation '{pan_file}') "
                    f"in {where} has unknown category id {cat}."
                )
            segments.append(
                panoptic_segment(
                    seg, thing_map.get(cat, stuff_map.get(cat)), cat in thing_map, what
                )
            )
        dicts.append(panoptic_record(image_file, image_id, images[image_id], pan_file, segments))
    finish_panoptic_dicts(dicts, meta, where, gt_json, validate)
    logger.info("Loaded %d Cityscapes panoptic images from %s", len(dicts), gt_json)
    return dicts
