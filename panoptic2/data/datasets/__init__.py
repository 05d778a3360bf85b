"""Dataset readers, metadata helpers and one-call registration of custom datasets.

Readers return Detectron2-compatible standard dicts with CONTIGUOUS category ids (see
``ARCHITECTURE.md``). The builtin names (COCO, Cityscapes, VOC, shapes) are registered by
:mod:`.builtin`, which ``panoptic2.data`` imports.
"""

from .cityscapes import load_cityscapes_instances, load_cityscapes_semantic
from .cityscapes_panoptic import load_cityscapes_panoptic
from .coco import load_coco_json, register_coco_instances
from .coco_panoptic import (
    get_panoptic_fpn_stuff_metadata,
    load_coco_panoptic_json,
    register_coco_panoptic,
    register_coco_panoptic_separated,
    separate_coco_semantic_from_panoptic,
)
from .metadata import (
    get_cityscapes_metadata,
    get_coco_instances_metadata,
    get_coco_panoptic_metadata,
    get_sem_seg_metadata,
    get_voc_metadata,
    load_coco_panoptic_categories,
    voc_colormap,
)
from .pascal_voc import convert_sbd_to_aug, load_voc_sem_seg, read_voc_label
from .sem_seg import load_sem_seg, register_sem_seg
from .validation import RecordReport, check_record, validate_dicts

__all__ = [
    "RecordReport",
    "check_record",
    "convert_sbd_to_aug",
    "get_cityscapes_metadata",
    "get_coco_instances_metadata",
    "get_coco_panoptic_metadata",
    "get_panoptic_fpn_stuff_metadata",
    "get_sem_seg_metadata",
    "get_voc_metadata",
    "load_cityscapes_instances",
    "load_cityscapes_panoptic",
    "load_cityscapes_semantic",
    "load_coco_json",
    "load_coco_panoptic_categories",
    "load_coco_panoptic_json",
    "load_sem_seg",
    "load_voc_sem_seg",
    "read_voc_label",
    "register_coco_instances",
    "register_coco_panoptic",
    "register_coco_panoptic_separated",
    "register_sem_seg",
    "separate_coco_semantic_from_panoptic",
    "validate_dicts",
    "voc_colormap",
]
