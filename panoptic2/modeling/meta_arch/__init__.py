from .build import META_ARCH_REGISTRY, build_model, resolve_device
from .panoptic_deeplab import PanopticDeepLab

__all__ = ["PanopticDeepLab", "META_ARCH_REGISTRY", "build_model", "resolve_device"]
