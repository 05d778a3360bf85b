"""Containers shared by data and models: image batches, boxes, masks, instances.

They follow Detectron2's ``detectron2.structures`` so that code ported from Detectron2 keeps
working: :class:`ImageList`, :class:`BoxMode`, :class:`Boxes`, :func:`pairwise_iou`,
:class:`BitMasks`, :func:`masks_to_boxes`, :func:`mask_to_xywh` and :class:`Instances`.
"""

from .boxes import Boxes, BoxMode, pairwise_iou
from .image_list import ImageList
from .instances import Instances
from .masks import BitMasks, mask_to_xywh, masks_to_boxes

__all__ = [
    "BitMasks",
    "BoxMode",
    "Boxes",
    "ImageList",
    "Instances",
    "mask_to_xywh",
    "masks_to_boxes",
    "pairwise_iou",
]
