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

Each split also gets ``{split}.manifest.json`` (:mod:`panoptic2.data.records.manifest`):
converter ``cityscapes`` and :data:`CITYSCAPES_CONVERTER_VERSION`, ``num_shards``, the
settings ``create_panoptic_data`` and, in panoptic mode, ``label_format`` and
``treat_crowd_as_ignore`` (none for ``test``), and the size and mtime of every image, label
PNG and panoptic JSON. A rerun reuses complete shards only when the manifest matches;
otherwise it refuses and names the change, unless ``overwrite`` (see
:mod:`panoptic2.data.records.writer`). An annotation (panoptic JSON entry or
``labelTrainIds`` PNG) whose image file is missing is an error, or with ``skip_missing`` a
warning, and the skipped images are listed in the manifest.
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
from .index import index_entry
from .manifest import input_stats, relative_path, resolve_missing_images, skipped_summary
from .segmentation import (
    create_segmentation_features,
    encode_panoptic_label,
    panoptic_label_of,
)
from .writer import write_sharded_records

__all__ = [
    "CITYSCAPES_CONVERTER_VERSION",
    "CITYSCAPES_SPLITS",
    "CityscapesSplit",
    "convert_cityscapes_dataset",
    "list_cityscapes_items",
]

logger = logging.getLogger(__name__)

CITYSCAPES_SPLITS = ("train", "val", "test")
# Bump when the same inputs and flags give other records: older shards then refuse to resume.
CITYSCAPES_CONVERTER_VERSION = 1
_IMAGE_SUFFIX = "_leftImg8bit.png"
_SEMANTIC_SUFFIX = "_gtFine_labelTrainIds.png"


class _CityscapesItem(NamedTuple):
    """One image to convert; carries everything a worker needs (it is pickled)."""

    image_path: str
    prefix: str
    label_path: str | None  # panoptic PNG or labelTrainIds PNG
    segments: list[dict] | None  # None in semantic-only mode


class CityscapesSplit(NamedTuple):
    """What :func:`list_cityscapes_items` finds for one split."""

    items: list[_CityscapesItem]  # in record order
    json_path: str | None  # the panoptic JSON; None in semantic mode and for test
    missing: list[str]  # annotated images skipped because their file is missing


def _image_path(root: str, split: str, prefix: str) -> str:
    """Where the image of ``{city}_{seq}_{frame}`` is (the city is the first part)."""
    city = prefix.split("_")[0]
    return os.path.join(root, "leftImg8bit", split, city, prefix + _IMAGE_SUFFIX)


def list_cityscapes_items(
    root: str, split: str, create_panoptic_data: bool = True, skip_missing: bool = False
) -> CityscapesSplit:
    """Lists the images of a split (sorted by path) with their label files.

    Args:
        root: the Cityscapes root folder.
        split: ``train``, ``val`` or ``test`` (images only).
        create_panoptic_data: pair images with panoptic annotations, else with
            ``labelTrainIds`` PNGs.
        skip_missing: leave out annotated images whose file is missing, with a warning,
            instead of failing.

    Returns:
        The items in record order, the panoptic JSON and the skipped images.

    Raises:
        FileNotFoundError: the panoptic JSON, an image's ``labelTrainIds`` PNG, or an
            annotated image (unless ``skip_missing``) is missing.
        ValueError: duplicated image ids, or an image without an annotation.
    """
    dataset = f"Cityscapes {split} ({root})"
    pattern = os.path.join(glob.escape(root), "leftImg8bit", split, "*", "*" + _IMAGE_SUFFIX)
    images = sorted(glob.glob(pattern))
    prefixes = [os.path.basename(path)[: -len(_IMAGE_SUFFIX)] for path in images]
    if split == "test":
        items = [_CityscapesItem(p, prefix, None, None) for p, prefix in zip(images, prefixes)]
        return CityscapesSplit(items, None, [])
    # prefix -> (label path, segments or None, the annotation named in errors)
    annotations: dict[str, tuple[str, list[dict] | None, str]] = {}
    json_path = None
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
                f"annotation {ann['file_name']} in {json_path}",
            )
    else:
        label_glob = os.path.join(glob.escape(root), "gtFine", split, "*", "*" + _SEMANTIC_SUFFIX)
        for label_path in sorted(glob.glob(label_glob)):
            prefix = os.path.basename(label_path)[: -len(_SEMANTIC_SUFFIX)]
            annotations[prefix] = (label_path, None, f"semantic label {label_path}")
    items = []
    for path, prefix in zip(images, prefixes):
        if prefix in annotations:
            label_path, segments, _ = annotations[prefix]
            items.append(_CityscapesItem(path, prefix, label_path, segments))
        elif create_panoptic_data:
            raise ValueError(f"{dataset}: image {path} has no annotation in {json_path}.")
        else:
            city = os.path.basename(os.path.dirname(path))
            label_path = os.path.join(root, "gtFine", split, city, prefix + _SEMANTIC_SUFFIX)
            raise FileNotFoundError(
                f"{dataset}: semantic label {label_path} of image {path} does not exist; run "
                "cityscapesscripts' createTrainIdLabelImgs."
            )
    found = set(prefixes)
    missing = resolve_missing_images(
        dataset,
        [
            (_image_path(root, split, prefix), annotation)
            for prefix, (_, _, annotation) in sorted(annotations.items())
            if prefix not in found
        ],
        len(annotations),
        skip_missing,
    )
    return CityscapesSplit(items, json_path, missing)


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
    overwrite: bool = False,
    skip_missing: bool = False,
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
        overwrite: delete a split's existing shards (of any shard count) and manifest and
            convert again, instead of refusing when they do not match this run.
        skip_missing: convert the other images when annotated images are missing, instead
            of failing; the skipped ones are logged and listed in the manifest.

    Returns:
        Split -> its shard paths, for the splits converted.

    Raises:
        ValueError: bad annotations; each message names the image and segment.
        FileNotFoundError: no split found at all, a missing label file, or a missing
            annotated image (unless ``skip_missing``).
        RecordsMismatchError: ``output_dir`` holds shards of a split from other inputs,
            flags or shard count (unless ``overwrite``); the message names the changes.
    """
    example_fn = functools.partial(
        _cityscapes_example,
        label_space=LabelSpace.from_metadata(get_cityscapes_metadata()),
        treat_crowd_as_ignore=treat_crowd_as_ignore,
        label_format=label_format,
    )
    written: dict[str, list[str]] = {}
    summaries = []
    for split in splits:
        if split not in CITYSCAPES_SPLITS:
            raise ValueError(f"Unknown Cityscapes split '{split}'; use {CITYSCAPES_SPLITS}.")
        if not os.path.isdir(os.path.join(cityscapes_root, "leftImg8bit", split)):
            logger.info("Cityscapes: no leftImg8bit/%s in %s; skipping.", split, cityscapes_root)
            continue
        listing = list_cityscapes_items(
            cityscapes_root, split, create_panoptic_data, skip_missing=skip_missing
        )
        items = listing.items
        logger.info("Cityscapes %s: %d images -> %d shards.", split, len(items), num_shards)
        inputs = [p for item in items for p in (item.image_path, item.label_path) if p]
        if listing.json_path is not None:
            inputs.append(listing.json_path)
        settings: dict[str, object] = {}
        if split != "test":  # images only: no flag changes these records
            settings["create_panoptic_data"] = create_panoptic_data
            if create_panoptic_data:
                settings["label_format"] = label_format
                settings["treat_crowd_as_ignore"] = treat_crowd_as_ignore
        dataset = f"Cityscapes {split} ({cityscapes_root})"
        skipped = [relative_path(p, cityscapes_root) for p in listing.missing]
        manifest = {
            "converter": "cityscapes",
            "converter_version": CITYSCAPES_CONVERTER_VERSION,
            "settings": settings,
            "skipped_missing": skipped,
            "inputs": input_stats(cityscapes_root, inputs, dataset),
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
        raise FileNotFoundError(
            f"No Cityscapes image folder leftImg8bit/{{{','.join(splits)}}} in {cityscapes_root}."
        )
    for summary in summaries:
        logger.warning(summary)
    return written
