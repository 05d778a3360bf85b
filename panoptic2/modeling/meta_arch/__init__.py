from .build import META_ARCH_REGISTRY, build_model, resolve_device
from .panoptic_deeplab import PanopticDeepLab
from .panoptic_fpn import PanopticFPN, sem_seg_postprocess
from .panoptic_fpn_fusion import combine_semantic_and_instance_outputs
from .rcnn import GeneralizedRCNN, detector_postprocess, label_space

__all__ = [
    "GeneralizedRCNN",
    "PanopticFPN",
    "combine_semantic_and_instance_outputs",
    "detector_postprocess",
    "label_space",
    "sem_seg_postprocess",
    "PanopticDeepLab",
    "META_ARCH_REGISTRY",
    "build_model",
    "resolve_device",
]
