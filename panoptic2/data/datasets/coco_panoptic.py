"""COCO panoptic format: reader, one-call registration, and the Panoptic FPN "separated" form.

The COCO panoptic format is a JSON file (``images``, ``annotations`` with ``file_name`` and
``segments_info``, ``categories``) plus a folder of RGB PNGs whose pixel ids are
``R + 256 * G + 256**2 * B`` (0 = void). The reader turns every annotation into a standard
dataset dict with CONTIGUOUS category ids (see :func:`~.metadata.get_coco_panoptic_metadata`).

The "separated" form used by Panoptic FPN adds instance annotations from
``instances_*.json`` (see :mod:`.coco`) and stuff-only semantic PNGs made by
:func:`separate_coco_semantic_from_panoptic` (``datasets/prepare_panoptic_fpn.py``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any, NotRequired, TypedDict

import numpy as np
from PIL import Image

from panoptic2.data.panoptic_label import label_from_segments, read_panoptic_png
from panoptic2.utils.file_io import atomic_write

from ..catalog import DatasetCatalog, MetadataCatalog
from ..label_space import PANOPTIC_FPN_IGNORE, LabelSpace
from .coco import load_coco_json
from .file_checks import (
    SCHEMA_CHECKS,
    check_unique,
    dataset_label,
    gc_paused,
    read_json,
    require_dir,
    require_file,
    required,
    unlisted_files,
)
from .validation import validate_dicts

__all__ = [
    "check_unique_entries",
    "get_panoptic_fpn_stuff_metadata",
    "load_coco_panoptic_json",
    "register_coco_panoptic",
    "register_coco_panoptic_separated",
    "separate_coco_semantic_from_panoptic",
]

logger = logging.getLogger(__name__)


def panoptic_segment(
    seg: Mapping[str, Any], category_id: int, isthing: bool, what: str = "a segment"
) -> dict[str, Any]:
    """One ``segments_info`` entry of a standard dict from a segment of a COCO-format
    panoptic JSON, with its category already mapped to the contiguous id; ``what`` names
    the segment in the error for a missing field."""
    return {
        "id": int(required(seg, "id", what)),
        "category_id": category_id,
        "iscrowd": int(seg.get("iscrowd", 0)),
        "area": int(required(seg, "area", what)),
        "bbox": [float(v) for v in required(seg, "bbox", what)],
        "isthing": isthing,
    }


def panoptic_record(
    image_file: str, image_id: Any, info: Mapping[str, Any], pan_file: str, segments: list
) -> dict[str, Any]:
    """The standard dict of one image of a COCO-format panoptic dataset."""
    return {
        "file_name": image_file,
        "image_id": image_id,
        "height": int(info["height"]),
        "width": int(info["width"]),
        "pan_seg_file_name": pan_file,
        "segments_info": segments,
    }


def finish_panoptic_dicts(
    dicts: list[dict], meta: Mapping[str, Any], where: str, json_file: str, validate: bool
) -> list[dict]:
    """Rejects an empty result and runs the optional full validation."""
    if not dicts:
        raise ValueError(f"The panoptic JSON '{json_file}' of {where} has no annotations.")
    if validate:
        validate_dicts(dicts, meta, where)
    return dicts


def check_unique_entries(
    images: list[dict], annotations: list[dict], json_file: str, where: str
) -> None:
    """Image ids, image file names, annotated image ids and annotation PNG names of a
    COCO-format panoptic JSON must each be unique (the shared check of both readers)."""
    in_images = f"the 'images' list of '{json_file}' ({where})"
    in_annotations = f"the 'annotations' list of '{json_file}' ({where})"
    check_unique(images, lambda i: i["id"], "Image id", in_images, lambda i: i.get("file_name"))
    named = [i for i in images if i.get("file_name")]
    check_unique(named, lambda i: i["file_name"], "Image file name", in_images, lambda i: i["id"])
    check_unique(
        annotations,
        lambda a: a["image_id"],
        "Annotated image id",
        in_annotations,
        lambda a: a.get("file_name"),
    )
    check_unique(
        annotations,
        lambda a: a["file_name"],
        "Annotation PNG",
        in_annotations,
        lambda a: f"image id {a['image_id']!r}",
    )


if SCHEMA_CHECKS:
    import msgspec

    class _Segment(msgspec.Struct, gc=False):
        """A segment as msgspec parses it: a compact struct, not a dict. Each becomes its
        6-key ``segments_info`` dict once its category is mapped; parsed as a 5-key dict
        that then grows by ``isthing``, every segment would leave its first key table
        behind (~200 MB of freed blocks for COCO train's 1.3M segments, at the peak)."""

        id: int
        category_id: int
        area: int | float
        bbox: list[int | float]
        iscrowd: int = 0

else:

    class _Segment(TypedDict):
        id: int
        category_id: int
        area: int | float
        bbox: list[int | float]
        iscrowd: NotRequired[int]


class _Image(TypedDict):
    id: Any
    height: int
    width: int
    file_name: NotRequired[str]


class _Annotation(TypedDict):
    image_id: Any
    file_name: str
    segments_info: list[_Segment]


class _PanopticJSON(TypedDict):
    """What the readers use of a COCO panoptic JSON; msgspec checks it while parsing, and
    drops the other fields (``info``, ``licenses``, an image's ``coco_url`` ...)."""

    images: NotRequired[list[_Image]]
    annotations: NotRequired[list[_Annotation]]


_SEGMENT_FIELDS = frozenset({"id", "category_id", "area", "bbox"})


def load_coco_panoptic_json(
    json_file: str,
    image_dir: str,
    gt_dir: str,
    meta: Mapping[str, Any],
    *,
    dataset_name: str | None = None,
    validate: bool = False,
) -> list[dict]:
    """Reads a COCO panoptic JSON into standard dataset dicts.

    Cheap checks only (unique image ids, file names and annotations, every file exists,
    every category id is known, every segment has its fields); pass ``validate=True`` for
    the pixel-level checks of :func:`~.validation.check_record`.

    Sized for COCO train (118k images, 1.3M segments): msgspec parses and checks the JSON
    in one pass with the garbage collector paused (:func:`~.file_checks.read_json`), file
    existence comes from one scan of each folder instead of a ``stat`` per file, and
    segments are parsed as compact structs that each become one dict (no dict grows a key
    table twice): several times faster than Detectron2's loader, with less memory
    (``dev/bench/coco_startup.py``).

    Args:
        json_file: the panoptic JSON, e.g. ``annotations/panoptic_val2017.json``.
        image_dir: folder of the images, e.g. ``val2017``.
        gt_dir: folder of the panoptic PNGs, e.g. ``annotations/panoptic_val2017``.
        meta: metadata with ``thing_dataset_id_to_contiguous_id`` and
            ``stuff_dataset_id_to_contiguous_id`` (see ``get_coco_panoptic_metadata``).
        dataset_name: used in error messages.
        validate: decode every image and PNG and raise on any problem.

    Returns:
        One dict per annotation, in JSON order: ``file_name``, ``image_id``, ``height``,
        ``width``, ``pan_seg_file_name`` and ``segments_info`` (``id``, contiguous
        ``category_id``, ``iscrowd`` (0 when absent), ``area``, ``bbox`` [x, y, w, h] as in
        the JSON, and ``isthing``).

    Raises:
        FileNotFoundError: the JSON, a folder, an image or a PNG is missing (names it).
        ValueError: an annotation has no image record, a segment an unknown category or
            lacks a field (names the image and segment), or ``validate`` found a problem.
    """
    where = dataset_label(dataset_name, json_file)
    data = read_json(json_file, "panoptic JSON", where, schema=_PanopticJSON)
    require_dir(image_dir, "image folder", where)
    require_dir(gt_dir, "panoptic PNG folder", where)
    categories = {int(k): (v, True) for k, v in meta["thing_dataset_id_to_contiguous_id"].items()}
    categories.update(
        (int(k), (v, False)) for k, v in meta["stuff_dataset_id_to_contiguous_id"].items()
    )
    image_list = data.get("images", [])
    annotations = data.get("annotations", [])
    del data  # only the images and annotations are kept
    with gc_paused():
        check_unique_entries(image_list, annotations, json_file, where)
        images = {img["id"]: img for img in image_list}
        dicts = _panoptic_dicts(
            annotations, images, categories, image_dir, gt_dir, json_file, where
        )
    finish_panoptic_dicts(dicts, meta, where, json_file, validate)
    logger.info("Loaded %d images in COCO panoptic format from %s", len(dicts), json_file)
    return dicts


def _panoptic_dicts(
    annotations: list[dict],
    images: Mapping[Any, Mapping[str, Any]],
    categories: Mapping[int, tuple[int, bool]],
    image_dir: str,
    gt_dir: str,
    json_file: str,
    where: str,
) -> list[dict]:
    """The standard dicts of :func:`load_coco_panoptic_json`, from its parsed JSON."""
    check_fields = not SCHEMA_CHECKS  # else msgspec checked them while parsing
    dicts, image_names = [], []
    for ann in annotations:
        image_id = ann["image_id"]
        info = images.get(image_id)
        if info is None:
            raise ValueError(
                f"Annotation '{ann.get('file_name')}' of {where} refers to image id "
                f"{image_id!r}, which is not in the 'images' list of '{json_file}'."
            )
        # The image record names the image (jpg in COCO, png elsewhere); fall back to the
        # annotation's stem + .jpg as the COCO panoptic API does.
        image_name = info.get("file_name") or os.path.splitext(ann["file_name"])[0] + ".jpg"
        image_names.append(image_name)
        image_file = os.path.join(image_dir, image_name)
        pan_file = os.path.join(gt_dir, ann["file_name"])
        segments = required(ann, "segments_info", f"annotation '{pan_file}' of {where}")
        for index, seg in enumerate(segments):
            if isinstance(seg, dict):  # parsed without msgspec: completed in place
                mapped = categories.get(seg.get("category_id"))
                if mapped is None or (check_fields and not seg.keys() >= _SEGMENT_FIELDS):
                    _segment_error(seg, image_name, pan_file, where)
                seg["category_id"], seg["isthing"] = mapped
                if "iscrowd" not in seg:
                    seg["iscrowd"] = 0
                continue
            mapped = categories.get(seg.category_id)
            if mapped is None:
                _segment_error(msgspec.structs.asdict(seg), image_name, pan_file, where)
            segments[index] = {
                "id": seg.id,
                "category_id": mapped[0],
                "iscrowd": seg.iscrowd,
                "area": seg.area,
                "bbox": seg.bbox,
                "isthing": mapped[1],
            }
        dicts.append(panoptic_record(image_file, image_id, info, pan_file, segments))
    png_names = [ann["file_name"] for ann in annotations]
    checks = ((image_dir, image_names, "image"), (gt_dir, png_names, "panoptic PNG"))
    for folder, names, what in checks:
        missing = unlisted_files(folder, names)
        # The first one in JSON order is named; names with a folder part are stat'ed here.
        for name, record in zip(names, dicts):
            if name in missing:
                path = os.path.join(folder, name)
                require_file(path, f"{what} of image id {record['image_id']!r}", where)
    return dicts


def _segment_error(
    seg: Mapping[str, Any],
    image_name: str,
    pan_file: str,
    where: str,
) -> None:
    """Raises the error of a segment that lacks a field or has an unknown category."""
    what = f"segment {seg.get('id')} of annotation '{pan_file}' in {where}"
    for key in sorted(_SEGMENT_FIELDS):
        required(seg, key, what)
    raise ValueError(
        f"Segment {seg['id']} of image '{image_name}' (annotation '{pan_file}') in {where} has "
        f"category id {seg['category_id']}, which is not among the dataset's categories."
    )


def register_coco_panoptic(
    name: str,
    metadata: Mapping[str, Any],
    image_root: str,
    panoptic_root: str,
    panoptic_json: str,
    instances_json: str | None = None,
) -> None:
    """Registers a dataset in COCO panoptic format in one call.

    Nothing is read now; the files are read each time ``DatasetCatalog.get(name)`` runs,
    with the metadata as it is then (so later ``MetadataCatalog.get(name).set(...)`` apply).

    Args:
        name: dataset name, e.g. ``"my_panoptic_train"``.
        metadata: metadata fields, at least the two id maps; typically
            ``get_coco_panoptic_metadata(categories)`` plus anything extra.
        image_root: folder of the images.
        panoptic_root: folder of the panoptic PNGs.
        panoptic_json: the panoptic JSON.
        instances_json: optional COCO instances JSON, recorded as ``json_file`` in the
            metadata (for box/mask AP evaluation).
    """
    DatasetCatalog.register(
        name,
        lambda: load_coco_panoptic_json(
            panoptic_json,
            image_root,
            panoptic_root,
            MetadataCatalog.get(name).as_dict(),
            dataset_name=name,
        ),
    )
    fields: dict[str, Any] = {"evaluators": ["COCOPanopticEvaluator", "SemSegEvaluator"]}
    fields.update(metadata)
    fields.update(image_root=image_root, panoptic_root=panoptic_root, panoptic_json=panoptic_json)
    if instances_json is not None:
        fields["json_file"] = instances_json
    MetadataCatalog.get(name).set(**fields)


def get_panoptic_fpn_stuff_metadata(categories: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Label space of the stuff-only PNGs of the separated form.

    Label 0 is the merged "things" class, stuff categories get ``1..S`` in contiguous-id
    order and void is 255 (Detectron2's choice, so its Panoptic FPN recipes carry over):
    :meth:`~panoptic2.data.label_space.LabelSpace.panoptic_fpn_lut` of the categories'
    label space, which the mapper and the model use too.

    Args:
        categories: COCO panoptic categories (``id``, ``name``, ``isthing``).

    Returns:
        ``sem_seg_classes``, ``sem_seg_dataset_id_to_contiguous_id`` (things map to 0),
        ``sem_seg_num_classes`` (S + 1) and ``sem_seg_ignore_label`` (255).
    """
    space = LabelSpace.from_categories(categories)
    lut = space.panoptic_fpn_lut()
    return {
        "sem_seg_classes": list(space.panoptic_fpn_classes),
        "sem_seg_dataset_id_to_contiguous_id": {
            d: int(lut[c]) for d, c in space.dataset_id_to_contiguous_id.items()
        },
        "sem_seg_num_classes": len(space.stuff_ids) + 1,
        "sem_seg_ignore_label": PANOPTIC_FPN_IGNORE,
    }


def separate_coco_semantic_from_panoptic(
    panoptic_json: str, panoptic_root: str, sem_seg_root: str, categories: Sequence[Mapping]
) -> int:
    """Writes the stuff-only semantic PNGs of Panoptic FPN's separated COCO form.

    Each output ``{sem_seg_root}/{stem}.png`` (stem of the panoptic PNG) is a single-channel
    uint8 map: every thing pixel (crowd or not) is 0, stuff pixels are ``1..S`` (see
    :func:`get_panoptic_fpn_stuff_metadata`), void is 255. Files are written atomically;
    existing outputs are kept, so an interrupted run resumes.

    Args:
        panoptic_json: the panoptic JSON.
        panoptic_root: folder of its PNGs.
        sem_seg_root: output folder (created).
        categories: the categories of the JSON's label space.

    Returns:
        The number of PNGs written (0 when all existed).

    Raises:
        ValueError: the PNG and its ``segments_info`` disagree, or a category is unknown
            (see :func:`~panoptic2.data.panoptic_label.label_from_segments`).
    """
    where = dataset_label(None, panoptic_json)
    data = read_json(panoptic_json, "panoptic JSON", where)
    space = LabelSpace.from_categories(categories)
    stuff_lut = space.panoptic_fpn_lut().astype(np.uint8)
    os.makedirs(sem_seg_root, exist_ok=True)
    written = 0
    for ann in data["annotations"]:
        out = os.path.join(sem_seg_root, os.path.splitext(ann["file_name"])[0] + ".png")
        if os.path.isfile(out):
            continue
        pan_file = os.path.join(panoptic_root, ann["file_name"])
        require_file(pan_file, "panoptic PNG", where)
        label = label_from_segments(
            read_panoptic_png(pan_file),
            ann["segments_info"],
            label_divisor=space.label_divisor,
            ignore_label=space.ignore_label,
            thing_ids=space.thing_ids,
            category_map=space.dataset_id_to_contiguous_id,
            name=pan_file,
        )
        sem = stuff_lut[label // space.label_divisor]
        atomic_write(out, lambda f, sem=sem: Image.fromarray(sem).save(f, format="PNG"))
        written += 1
    logger.info("Wrote %d stuff-only PNGs to %s", written, sem_seg_root)
    return written


def _load_separated(
    name: str,
    image_root: str,
    panoptic_root: str,
    panoptic_json: str,
    sem_seg_root: str,
    instances_json: str,
) -> list[dict]:
    meta = MetadataCatalog.get(name).as_dict()
    where = dataset_label(name, panoptic_json)
    dicts = load_coco_panoptic_json(
        panoptic_json, image_root, panoptic_root, meta, dataset_name=name
    )
    instances = {
        d["image_id"]: d
        for d in load_coco_json(instances_json, image_root, meta, dataset_name=name)
    }
    require_dir(sem_seg_root, "stuff semantic PNG folder", where)
    for d in dicts:
        if d["image_id"] not in instances:
            raise ValueError(
                f"Image id {d['image_id']!r} of the panoptic JSON '{panoptic_json}' is missing "
                f"from the instances JSON '{instances_json}' of {where}."
            )
        d["annotations"] = instances[d["image_id"]]["annotations"]
        stem = os.path.splitext(os.path.basename(d["pan_seg_file_name"]))[0]
        d["sem_seg_file_name"] = os.path.join(sem_seg_root, stem + ".png")
        require_file(d["sem_seg_file_name"], "stuff semantic PNG", where)
    return dicts


def register_coco_panoptic_separated(
    name: str,
    metadata: Mapping[str, Any],
    image_root: str,
    panoptic_root: str,
    panoptic_json: str,
    sem_seg_root: str,
    instances_json: str,
) -> None:
    """Registers COCO panoptic in Panoptic FPN's "separated" form.

    Each dict has the panoptic fields of :func:`load_coco_panoptic_json` (for panoptic
    evaluation) plus ``annotations`` from ``instances_json`` (contiguous category ids,
    ``bbox_mode`` ``"XYWH_ABS"``, polygons or RLE) and ``sem_seg_file_name`` of the
    stuff-only PNG in ``sem_seg_root``, whose label space is described by the metadata
    fields of :func:`get_panoptic_fpn_stuff_metadata` (``sem_seg_*``).

    Args:
        name: dataset name.
        metadata: panoptic metadata (id maps); ``sem_seg_*`` fields should be included.
        image_root: folder of the images.
        panoptic_root: folder of the panoptic PNGs.
        panoptic_json: the panoptic JSON.
        sem_seg_root: folder of the stuff-only PNGs.
        instances_json: the COCO instances JSON.
    """
    DatasetCatalog.register(
        name,
        lambda: _load_separated(
            name, image_root, panoptic_root, panoptic_json, sem_seg_root, instances_json
        ),
    )
    fields: dict[str, Any] = {"evaluators": ["COCOPanopticEvaluator", "SemSegEvaluator"]}
    fields.update(metadata)
    fields.update(
        image_root=image_root,
        panoptic_root=panoptic_root,
        panoptic_json=panoptic_json,
        sem_seg_root=sem_seg_root,
        json_file=instances_json,
    )
    MetadataCatalog.get(name).set(**fields)
