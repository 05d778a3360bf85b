"""Cityscapes -> DeepLab2 record shards (the logic of ``tools/build_cityscapes_data.py``).

Reads the official layout after ``cityscapesscripts`` preparation::

    {root}/leftImg8bit/{split}/{city}/{prefix}_leftImg8bit.png
    {root}/gtFine/{split}/{city}/{prefix}_gtFine_labelTrainIds.png        (semantic mode)
    {root}/gtFine/cityscapes_panoptic_{split}_trainId.json                 (panoptic mode)
    {root}/gtFine/cityscapes_panoptic_{split}_trainId/{prefix}_gtFine_panoptic.png

and writes ``{split}-{i:05d}-of-{n:05d}.tfrecord`` shards with ``image/format`` ``png`` (the
original bytes) and ``image/filename`` ``{prefix}``. Panoptic mode stores
``train_id * 1000 + instance`` (ignore 255, crowd ignored by default); semantic-only mode
stores the ``labelTrainIds`` PNG as is, format ``png``. ``test`` holds images only.
"""

from __future__ import annotations

import functools
import glob
import json
import logging
import os
from collections.abc import Sequence
from typing import NamedTuple

from panoptic2.data.datasets.metadata import get_cityscapes_metadata
from panoptic2.data.label_space import LabelSpace

from .example import encode_example
from .segmentation import (
    create_segmentation_features,
    encode_panoptic_label,
    panoptic_label_of,
)
from .writer import write_sharded_records

__all__ = ["CITYSCAPES_SPLITS", "convert_cityscapes_dataset", "list_cityscapes_items"]

logger = logging.getLogger(__name__)

CITYSCAPES_SPLITS = ("train", "val", "test")
_IMAGE_SUFFIX = "_leftImg8bit.png"
_SEMANTIC_SUFFIX = "_gtFine_labelTrainIds.png"


class _CityscapesItem(NamedTuple):
    """One image to convert; carries everything a worker needs (it is pickled)."""

    image_path: str
    prefix: str
    label_path: str | None  # panoptic PNG or labelTrainIds PNG
    segments: list[dict] | None  # None in semantic-only mode


def list_cityscapes_items(
    root: str, split: str, create_panoptic_data: bool = True
) -> list[_CityscapesItem]:
    """Lists the images of a split (sorted by path) with their label files.

    Args:
        root: the Cityscapes root folder.
        split: ``train``, ``val`` or ``test`` (images only).
        create_panoptic_data: pair images with panoptic annotations, else with
            ``labelTrainIds`` PNGs.

    Returns:
        The items in record order.

    Raises:
        FileNotFoundError: the panoptic JSON is missing.
        ValueError: duplicated image ids, or an image without an annotation.
    """
    dataset = f"Cityscapes {split} ({root})"
    pattern = os.path.join(glob.escape(root), "leftImg8bit", split, "*", "*" + _IMAGE_SUFFIX)
    images = sorted(glob.glob(pattern))
    items = []
    if split == "test":
        for path in images:
            items.append(
                _CityscapesItem(path, os.path.basename(path)[: -len(_IMAGE_SUFFIX)], None, None)
            )
        return items
    annotations: dict[str, tuple[str, list[dict]]] = {}
    if create_panoptic_data:
        json_path = os.path.join(root, "gtFine", f"cityscapes_panoptic_{split}_trainId.json")
        try:
            with open(json_path) as f:
                data = json.load(f)
        except FileNotFoundError:
            raise FileNotFoundError(
                f"{dataset}: panoptic annotation file {json_path} does not exist; run "
                "cityscapesscripts' createPanopticImgs --use-train-id, or pass "
                "create_panoptic_data=False."
            ) from None
        png_dir = os.path.join(root, "gtFine", f"cityscapes_panoptic_{split}_trainId")
        for ann in data["annotations"]:
            if ann["image_id"] in annotations:
                raise ValueError(
                    f"{dataset}: image id {ann['image_id']} appears twice in {json_path}."
                )
            annotations[ann["image_id"]] = (
                os.path.join(png_dir, ann["file_name"]),
                ann["segments_info"],
            )
    for path in images:
        prefix = os.path.basename(path)[: -len(_IMAGE_SUFFIX)]
        if create_panoptic_data:
            if prefix not in annotations:
                raise ValueError(f"{dataset}: image {path} has no annotation in {json_path}.")
            label_path, segments = annotations[prefix]
            items.append(_CityscapesItem(path, prefix, label_path, segments))
        else:
            city = os.path.basename(os.path.dirname(path))
            label_path = os.path.join(root, "gtFine", split, city, prefix + _SEMANTIC_SUFFIX)
            items.append(_CityscapesItem(path, prefix, label_path, None))
    return items


def _read_bytes(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"Cityscapes {what} {path} does not exist.") from None


def _cityscapes_example(
    item: _CityscapesItem,
    label_space: LabelSpace,
    treat_crowd_as_ignore: bool,
    label_format: str,
) -> bytes:
    """Builds the serialized example of one image (runs in worker processes)."""
    image_data = _read_bytes(item.image_path, "image")
    label_data, fmt = None, None
    if item.label_path is not None and item.segments is not None:
        panoptic = panoptic_label_of(
            item.label_path,
            item.segments,
            label_space,
            treat_crowd_as_ignore=treat_crowd_as_ignore,
            image_path=item.image_path,
        )
        label_data, fmt = encode_panoptic_label(panoptic, label_format), label_format
    elif item.label_path is not None:
        label_data, fmt = _read_bytes(item.label_path, "semantic label"), "png"
    features = create_segmentation_features(image_data, "png", item.prefix, label_data, fmt)
    return encode_example(features)


def convert_cityscapes_dataset(
    cityscapes_root: str,
    output_dir: str,
    splits: Sequence[str] = CITYSCAPES_SPLITS,
    create_panoptic_data: bool = True,
    treat_crowd_as_ignore: bool = True,
    num_shards: int = 10,
    workers: int = 1,
    label_format: str = "raw",
    resume: bool = True,
) -> dict[str, list[str]]:
    """Converts Cityscapes splits to DeepLab2 record shards.

    A split without a ``leftImg8bit/{split}`` folder is skipped with a log line.

    Args:
        cityscapes_root: the Cityscapes root folder (layout in the module docstring).
        output_dir: where shards are written.
        splits: the splits to convert.
        create_panoptic_data: panoptic labels (else the semantic ``labelTrainIds`` PNGs).
        treat_crowd_as_ignore: crowd thing pixels get 255 instead of their train id.
        num_shards: shards per split.
        workers: parallel processes.
        label_format: panoptic mode only: ``raw`` (DeepLab2), ``png16`` or ``png_rgb``.
        resume: skip shards that already exist.

    Returns:
        Split -> its shard paths, for the splits converted.

    Raises:
        ValueError: bad annotations; each message names the image and segment.
        FileNotFoundError: no split found at all, or a missing file.
    """
    example_fn = functools.partial(
        _cityscapes_example,
        label_space=LabelSpace.from_metadata(get_cityscapes_metadata()),
        treat_crowd_as_ignore=treat_crowd_as_ignore,
        label_format=label_format,
    )
    written: dict[str, list[str]] = {}
    for split in splits:
        if split not in CITYSCAPES_SPLITS:
            raise ValueError(f"Unknown Cityscapes split '{split}'; use {CITYSCAPES_SPLITS}.")
        if not os.path.isdir(os.path.join(cityscapes_root, "leftImg8bit", split)):
            logger.info("Cityscapes: no leftImg8bit/%s in %s; skipping.", split, cityscapes_root)
            continue
        items = list_cityscapes_items(cityscapes_root, split, create_panoptic_data)
        logger.info("Cityscapes %s: %d images -> %d shards.", split, len(items), num_shards)
        written[split] = write_sharded_records(
            output_dir, split, items, example_fn, num_shards, workers=workers, resume=resume
        )
    if not written:
        raise FileNotFoundError(
            f"No Cityscapes image folder leftImg8bit/{{{','.join(splits)}}} in {cityscapes_root}."
        )
    return written
