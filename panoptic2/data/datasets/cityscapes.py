"""Cityscapes semantic and instance readers (official layout after cityscapesscripts).

Layout (``{split}`` in train/val/test)::

    leftImg8bit/{split}/{city}/{city}_{seq}_{frame}_leftImg8bit.png
    gtFine/{split}/{city}/{city}_{seq}_{frame}_gtFine_labelTrainIds.png   (createTrainIdLabelImgs)
    gtFine/{split}/{city}/{city}_{seq}_{frame}_gtFine_instanceIds.png

Label ids are turned into train ids with ``cityscapesscripts.helpers.labels``: semantic maps
are already in train ids (0..18, 255 ignore); instance annotations use the train id as their
contiguous ``category_id``.
"""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
from PIL import Image
from pycocotools import mask as mask_util

from panoptic2.structures import mask_to_xywh

from .file_checks import (
    check_unique,
    dataset_label,
    read_image_size,
    require_dir,
    require_file,
)
from .validation import validate_dicts

__all__ = ["cityscapes_files", "load_cityscapes_instances", "load_cityscapes_semantic"]

logger = logging.getLogger(__name__)

_IMAGE_SUFFIX = "_leftImg8bit.png"


def cityscapes_files(
    image_dir: str, gt_dir: str, gt_suffix: str, where: str
) -> list[tuple[str, str, str]]:
    """Lists ``(image_id, image_file, gt_file)`` for every image, checking the GT exists.

    Args:
        image_dir: ``leftImg8bit/{split}``.
        gt_dir: ``gtFine/{split}``.
        gt_suffix: e.g. ``"_gtFine_labelTrainIds.png"``.
        where: dataset label for messages.

    Returns:
        Sorted by image id (``{city}_{seq}_{frame}``).

    Raises:
        FileNotFoundError: a folder is missing, it holds no image, or a GT file is missing.
    """
    require_dir(image_dir, "image folder", where)
    require_dir(gt_dir, "ground-truth folder", where)
    images = sorted(glob.glob(os.path.join(image_dir, "*", "*" + _IMAGE_SUFFIX)))
    if not images:
        raise FileNotFoundError(
            f"No '{{city}}/*{_IMAGE_SUFFIX}' images under '{image_dir}' ({where})."
        )
    files = []
    for image_file in images:
        city = os.path.basename(os.path.dirname(image_file))
        image_id = os.path.basename(image_file)[: -len(_IMAGE_SUFFIX)]
        gt_file = os.path.join(gt_dir, city, image_id + gt_suffix)
        require_file(gt_file, f"ground truth of image '{image_file}'", where)
        files.append((image_id, image_file, gt_file))
    check_unique(files, lambda f: f[0], "Image id", f"'{image_dir}' ({where})", lambda f: f[1])
    return files


def load_cityscapes_semantic(
    image_dir: str,
    gt_dir: str,
    *,
    dataset_name: str | None = None,
    meta: Mapping[str, Any] | None = None,
    validate: bool = False,
) -> list[dict]:
    """Reads Cityscapes semantic segmentation (``*_gtFine_labelTrainIds.png``).

    Args:
        image_dir: ``leftImg8bit/{split}``.
        gt_dir: ``gtFine/{split}``.
        dataset_name: used in error messages.
        meta: metadata (``num_classes``, ``ignore_label``); needed for ``validate``.
        validate: decode every file and raise on any problem.

    Returns:
        Dicts with ``file_name``, ``image_id``, ``height``, ``width``, ``sem_seg_file_name``.
    """
    where = dataset_label(dataset_name, image_dir)
    dicts = []
    for image_id, image_file, gt_file in cityscapes_files(
        image_dir, gt_dir, "_gtFine_labelTrainIds.png", where
    ):
        height, width = read_image_size(image_file)
        dicts.append(
            {
                "file_name": image_file,
                "image_id": image_id,
                "height": height,
                "width": width,
                "sem_seg_file_name": gt_file,
            }
        )
    if validate:
        if meta is None:
            raise ValueError("validate=True needs meta (num_classes, ignore_label).")
        validate_dicts(dicts, meta, where)
    logger.info("Loaded %d Cityscapes images with semantic labels from %s", len(dicts), gt_dir)
    return dicts


def _instances_from_ids(instance_ids: np.ndarray, label_to_train: Mapping[int, int]) -> list:
    """Annotations of one ``instanceIds`` map (values labelId*1000+k, or labelId alone).

    A value below 1000 of a class with instances is a crowd region (cityscapesscripts'
    convention: the annotators did not separate those objects).
    """
    from cityscapesscripts.helpers.labels import id2label

    annotations = []
    for value in np.unique(instance_ids).tolist():
        label_id = value if value < 1000 else value // 1000
        label = id2label.get(label_id)
        if label is None or not label.hasInstances or label.ignoreInEval:
            continue
        mask = instance_ids == value
        rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
        rle["counts"] = rle["counts"].decode("ascii")
        annotations.append(
            {
                "bbox": [float(v) for v in mask_to_xywh(mask)],
                "bbox_mode": "XYWH_ABS",
                "category_id": int(label_to_train[label_id]),
                "segmentation": rle,
                "iscrowd": int(value < 1000),
                "area": int(mask.sum()),
            }
        )
    return annotations


def load_cityscapes_instances(
    image_dir: str, gt_dir: str, *, dataset_name: str | None = None
) -> list[dict]:
    """Reads Cityscapes instances from ``*_gtFine_instanceIds.png``.

    Every PNG is decoded (the masks are needed), so this is slower than the other readers.

    Args:
        image_dir: ``leftImg8bit/{split}``.
        gt_dir: ``gtFine/{split}``.
        dataset_name: used in error messages.

    Returns:
        Dicts with ``file_name``, ``image_id``, ``height``, ``width`` and ``annotations``
        (``bbox`` XYWH_ABS, ``category_id`` = train id 11..18, ``segmentation`` as
        compressed RLE, ``iscrowd``, ``area``).

    Raises:
        FileNotFoundError: a file is missing (names it).
        ValueError: an instance PNG does not match its image's size.
    """
    from cityscapesscripts.helpers.labels import labels

    label_to_train = {lb.id: lb.trainId for lb in labels}
    where = dataset_label(dataset_name, image_dir)
    dicts = []
    for image_id, image_file, gt_file in cityscapes_files(
        image_dir, gt_dir, "_gtFine_instanceIds.png", where
    ):
        height, width = read_image_size(image_file)
        with Image.open(gt_file) as img:
            instance_ids = np.asarray(img, dtype=np.int64)
        if instance_ids.shape != (height, width):
            raise ValueError(
                f"Instance PNG '{gt_file}' of {where} is {instance_ids.shape[0]}x"
                f"{instance_ids.shape[1]} but its image '{image_file}' is {height}x{width}."
            )
        dicts.append(
            {
                "file_name": image_file,
                "image_id": image_id,
                "height": height,
                "width": width,
                "annotations": _instances_from_ids(instance_ids, label_to_train),
            }
        )
    logger.info("Loaded %d Cityscapes images with instances from %s", len(dicts), gt_dir)
    return dicts
