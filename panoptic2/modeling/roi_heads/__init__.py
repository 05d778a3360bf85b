from .build import ROI_HEADS_REGISTRY, build_roi_heads

__all__ = ["ROI_HEADS_REGISTRY", "build_roi_heads"]
