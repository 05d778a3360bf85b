"""COCO instance annotations (``instances_*.json``) read through pycocotools.

Produces standard dicts with ``annotations``: ``bbox`` [x, y, w, h] with ``bbox_mode``
``"XYWH_ABS"``, CONTIGUOUS ``category_id`` (the dataset's
``thing_dataset_id_to_contiguous_id``, i.e. the same ids as the panoptic segments),
``segmentation`` as polygons (list of flat ``[x0, y0, x1, y1, ...]``) or a COCO RLE dict
with compressed counts, and ``iscrowd``. For a 0-based thing index (box heads), use
``metadata.thing_ids.index(category_id)``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from collections.abc import Mapping
from typing import Any

from pycocotools import mask as mask_util
from pycocotools.coco import COCO

from .file_checks import check_unique, dataset_label, require_file

__all__ = ["load_coco_json"]

logger = logging.getLogger(__name__)


def _convert_segmentation(seg: Any, height: int, width: int) -> Any:
    """Uncompressed RLE (counts as a list) -> compressed RLE; polygons unchanged."""
    if isinstance(seg, dict) and isinstance(seg.get("counts"), list):
        rle = mask_util.frPyObjects(seg, height, width)
        rle["counts"] = rle["counts"].decode("ascii")
        return rle
    return seg


def load_coco_json(
    json_file: str,
    image_root: str,
    meta: Mapping[str, Any],
    *,
    dataset_name: str | None = None,
    drop_invalid_polygons: bool = True,
) -> list[dict]:
    """Loads a COCO instances JSON into standard dicts with ``annotations``.

    Args:
        json_file: e.g. ``annotations/instances_val2017.json``.
        image_root: folder of the images named by the JSON's ``file_name``.
        meta: metadata with ``thing_dataset_id_to_contiguous_id``.
        dataset_name: used in error messages.
        drop_invalid_polygons: polygons with fewer than 3 points (a few exist in real
            COCO) are dropped (with their annotation when no polygon is left) and counted
            in a warning; with False they raise.

    Returns:
        One dict per image, sorted by image id: ``file_name``, ``image_id``, ``height``,
        ``width``, ``annotations``. Images without annotations are kept.

    Raises:
        FileNotFoundError: the JSON or an image is missing (names it).
        ValueError: an unknown category id or a malformed annotation (names the image and
            annotation id).
    """
    where = dataset_label(dataset_name, json_file)
    require_file(json_file, "instances JSON", where)
    # pycocotools prints progress to stdout; keep it in the log instead.
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            coco = COCO(json_file)
        except ValueError as e:
            raise ValueError(f"The instances JSON '{json_file}' of {where} is invalid: {e}") from e
    # pycocotools indexes images and annotations by id: a repeated id would silently keep
    # the last entry only.
    in_images = f"the 'images' list of '{json_file}' ({where})"
    images = coco.dataset.get("images", [])
    check_unique(images, lambda i: i["id"], "Image id", in_images, lambda i: i.get("file_name"))
    check_unique(images, lambda i: i["file_name"], "Image file name", in_images, lambda i: i["id"])
    check_unique(
        coco.dataset.get("annotations", []),
        lambda a: a["id"],
        "Annotation id",
        f"the 'annotations' list of '{json_file}' ({where})",
        lambda a: f"image id {a.get('image_id')!r}, category {a.get('category_id')}",
    )
    id_map = {int(k): v for k, v in meta["thing_dataset_id_to_contiguous_id"].items()}
    dropped = 0
    dicts = []
    for image_id in sorted(coco.imgs):
        info = coco.imgs[image_id]
        file_name = os.path.join(image_root, info["file_name"])
        require_file(file_name, f"image of image id {image_id!r}", where)
        height, width = int(info["height"]), int(info["width"])
        annotations = []
        for ann in coco.imgToAnns.get(image_id, []):
            what = f"annotation {ann.get('id')} of image '{info['file_name']}' in {where}"
            cat = int(ann["category_id"])
            if cat not in id_map:
                raise ValueError(f"The {what} has unknown category id {cat}.")
            seg = ann.get("segmentation")
            if isinstance(seg, list):
                valid = [p for p in seg if len(p) % 2 == 0 and len(p) >= 6]
                if len(valid) != len(seg):
                    if not drop_invalid_polygons:
                        raise ValueError(f"The {what} has a polygon with fewer than 3 points.")
                    dropped += len(seg) - len(valid)
                    if not valid:
                        continue  # nothing left of the mask: the annotation goes too
                seg = valid
            elif seg is not None:
                seg = _convert_segmentation(seg, height, width)
            obj = {
                "id": ann.get("id"),
                "bbox": [float(v) for v in ann["bbox"]],
                "bbox_mode": "XYWH_ABS",
                "category_id": id_map[cat],
                "iscrowd": int(ann.get("iscrowd", 0)),
            }
            if seg is not None:
                obj["segmentation"] = seg
            if "area" in ann:
                obj["area"] = float(ann["area"])
            annotations.append(obj)
        dicts.append(
            {
                "file_name": file_name,
                "image_id": image_id,
                "height": height,
                "width": width,
                "annotations": annotations,
            }
        )
    if dropped:
        logger.warning(
            "%s: dropped %d polygon(s) with fewer than 3 points (drop_invalid_polygons=True).",
            where,
            dropped,
        )
    logger.info("Loaded %d images with instances from %s", len(dicts), json_file)
    return dicts
