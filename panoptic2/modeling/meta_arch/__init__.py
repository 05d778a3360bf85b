from .base import LabelSpaceMixin, preprocess_images, sem_seg_postprocess
from .build import META_ARCH_REGISTRY, build_model, resolve_device
from .panoptic_deeplab import PanopticDeepLab
from .panoptic_fpn import PanopticFPN
from .panoptic_fpn_fusion import combine_semantic_and_instance_outputs
from .rcnn import GeneralizedRCNN, detector_postprocess

__all__ = [
    "GeneralizedRCNN",
    "LabelSpaceMixin",
    "preprocess_images",
    "PanopticFPN",
    "combine_semantic_and_instance_outputs",
    "detector_postprocess",
    "sem_seg_postprocess",
    "PanopticDeepLab",
    "META_ARCH_REGISTRY",
    "build_model",
    "resolve_device",
]
