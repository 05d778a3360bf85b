"""Post-processing of model outputs into panoptic and instance predictions.

Panoptic-DeepLab's grouping and merge run in :mod:`panoptic2.ops`: the compiled
``panoptic2._C`` kernels (CPU, CUDA) when available, the equivalent PyTorch reference
otherwise.
"""

from .instances import INSTANCE_SCORE_RULES, get_instance_predictions
from .panoptic_deeplab import (
    find_instance_center,
    get_panoptic_segmentation,
    get_panoptic_segmentation_batched,
    group_pixels,
    merge_semantic_and_instance,
    panoptic_from_maps,
)

__all__ = [
    "INSTANCE_SCORE_RULES",
    "find_instance_center",
    "get_instance_predictions",
    "get_panoptic_segmentation",
    "get_panoptic_segmentation_batched",
    "group_pixels",
    "merge_semantic_and_instance",
    "panoptic_from_maps",
]
