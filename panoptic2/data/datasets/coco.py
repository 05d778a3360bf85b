"""COCO instance annotations (``instances_*.json``): the reader and one-call registration.

:func:`load_coco_json` reads through pycocotools and produces standard dicts with
``annotations``: ``bbox`` [x, y, w, h] with ``bbox_mode`` ``"XYWH_ABS"``, CONTIGUOUS
``category_id`` (the dataset's ``thing_dataset_id_to_contiguous_id``, i.e. the same ids as
the panoptic segments), ``segmentation`` as polygons (list of flat ``[x0, y0, x1, y1, ...]``)
or a COCO RLE dict with compressed counts (absent for box-only annotations), and
``iscrowd``. For a 0-based thing index (box heads), use
``metadata.thing_ids.index(category_id)``.

:func:`register_coco_instances` registers such a dataset under a name (Detectron2's call).
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

from ..catalog import DatasetCatalog, MetadataCatalog
from .file_checks import check_unique, dataset_label, read_json, require_file, required
from .metadata import INSTANCE_EVALUATORS, get_coco_instances_metadata

__all__ = ["load_coco_json", "register_coco_instances"]

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
    orphans = [a for a in coco.dataset.get("annotations", []) if a.get("image_id") not in coco.imgs]
    if orphans:
        raise ValueError(
            f"Annotation {orphans[0].get('id')!r} of '{json_file}' ({where}) refers to image id "
            f"{orphans[0].get('image_id')!r}, which is not in its 'images' list "
            f"({len(orphans)} such annotation(s))."
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
            cat = int(required(ann, "category_id", what))
            if cat not in id_map:
                raise ValueError(
                    f"The {what} has unknown category id {cat} ('{json_file}'; the dataset's "
                    f"categories are {sorted(id_map)})."
                )
            seg = ann.get("segmentation")
            if isinstance(seg, list) and not seg:
                seg = None  # box-only annotation, as written by many box-labelling tools
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
                "bbox": [float(v) for v in required(ann, "bbox", what)],
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


# Metadata fields of an instance dataset's label space (see get_coco_instances_metadata),
# computed from the JSON's categories when the caller does not give them.
_LABEL_SPACE_FIELDS = (
    "classes",
    "colors",
    "thing_classes",
    "thing_colors",
    "stuff_classes",
    "stuff_colors",
    "thing_dataset_id_to_contiguous_id",
    "stuff_dataset_id_to_contiguous_id",
    "thing_ids",
    "label_divisor",
    "ignore_label",
    "num_classes",
)


def _metadata_from_categories(
    json_file: str, where: str, given: Mapping[str, Any]
) -> dict[str, Any]:
    """The label-space metadata of an instances JSON, from its ``categories`` list."""
    data = read_json(json_file, "instances JSON", where)
    categories = data.get("categories") if isinstance(data, dict) else None
    if not categories or not isinstance(categories, list):
        raise ValueError(
            f"The instances JSON '{json_file}' of {where} has no 'categories' list: give the "
            "classes in the metadata (thing_classes + thing_dataset_id_to_contiguous_id)."
        )
    what = f"the 'categories' list of '{json_file}' ({where})"
    for c in categories:
        required(c, "id", f"category {c!r} in {what}")
        required(c, "name", f"category {c!r} in {what}")
    check_unique(categories, lambda c: int(c["id"]), "Category id", what, lambda c: c["name"])
    ordered = sorted(categories, key=lambda c: int(c["id"]))
    names = [c["name"] for c in ordered]
    if "thing_classes" in given and list(given["thing_classes"]) != names:
        raise ValueError(
            f"The metadata of {where} gives thing_classes {list(given['thing_classes'])}, but "
            f"{what} names {names} (in category id order)."
        )
    colors = given.get("thing_colors")
    if colors is not None:
        if len(colors) != len(ordered):
            raise ValueError(
                f"The metadata of {where} gives {len(colors)} thing_colors for the "
                f"{len(ordered)} categories of '{json_file}'."
            )
        ordered = [{**c, "color": list(color)} for c, color in zip(ordered, colors)]
    try:
        return get_coco_instances_metadata(ordered)
    except ValueError as e:
        raise ValueError(f"The categories of '{json_file}' ({where}) are invalid: {e}") from e


def register_coco_instances(
    name: str, metadata: Mapping[str, Any], json_file: str, image_root: str
) -> None:
    """Registers a dataset in COCO instances format (Detectron2's call and arguments).

    Nothing is read at registration: the JSON is read each time ``DatasetCatalog.get(name)``
    runs (see :func:`load_coco_json`), with the metadata as it is then. The classes come from
    ``metadata`` when it gives ``thing_dataset_id_to_contiguous_id`` (with ``thing_classes``
    and optionally ``thing_colors``); otherwise from the JSON's ``categories``, read the
    first time a class field is needed (:meth:`Metadata.set_lazy`), sorted by id to
    contiguous ids ``1..K`` with ``0`` as void (see
    :func:`~.metadata.get_coco_instances_metadata`); ``thing_classes`` / ``thing_colors``
    given alone must then match those categories.

    Annotations may have masks (polygons or RLE) or boxes only; both train
    ``GeneralizedRCNN`` through the ``DetectionMapper`` (boxes only: ``MODEL.MASK_ON
    False``). The dataset is evaluated by ``COCOEvaluator`` (box AP, and mask AP when the
    model predicts masks) against ``json_file``.

    Args:
        name: dataset name, e.g. ``"my_dataset_train"``.
        metadata: extra metadata fields (``{}`` is fine); they win over computed ones.
        json_file: the COCO instances JSON.
        image_root: folder of the images named by the JSON's ``file_name``.

    Raises:
        ValueError: ``name`` is already registered. Errors of the files (missing JSON or
            image, duplicate ids, unknown categories) are raised when they are read and
            name the dataset and the file.
    """
    fields: dict[str, Any] = {"evaluators": list(INSTANCE_EVALUATORS)}
    fields.update(metadata)
    fields.update(json_file=json_file, image_root=image_root)
    DatasetCatalog.register(
        name,
        lambda: load_coco_json(
            json_file, image_root, MetadataCatalog.get(name).as_dict(), dataset_name=name
        ),
    )
    meta = MetadataCatalog.get(name).set(**fields)
    if "thing_dataset_id_to_contiguous_id" not in fields:
        where = dataset_label(name, json_file)
        meta.set_lazy(
            _LABEL_SPACE_FIELDS, lambda: _metadata_from_categories(json_file, where, fields)
        )
