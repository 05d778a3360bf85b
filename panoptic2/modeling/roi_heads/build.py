"""Registry of ROI heads (box and mask heads of two-stage models) and builder."""

from fvcore.common.registry import Registry
from torch import nn

from panoptic2.layers.shape_spec import ShapeSpec

ROI_HEADS_REGISTRY = Registry("ROI_HEADS")
ROI_HEADS_REGISTRY.__doc__ = """
ROI heads, called as ``obj(cfg, input_shape)`` with the backbone feature shapes by name.
"""


def build_roi_heads(cfg, input_shape: dict[str, ShapeSpec], name: str) -> nn.Module:
    """Builds the ROI heads registered as ``name`` (the model's config chooses it)."""
    return ROI_HEADS_REGISTRY.get(name)(cfg, input_shape)
