"""Category tables -> dataset metadata (class names, colours, id maps, label space).

Every builtin and custom dataset carries the same metadata fields (see ``ARCHITECTURE.md``):
``classes``/``colors`` over the whole semantic label space (indexed by contiguous id),
Detectron2-style ``thing_*``/``stuff_*`` lists, ``thing_dataset_id_to_contiguous_id`` and
``stuff_dataset_id_to_contiguous_id`` (keyed by the dataset's original ids), ``thing_ids``,
``label_divisor``, ``ignore_label``, ``num_classes`` and ``evaluators``.

The category tables themselves are data files next to this module
(``coco_panoptic_categories.json``, ``pascal_voc_classes.json``) or, for Cityscapes, the
label definitions of ``cityscapesscripts`` (never copied here).
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Sequence
from typing import Any

from ..label_space import LabelSpace

__all__ = [
    "INSTANCE_EVALUATORS",
    "PANOPTIC_EVALUATORS",
    "SEM_SEG_EVALUATORS",
    "get_cityscapes_metadata",
    "get_coco_instances_metadata",
    "get_coco_panoptic_metadata",
    "get_sem_seg_metadata",
    "get_voc_metadata",
    "load_coco_panoptic_categories",
    "voc_colormap",
]

PANOPTIC_EVALUATORS = ["COCOPanopticEvaluator", "SemSegEvaluator"]
SEM_SEG_EVALUATORS = ["SemSegEvaluator"]
INSTANCE_EVALUATORS = ["COCOEvaluator"]
# Instance datasets store no panoptic maps; any divisor above the instances per image
# encodes their segments, and Detectron2's 1000 fits every dataset it ships.
INSTANCE_LABEL_DIVISOR = 1000

_HERE = os.path.dirname(os.path.abspath(__file__))


@functools.cache
def _read_json_table(filename: str) -> Any:
    with open(os.path.join(_HERE, filename)) as f:
        return json.load(f)


def load_coco_panoptic_categories() -> list[dict]:
    """Returns the 133 COCO panoptic categories (``id, name, isthing, color, supercategory``).

    Returns:
        A fresh list of category dicts, in the order of the COCO panoptic API file.
    """
    return [dict(c) for c in _read_json_table("coco_panoptic_categories.json")]


def get_coco_panoptic_metadata(categories: Sequence[dict]) -> dict[str, Any]:
    """Builds COCO-style panoptic metadata from a category list (DeepLab2's label space).

    Contiguous ids put things first: things sorted by original id get ``1..T``, then stuff
    sorted by original id gets ``T+1..T+S``; ``0`` is void and the ignore label. For the 133
    COCO categories this gives 1..80 things, 81..133 stuff, ``num_classes=134``.

    Args:
        categories: dicts with ``id`` (int, original dataset id, never 0), ``name``,
            ``isthing`` (0/1) and optionally ``color`` (RGB triple).

    Returns:
        Metadata fields: ``classes``, ``colors`` (index 0 is ``"void"``/black),
        ``thing_classes``, ``thing_colors``, ``stuff_classes``, ``stuff_colors``,
        ``thing_dataset_id_to_contiguous_id``, ``stuff_dataset_id_to_contiguous_id``,
        ``thing_ids``, ``label_divisor`` (256), ``ignore_label`` (0), ``num_classes`` and
        ``evaluators``.

    Raises:
        ValueError: a category lacks a field, uses id 0, or an id appears twice.
    """
    return {
        **LabelSpace.from_categories(categories).as_metadata(),
        "evaluators": list(PANOPTIC_EVALUATORS),
    }


def get_coco_instances_metadata(categories: Sequence[dict]) -> dict[str, Any]:
    """Metadata of an instance-only (COCO instances) dataset: every category is a thing.

    The label space is the COCO one of :func:`get_coco_panoptic_metadata` restricted to the
    things: categories sorted by id get contiguous ids ``1..K``, ``0`` is ``"void"`` (so
    COCO's 80 thing categories get the same contiguous ids as in COCO panoptic).

    Args:
        categories: dicts with ``id`` (never 0), ``name`` and optionally ``color``; an
            ``isthing`` field is ignored.

    Returns:
        The fields of :func:`get_coco_panoptic_metadata` (``stuff_*`` empty) with
        ``label_divisor`` 1000 and ``evaluators`` ``["COCOEvaluator"]``.

    Raises:
        ValueError: a category lacks ``id`` or ``name``, uses id 0, or an id appears twice.
    """
    things = [{**c, "isthing": 1} for c in categories]
    space = LabelSpace.from_categories(things, label_divisor=INSTANCE_LABEL_DIVISOR)
    return {**space.as_metadata(), "evaluators": list(INSTANCE_EVALUATORS)}


def get_cityscapes_metadata() -> dict[str, Any]:
    """Cityscapes metadata over the 19 train ids, from ``cityscapesscripts`` labels.

    Original dataset ids are the train ids themselves, because the readers consume the
    ``*_labelTrainIds.png`` maps and ``cityscapes_panoptic_{split}_trainId.json`` whose
    category ids are train ids. Things are the labels with ``hasInstances`` and not
    ``ignoreInEval`` (train ids 11..18).

    Returns:
        Metadata fields as in :func:`get_coco_panoptic_metadata`, with ``label_divisor``
        1000, ``ignore_label`` 255, ``num_classes`` 19, plus ``label_id_to_train_id``
        (dict over every Cityscapes label id, 255 for ignored labels).
    """
    from cityscapesscripts.helpers.labels import labels, trainId2label

    train_labels = [trainId2label[t] for t in sorted(trainId2label) if 0 <= t < 255]
    thing_ids = [lb.trainId for lb in train_labels if lb.hasInstances and not lb.ignoreInEval]
    stuff_ids = [lb.trainId for lb in train_labels if lb.trainId not in thing_ids]
    space = LabelSpace(
        classes=[lb.name for lb in train_labels],
        colors=[lb.color for lb in train_labels],
        thing_ids=thing_ids,
        stuff_ids=stuff_ids,
        thing_dataset_ids=thing_ids,
        stuff_dataset_ids=stuff_ids,
        label_divisor=1000,
        ignore_label=255,
    )
    return {
        **space.as_metadata(),
        "label_id_to_train_id": {lb.id: lb.trainId for lb in labels if lb.id >= 0},
        "evaluators": list(PANOPTIC_EVALUATORS),
    }


def voc_colormap(n: int = 256) -> list[list[int]]:
    """The PASCAL VOC palette: colour ``i`` spreads the bits of ``i`` over R, G and B.

    Args:
        n: number of colours.

    Returns:
        ``n`` RGB triples; index 255 (the ignore border) is ``[224, 224, 192]``.
    """
    cmap = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            # Bits 0, 1, 2 of each triple go to the top (7 - j) bit of R, G, B.
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        cmap.append([r, g, b])
    return cmap


def get_sem_seg_metadata(
    classes: Sequence[str],
    colors: Sequence[Sequence[int]] | None = None,
    ignore_label: int = 255,
) -> dict[str, Any]:
    """Metadata of a semantic-only dataset whose PNG values are ``0..len(classes)-1``.

    Args:
        classes: class names indexed by label value.
        colors: RGB triples per class (default: the VOC palette).
        ignore_label: label value that is not evaluated.

    Returns:
        ``classes``, ``colors``, ``stuff_classes``, ``stuff_colors``, empty thing fields,
        ``stuff_dataset_id_to_contiguous_id`` (identity), ``ignore_label``, ``num_classes``,
        ``label_divisor`` (1, no instances) and ``evaluators`` (``SemSegEvaluator``).
    """
    colors = [list(c) for c in (colors or voc_colormap(len(classes)))]
    if len(colors) != len(classes):
        raise ValueError(f"Got {len(classes)} classes but {len(colors)} colours.")
    ids = range(len(classes))
    space = LabelSpace(
        classes=classes,
        colors=colors,
        thing_ids=(),
        stuff_ids=ids,
        thing_dataset_ids=(),
        stuff_dataset_ids=ids,
        label_divisor=1,
        ignore_label=ignore_label,
    )
    return {**space.as_metadata(), "evaluators": list(SEM_SEG_EVALUATORS)}


def get_voc_metadata() -> dict[str, Any]:
    """PASCAL VOC 2012 metadata: 21 classes (0 background .. 20 tvmonitor), ignore 255."""
    return get_sem_seg_metadata(_read_json_table("pascal_voc_classes.json"), voc_colormap(21))
