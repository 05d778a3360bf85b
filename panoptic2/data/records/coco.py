"""COCO panoptic -> DeepLab2 record shards (the logic of ``tools/build_coco_data.py``).

Reads the official layout::

    {coco_root}/{train,val,test}2017/*.jpg
    {coco_root}/annotations/panoptic_{train,val}2017.json
    {coco_root}/annotations/panoptic_{train,val}2017/*.png

and writes ``{split}-{i:05d}-of-{n:05d}.tfrecord`` shards with ``image/format`` ``jpeg`` and,
except for ``test``, the panoptic label ``contiguous_id * 256 + instance`` (ignore 0).
Contiguous ids come from the JSON's categories: things sorted by id, then stuff sorted by id,
numbered from 1 (DeepLab2's mapping for the 133 COCO categories).

Each split also gets ``{split}.manifest.json`` (:mod:`panoptic2.data.records.manifest`):
converter ``coco_panoptic`` and :data:`COCO_CONVERTER_VERSION`, ``num_shards``, the settings
``label_format`` and ``treat_crowd_as_ignore`` (none for ``test``), and the size and mtime of
every image, panoptic PNG and the JSON. A rerun reuses complete shards only when the manifest
matches; otherwise it refuses and names the change, unless ``overwrite`` (see
:mod:`panoptic2.data.records.writer`). An annotation whose image file is missing is an
error, or with ``skip_missing`` a warning, and the skipped images are listed in the manifest.
"""

from __future__ import annotations

import functools
import glob
import json
import logging
import os
from collections.abc import Sequence
from typing import Any, NamedTuple

from panoptic2.data.label_space import LabelSpace

from .example import encode_example
from .index import index_entry
from .manifest import input_stats, relative_path, resolve_missing_images, skipped_summary
from .segmentation import (
    create_segmentation_features,
    encode_panoptic_label,
    panoptic_label_of,
)
from .writer import write_sharded_records

__all__ = [
    "COCO_CONVERTER_VERSION",
    "COCO_SPLITS",
    "CocoSplit",
    "convert_coco_dataset",
    "list_coco_items",
]

logger = logging.getLogger(__name__)

COCO_SPLITS = ("train", "val", "test")
COCO_LABEL_DIVISOR = 256
# Bump when the same inputs and flags give other records: older shards then refuse to resume.
COCO_CONVERTER_VERSION = 1


class _CocoItem(NamedTuple):
    """One image to convert; carries everything a worker needs (it is pickled)."""

    image_path: str
    stem: str
    label_path: str | None
    segments: list[dict] | None


class CocoSplit(NamedTuple):
    """What :func:`list_coco_items` finds for one split."""

    items: list[_CocoItem]  # in record order
    label_space: LabelSpace | None  # None for test
    json_path: str | None  # the panoptic JSON; None for test
    missing: list[str]  # annotated images skipped because their file is missing


def _read_json(path: str, dataset: str) -> dict:
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"{dataset}: annotation file {path} does not exist.") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{dataset}: annotation file {path} is not valid JSON: {e}") from e


def list_coco_items(coco_root: str, split: str, skip_missing: bool = False) -> CocoSplit:
    """Lists the images of a split (sorted) with their panoptic annotations.

    Args:
        coco_root: the COCO root folder.
        split: ``train``, ``val`` or ``test`` (images only).
        skip_missing: leave out annotated images whose file is missing, with a warning,
            instead of failing.

    Returns:
        The items in record order, the label space, the JSON and the skipped images.

    Raises:
        FileNotFoundError: the JSON is missing, or an annotated image (unless
            ``skip_missing``).
        ValueError: duplicated image ids, or an image without an annotation.
    """
    dataset = f"COCO panoptic {split} ({coco_root})"
    image_dir = os.path.join(coco_root, f"{split}2017")
    images = sorted(glob.glob(os.path.join(glob.escape(image_dir), "*.jpg")))
    if split == "test":
        items = [_CocoItem(p, os.path.splitext(os.path.basename(p))[0], None, None) for p in images]
        return CocoSplit(items, None, None, [])
    json_path = os.path.join(coco_root, "annotations", f"panoptic_{split}2017.json")
    data = _read_json(json_path, dataset)
    label_space = LabelSpace.from_categories(data["categories"], label_divisor=COCO_LABEL_DIVISOR)
    label_dir = os.path.join(coco_root, "annotations", f"panoptic_{split}2017")
    annotations: dict[str, tuple[str, list[dict]]] = {}
    seen_ids: set[Any] = set()
    for ann in data["annotations"]:
        if ann["image_id"] in seen_ids:
            raise ValueError(f"{dataset}: image id {ann['image_id']} appears twice in {json_path}.")
        seen_ids.add(ann["image_id"])
        stem = os.path.splitext(ann["file_name"])[0]
        annotations[stem] = (os.path.join(label_dir, ann["file_name"]), ann["segments_info"])
    items = []
    for path in images:
        stem = os.path.splitext(os.path.basename(path))[0]
        if stem not in annotations:
            raise ValueError(f"{dataset}: image {path} has no annotation in {json_path}.")
        label_path, segments = annotations[stem]
        items.append(_CocoItem(path, stem, label_path, segments))
    found = {item.stem for item in items}
    missing = resolve_missing_images(
        dataset,
        [
            (os.path.join(image_dir, stem + ".jpg"), f"annotation {stem}.png in {json_path}")
            for stem in sorted(annotations)
            if stem not in found
        ],
        len(annotations),
        skip_missing,
    )
    return CocoSplit(items, label_space, json_path, missing)


def _coco_example(
    item: _CocoItem,
    label_space: LabelSpace | None,
    treat_crowd_as_ignore: bool,
    label_format: str,
) -> bytes:
    """Builds the serialized example of one image (runs in worker processes)."""
    try:
        with open(item.image_path, "rb") as f:
            image_data = f.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"COCO image {item.image_path} does not exist.") from None
    label_data = None
    if item.label_path is not None and label_space is not None:
        panoptic = panoptic_label_of(
            item.label_path,
            item.segments or [],
            label_space,
            treat_crowd_as_ignore=treat_crowd_as_ignore,
            image_path=item.image_path,
        )
        label_data = encode_panoptic_label(panoptic, label_format)
    features = create_segmentation_features(
        image_data, "jpeg", item.stem, label_data, label_format if label_data else None
    )
    return encode_example(features)


def convert_coco_dataset(
    coco_root: str,
    output_dir: str,
    splits: Sequence[str] = COCO_SPLITS,
    treat_crowd_as_ignore: bool = True,
    num_shards: int = 1000,
    workers: int = 1,
    label_format: str = "raw",
    overwrite: bool = False,
    skip_missing: bool = False,
) -> dict[str, list[str]]:
    """Converts COCO panoptic splits to DeepLab2 record shards.

    A split whose image folder is absent is skipped with a log line (``test2017`` usually
    is); a present ``train``/``val`` folder needs its panoptic JSON and PNGs.

    Args:
        coco_root: the COCO root folder (layout in the module docstring).
        output_dir: where shards are written.
        splits: the splits to convert.
        treat_crowd_as_ignore: crowd thing pixels get semantic 0 (ignore) instead of their
            class (instance 0 either way).
        num_shards: shards per split.
        workers: parallel processes.
        label_format: ``raw`` (DeepLab2), ``png16`` or ``png_rgb`` (see
            :mod:`panoptic2.data.records.segmentation`).
        overwrite: delete a split's existing shards (of any shard count) and manifest and
            convert again, instead of refusing when they do not match this run.
        skip_missing: convert the other images when annotated images are missing, instead
            of failing; the skipped ones are logged and listed in the manifest.

    Returns:
        Split -> its shard paths, for the splits converted.

    Raises:
        ValueError: bad annotations; each message names the image and segment.
        FileNotFoundError: no split found at all, a missing annotation file, or a missing
            annotated image (unless ``skip_missing``).
        RecordsMismatchError: ``output_dir`` holds shards of a split from other inputs,
            flags or shard count (unless ``overwrite``); the message names the changes.
    """
    written: dict[str, list[str]] = {}
    summaries = []
    for split in splits:
        if split not in COCO_SPLITS:
            raise ValueError(f"Unknown COCO split '{split}'; use {COCO_SPLITS}.")
        if not os.path.isdir(os.path.join(coco_root, f"{split}2017")):
            logger.info("COCO: no %s2017 folder in %s; skipping that split.", split, coco_root)
            continue
        listing = list_coco_items(coco_root, split, skip_missing=skip_missing)
        items = listing.items
        logger.info("COCO %s: %d images -> %d shards.", split, len(items), num_shards)
        example_fn = functools.partial(
            _coco_example,
            label_space=listing.label_space,
            treat_crowd_as_ignore=treat_crowd_as_ignore,
            label_format=label_format,
        )
        inputs = [p for item in items for p in (item.image_path, item.label_path) if p]
        if listing.json_path is not None:
            inputs.append(listing.json_path)
        settings = {}
        if split != "test":  # images only: no flag changes these records
            settings = {
                "label_format": label_format,
                "treat_crowd_as_ignore": treat_crowd_as_ignore,
            }
        dataset = f"COCO panoptic {split} ({coco_root})"
        skipped = [relative_path(p, coco_root) for p in listing.missing]
        manifest = {
            "converter": "coco_panoptic",
            "converter_version": COCO_CONVERTER_VERSION,
            "settings": settings,
            "skipped_missing": skipped,
            "inputs": input_stats(coco_root, inputs, dataset),
        }
        written[split] = write_sharded_records(
            output_dir,
            split,
            items,
            example_fn,
            num_shards,
            workers=workers,
            manifest=manifest,
            overwrite=overwrite,
            index_entry=index_entry,
        )
        if skipped:
            summaries.append(skipped_summary(dataset, skipped, len(items) + len(skipped)))
    if not written:
        raise FileNotFoundError(f"No COCO image folder of {list(splits)} found in {coco_root}.")
    for summary in summaries:
        logger.warning(summary)
    return written
