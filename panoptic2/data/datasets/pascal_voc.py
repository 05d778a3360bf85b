"""PASCAL VOC 2012 semantic segmentation, and the SBD-augmented train set ("train_aug").

Layout (``dirname`` = ``VOCdevkit/VOC2012``)::

    ImageSets/Segmentation/{train,val,trainval}.txt   image ids, one per line
    JPEGImages/{id}.jpg
    SegmentationClass/{id}.png        palette PNGs: index = class (0..20), 255 = border
    ImageSets/Segmentation/train_aug.txt  + SegmentationClassAug/{id}.png   (train_aug)

``SegmentationClassAug`` (DeepLab's common layout) holds grayscale index PNGs;
:func:`convert_sbd_to_aug` creates it from SBD's ``benchmark_RELEASE/dataset/cls/*.mat``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
from PIL import Image

from panoptic2.utils.file_io import atomic_write

from .file_checks import (
    check_unique,
    dataset_label,
    read_image_size,
    require_dir,
    require_file,
)
from .validation import validate_dicts

__all__ = ["convert_sbd_to_aug", "load_voc_sem_seg", "read_voc_label"]

logger = logging.getLogger(__name__)

_NUM_CLASSES = 21
_IGNORE = 255


def _read_ids(path: str, where: str) -> list[str]:
    require_file(path, "image-set list", where)
    with open(path) as f:
        lines = [(n, line.split()[0]) for n, line in enumerate(f, start=1) if line.strip()]
    if not lines:
        raise ValueError(f"The image-set list '{path}' of {where} is empty.")
    # A repeated id would count its image twice in training and in mIoU.
    check_unique(
        lines, lambda item: item[1], "Image id", f"'{path}' ({where})", lambda i: f"line {i[0]}"
    )
    return [image_id for _, image_id in lines]


def load_voc_sem_seg(
    dirname: str,
    split: str,
    *,
    dataset_name: str | None = None,
    meta: Mapping[str, Any] | None = None,
    validate: bool = False,
) -> list[dict]:
    """Reads a VOC 2012 segmentation split.

    Args:
        dirname: the ``VOC2012`` folder.
        split: ``"train"``, ``"val"``, ``"trainval"`` (labels in ``SegmentationClass``) or
            ``"train_aug"`` (labels in ``SegmentationClassAug``).
        dataset_name: used in error messages.
        meta: metadata (``num_classes``, ``ignore_label``); needed for ``validate``.
        validate: decode every image and label and raise on any problem.

    Returns:
        Dicts with ``file_name``, ``image_id``, ``height``, ``width`` (image header) and
        ``sem_seg_file_name``, in list order.

    Raises:
        FileNotFoundError: the list, an image or a label is missing (names it).
    """
    where = dataset_label(dataset_name, dirname)
    require_dir(dirname, "VOC2012 folder", where)
    label_dir = "SegmentationClassAug" if split == "train_aug" else "SegmentationClass"
    ids = _read_ids(os.path.join(dirname, "ImageSets", "Segmentation", f"{split}.txt"), where)
    dicts = []
    for image_id in ids:
        image_file = os.path.join(dirname, "JPEGImages", f"{image_id}.jpg")
        label_file = os.path.join(dirname, label_dir, f"{image_id}.png")
        require_file(image_file, f"image '{image_id}'", where)
        require_file(label_file, f"label of image '{image_id}'", where)
        height, width = read_image_size(image_file)
        dicts.append(
            {
                "file_name": image_file,
                "image_id": image_id,
                "height": height,
                "width": width,
                "sem_seg_file_name": label_file,
            }
        )
    if validate:
        if meta is None:
            raise ValueError("validate=True needs meta (num_classes, ignore_label).")
        validate_dicts(dicts, meta, where)
        for d in dicts:
            read_voc_label(d["sem_seg_file_name"], palette=split != "train_aug")
    logger.info("Loaded %d VOC images (%s) from %s", len(dicts), split, dirname)
    return dicts


def read_voc_label(path: str, palette: bool = True) -> np.ndarray:
    """Reads a VOC label PNG as class indices, checking mode and values.

    Args:
        path: a ``SegmentationClass`` (palette) or ``SegmentationClassAug`` (grayscale) PNG.
        palette: require PIL mode ``"P"`` (the official files); else require ``"L"``.

    Returns:
        ``(H, W) uint8`` indices in ``0..20`` or 255.

    Raises:
        ValueError: wrong mode (an RGB rendering of the palette would give colours, not
            indices) or values outside ``0..20``/255; the message names the file.
    """
    with Image.open(path) as img:
        expected = "P" if palette else "L"
        if img.mode != expected:
            raise ValueError(
                f"VOC label '{path}' has PIL mode {img.mode!r}, expected {expected!r} "
                f"({'palette indices' if palette else 'grayscale indices'})."
            )
        labels = np.array(img)
    bad = sorted(set(np.unique(labels).tolist()) - set(range(_NUM_CLASSES)) - {_IGNORE})
    if bad:
        raise ValueError(f"VOC label '{path}' has values {bad} outside 0..20 and 255.")
    return labels


def _save_png(path: str, labels: np.ndarray) -> None:
    atomic_write(path, lambda f: Image.fromarray(labels, mode="L").save(f, format="PNG"))


def convert_sbd_to_aug(voc_dir: str, sbd_dir: str) -> int:
    """Builds ``SegmentationClassAug`` and ``train_aug.txt`` from VOC 2012 and SBD.

    ``train_aug`` = (VOC train ∪ SBD train ∪ SBD val) − VOC val, as in DeepLab. VOC's own
    labels win over SBD's for images in both. Each PNG is written atomically and existing
    ones are kept, so an interrupted run resumes.

    Args:
        voc_dir: the ``VOC2012`` folder.
        sbd_dir: SBD's ``benchmark_RELEASE/dataset`` folder (``cls/*.mat``,
            ``train.txt``, ``val.txt``).

    Returns:
        The number of images in ``train_aug``.

    Raises:
        FileNotFoundError: a list, label or ``.mat`` file is missing (names it).
        ValueError: a ``.mat`` file lacks ``GTcls.Segmentation`` or has bad values.
    """
    from scipy.io import loadmat

    where = dataset_label(None, voc_dir)
    sets = os.path.join(voc_dir, "ImageSets", "Segmentation")
    voc_train = _read_ids(os.path.join(sets, "train.txt"), where)
    voc_val = set(_read_ids(os.path.join(sets, "val.txt"), where))
    sbd_ids = _read_ids(os.path.join(sbd_dir, "train.txt"), where)
    sbd_ids += _read_ids(os.path.join(sbd_dir, "val.txt"), where)
    out_dir = os.path.join(voc_dir, "SegmentationClassAug")
    os.makedirs(out_dir, exist_ok=True)
    voc_labeled = voc_train + sorted(voc_val)
    for image_id in voc_labeled:
        out = os.path.join(out_dir, f"{image_id}.png")
        if not os.path.isfile(out):
            src = os.path.join(voc_dir, "SegmentationClass", f"{image_id}.png")
            require_file(src, f"label of image '{image_id}'", where)
            _save_png(out, read_voc_label(src, palette=True))
    for image_id in sbd_ids:
        out = os.path.join(out_dir, f"{image_id}.png")
        if os.path.isfile(out):
            continue
        mat = os.path.join(sbd_dir, "cls", f"{image_id}.mat")
        require_file(mat, f"SBD label of image '{image_id}'", where)
        try:
            labels = loadmat(mat)["GTcls"]["Segmentation"][0][0]
        except (KeyError, IndexError, ValueError) as e:
            raise ValueError(f"SBD file '{mat}' has no GTcls.Segmentation: {e}") from e
        labels = np.asarray(labels)
        if labels.min() < 0 or labels.max() > _IGNORE:
            raise ValueError(f"SBD file '{mat}' has labels outside 0..255.")
        labels = labels.astype(np.uint8)
        bad = sorted(set(np.unique(labels).tolist()) - set(range(_NUM_CLASSES)) - {_IGNORE})
        if bad:
            raise ValueError(f"SBD file '{mat}' has values {bad} outside 0..20 and 255.")
        _save_png(out, labels)
    train_aug = sorted((set(voc_train) | set(sbd_ids)) - voc_val)
    text = "".join(f"{i}\n" for i in train_aug).encode()
    atomic_write(os.path.join(sets, "train_aug.txt"), lambda f: f.write(text))
    logger.info("train_aug: %d images written to %s", len(train_aug), out_dir)
    return len(train_aug)
