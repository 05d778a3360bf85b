"""Registry of ROI heads (box and mask heads of two-stage models) and builder."""

from torch import nn

from panoptic2.layers.shape_spec import ShapeSpec
from panoptic2.registry import ROI_HEADS_REGISTRY


def build_roi_heads(cfg, input_shape: dict[str, ShapeSpec], name: str) -> nn.Module:
    """Builds the ROI heads registered as ``name`` (the model's config chooses it)."""
    return ROI_HEADS_REGISTRY.get(name)(cfg, input_shape)
