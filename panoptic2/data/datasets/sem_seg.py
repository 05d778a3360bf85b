"""Generic semantic segmentation folders: an image folder and a label-PNG folder.

Labels are single-channel PNGs of contiguous class ids (palette PNGs count: their indices
are the ids), with the metadata's ``ignore_label`` for unlabelled pixels. Image and label
are paired by their path relative to the roots, without extension.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from ..catalog import DatasetCatalog, MetadataCatalog
from .file_checks import dataset_label, read_image_size, require_dir, require_file
from .metadata import SEM_SEG_EVALUATORS
from .validation import validate_dicts

__all__ = ["load_sem_seg", "register_sem_seg"]

logger = logging.getLogger(__name__)


def _relative_stems(root: str, ext: str) -> list[str]:
    """Sorted paths (relative to ``root``, without extension) of the files ending in ``ext``."""
    suffix = "." + ext.lstrip(".")
    stems = []
    for dirpath, _, files in os.walk(root, followlinks=True):
        for f in files:
            if f.endswith(suffix) and not f.startswith("."):
                rel = os.path.relpath(os.path.join(dirpath, f), root)
                stems.append(rel[: -len(suffix)])
    return sorted(stems)


def load_sem_seg(
    gt_root: str,
    image_root: str,
    gt_ext: str = "png",
    image_ext: str = "jpg",
    *,
    dataset_name: str | None = None,
    meta: Mapping[str, Any] | None = None,
    validate: bool = False,
) -> list[dict]:
    """Pairs every label file under ``gt_root`` with its image under ``image_root``.

    The label files define the dataset: images without a label are not part of it.
    ``height``/``width`` come from the image header (no pixel decode).

    Args:
        gt_root: folder (searched recursively) of label PNGs.
        image_root: folder of the images, same relative paths.
        gt_ext: extension of the label files.
        image_ext: extension of the images.
        dataset_name: used in error messages.
        meta: metadata (``num_classes``, ``ignore_label``); needed for ``validate``.
        validate: decode every image and label and raise on any problem (sizes, values).

    Returns:
        Dicts with ``file_name``, ``sem_seg_file_name``, ``image_id`` (relative stem),
        ``height`` and ``width``, sorted by relative path.

    Raises:
        FileNotFoundError: a root is missing, it holds no labels, or a label has no image.
        ValueError: ``validate`` found a problem.
    """
    where = dataset_label(dataset_name, gt_root)
    require_dir(gt_root, "label folder", where)
    require_dir(image_root, "image folder", where)
    stems = _relative_stems(gt_root, gt_ext)
    if not stems:
        raise FileNotFoundError(f"No '*.{gt_ext}' label files under '{gt_root}' ({where}).")
    dicts = []
    for stem in stems:
        image_file = os.path.join(image_root, f"{stem}.{image_ext.lstrip('.')}")
        require_file(image_file, f"image of label '{stem}.{gt_ext}'", where)
        height, width = read_image_size(image_file)
        dicts.append(
            {
                "file_name": image_file,
                "sem_seg_file_name": os.path.join(gt_root, f"{stem}.{gt_ext.lstrip('.')}"),
                "image_id": stem,
                "height": height,
                "width": width,
            }
        )
    if validate:
        if meta is None:
            raise ValueError("load_sem_seg(validate=True) needs meta (num_classes, ignore_label).")
        validate_dicts(dicts, meta, where)
    logger.info("Loaded %d images with semantic labels from %s", len(dicts), gt_root)
    return dicts


def register_sem_seg(
    name: str,
    metadata: Mapping[str, Any],
    image_root: str,
    gt_root: str,
    image_ext: str = "jpg",
    gt_ext: str = "png",
) -> None:
    """Registers a semantic segmentation folder pair in one call.

    Args:
        name: dataset name.
        metadata: metadata fields, at least ``classes`` (or ``stuff_classes``) and
            ``ignore_label``; ``get_sem_seg_metadata(classes)`` builds the full set.
        image_root: folder of the images.
        gt_root: folder of the label PNGs.
        image_ext: extension of the images.
        gt_ext: extension of the labels.
    """
    DatasetCatalog.register(
        name,
        lambda: load_sem_seg(
            gt_root,
            image_root,
            gt_ext,
            image_ext,
            dataset_name=name,
            meta=MetadataCatalog.get(name).as_dict(),
        ),
    )
    fields: dict[str, Any] = {"evaluators": list(SEM_SEG_EVALUATORS), "ignore_label": 255}
    fields.update(metadata)
    if "num_classes" not in fields and ("classes" in fields or "stuff_classes" in fields):
        fields["num_classes"] = len(fields.get("classes") or fields["stuff_classes"])
    fields.update(image_root=image_root, sem_seg_root=gt_root)
    MetadataCatalog.get(name).set(**fields)
