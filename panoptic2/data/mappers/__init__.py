"""Dataset mappers (registered in ``DATA_MAPPER_REGISTRY``) and target generators."""

from .base import SegmentationMapperBase, train_metadata
from .panoptic_deeplab import PanopticDeepLabMapper
from .panoptic_deeplab_targets import (
    PanopticDeepLabTargetGenerator,
    panoptic_deeplab_targets_reference,
)
from .panoptic_fpn import PanopticFPNMapper, annotation_to_mask, masks_to_boxes
from .reading import (
    check_label_size,
    panoptic_from_segments,
    read_image,
    read_panoptic_label,
    read_sem_seg,
    rgb2id,
)
from .semantic_seg import SemanticSegmentationMapper

__all__ = [
    "PanopticDeepLabMapper",
    "PanopticDeepLabTargetGenerator",
    "PanopticFPNMapper",
    "SegmentationMapperBase",
    "SemanticSegmentationMapper",
    "annotation_to_mask",
    "check_label_size",
    "masks_to_boxes",
    "panoptic_from_segments",
    "panoptic_deeplab_targets_reference",
    "read_image",
    "read_panoptic_label",
    "read_sem_seg",
    "rgb2id",
    "train_metadata",
]
