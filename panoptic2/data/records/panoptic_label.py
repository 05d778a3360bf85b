"""COCO-format panoptic PNG + ``segments_info`` -> DeepLab2 panoptic label map.

Shared by the COCO and Cityscapes converters; the semantics are DeepLab2's
``_generate_panoptic_label``: pixels of no segment get the ignore label; each segment's
category is mapped to its contiguous id; thing segments get per-class instance ids counted
from 1 in ``segments_info`` order; crowd thing segments get instance 0 and, by default, the
ignore label instead of their class.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping, Sequence

import numpy as np

from panoptic2.utils import panoptic_png

__all__ = ["generate_panoptic_label", "read_panoptic_png"]


def read_panoptic_png(path: str) -> np.ndarray:
    """Reads a COCO-format panoptic PNG (``id = R + 256 G + 256^2 B``).

    Args:
        path: the PNG file.

    Returns:
        ``(H, W) int64`` segment ids (0 = void).

    Raises:
        FileNotFoundError: the file is missing (the message names it).
        ValueError: the file is not an 8-bit RGB image (the message names it).
    """
    return panoptic_png.read_panoptic_png(path).astype(np.int64)


def generate_panoptic_label(
    segment_ids: np.ndarray,
    segments: Sequence[Mapping],
    *,
    id_mapping: Mapping[int, int],
    thing_ids: set[int] | frozenset[int],
    label_divisor: int,
    ignore_label: int,
    treat_crowd_as_ignore: bool = True,
    image_name: str = "?",
) -> np.ndarray:
    """Builds the panoptic label of one image.

    Args:
        segment_ids: ``(H, W)`` segment ids decoded from the panoptic PNG.
        segments: the image's ``segments_info`` (``id``, ``category_id`` in the dataset's
            original ids, ``area``, ``iscrowd``).
        id_mapping: original category id -> contiguous semantic id.
        thing_ids: contiguous ids of the classes that have instances.
        label_divisor: ``panoptic = semantic * label_divisor + instance``.
        ignore_label: semantic id of void (and of crowd when ``treat_crowd_as_ignore``).
        treat_crowd_as_ignore: crowd thing pixels get ``ignore_label`` instead of their class.
        image_name: named in errors.

    Returns:
        ``(H, W) int32`` panoptic label.

    Raises:
        ValueError: a segment's pixel count differs from its ``area``; its category is
            unknown; a stuff segment is crowd; a class has ``label_divisor`` or more
            instances. Each message names the image and the segment.
    """
    semantic = np.full(segment_ids.shape, ignore_label, dtype=np.int64)
    instance = np.zeros(segment_ids.shape, dtype=np.int64)
    instance_count: dict[int, int] = collections.defaultdict(int)
    for segment in segments:
        where = f"Image {image_name}, segment {segment.get('id')}"
        selected = segment_ids == segment["id"]
        area = int(selected.sum())
        if area != segment["area"]:
            raise ValueError(
                f"{where}: the panoptic PNG has {area} pixels of this segment, but its "
                f"'area' is {segment['area']}."
            )
        if segment["category_id"] not in id_mapping:
            raise ValueError(
                f"{where}: unknown category id {segment['category_id']} (known: "
                f"{sorted(id_mapping)})."
            )
        category = id_mapping[segment["category_id"]]
        semantic[selected] = category
        if category in thing_ids:
            if segment.get("iscrowd", 0):
                if treat_crowd_as_ignore:
                    semantic[selected] = ignore_label
                continue
            instance_count[category] += 1
            if instance_count[category] >= label_divisor:
                raise ValueError(
                    f"{where}: more than {label_divisor - 1} instances of category "
                    f"{segment['category_id']}; they do not fit under label divisor "
                    f"{label_divisor}."
                )
            instance[selected] = instance_count[category]
        elif segment.get("iscrowd", 0):
            raise ValueError(
                f"{where}: stuff category {segment['category_id']} is marked iscrowd; only "
                "thing segments may be crowd."
            )
    return (semantic * label_divisor + instance).astype(np.int32)
