"""Dataset mappers (registered in ``DATA_MAPPER_REGISTRY``) and target generators."""

from .base import SegmentationMapperBase, mapper_label_space
from .detection import DatasetMapper, DetectionMapper
from .instance_annotations import annotation_boxes, annotation_masks, annotation_to_mask
from .panoptic_deeplab import PanopticDeepLabMapper
from .panoptic_deeplab_targets import PanopticDeepLabTargetGenerator
from .panoptic_fpn import PanopticFPNMapper
from .semantic_seg import SemanticSegmentationMapper

__all__ = [
    "DatasetMapper",
    "DetectionMapper",
    "PanopticDeepLabMapper",
    "PanopticDeepLabTargetGenerator",
    "PanopticFPNMapper",
    "SegmentationMapperBase",
    "SemanticSegmentationMapper",
    "annotation_boxes",
    "annotation_masks",
    "annotation_to_mask",
    "mapper_label_space",
]
