from .box_head import FastRCNNConvFCHead
from .build import ROI_HEADS_REGISTRY, build_roi_heads
from .fast_rcnn import FastRCNNOutputLayers, fast_rcnn_inference_single_image
from .mask_head import (
    MaskRCNNConvUpsampleHead,
    mask_rcnn_inference,
    mask_rcnn_loss,
    mask_targets,
    paste_masks_in_image,
)
from .roi_heads import ROIPooler, StandardROIHeads, assign_boxes_to_levels

__all__ = [
    "ROI_HEADS_REGISTRY",
    "FastRCNNConvFCHead",
    "FastRCNNOutputLayers",
    "MaskRCNNConvUpsampleHead",
    "ROIPooler",
    "StandardROIHeads",
    "assign_boxes_to_levels",
    "build_roi_heads",
    "fast_rcnn_inference_single_image",
    "mask_rcnn_inference",
    "mask_rcnn_loss",
    "mask_targets",
    "paste_masks_in_image",
]
