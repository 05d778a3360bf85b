"""Conversions between panoptic2's conventions and those of other libraries."""

from .detectron2 import to_detectron2_instances, to_detectron2_outputs, to_detectron2_panoptic

__all__ = ["to_detectron2_instances", "to_detectron2_outputs", "to_detectron2_panoptic"]
