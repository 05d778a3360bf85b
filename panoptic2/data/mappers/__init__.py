"""Dataset mappers (registered in ``DATA_MAPPER_REGISTRY``) and target generators."""

from .base import SegmentationMapperBase, mapper_label_space
from .panoptic_deeplab import PanopticDeepLabMapper
from .panoptic_deeplab_targets import PanopticDeepLabTargetGenerator
from .panoptic_fpn import PanopticFPNMapper, annotation_to_mask
from .semantic_seg import SemanticSegmentationMapper

__all__ = [
    "PanopticDeepLabMapper",
    "PanopticDeepLabTargetGenerator",
    "PanopticFPNMapper",
    "SegmentationMapperBase",
    "SemanticSegmentationMapper",
    "annotation_to_mask",
    "mapper_label_space",
]
