"""Backbone registry and builder."""

from panoptic2.layers.shape_spec import ShapeSpec
from panoptic2.registry import BACKBONE_REGISTRY

from .backbone import Backbone


def build_backbone(cfg, input_shape: ShapeSpec | None = None) -> Backbone:
    """Builds the backbone named by ``cfg.MODEL.BACKBONE.NAME``.

    Args:
        cfg: the config.
        input_shape: shape of the input images; defaults to ``len(cfg.MODEL.PIXEL_MEAN)``
            channels.

    Returns:
        The backbone, an instance of :class:`Backbone`.
    """
    if input_shape is None:
        input_shape = ShapeSpec(channels=len(cfg.MODEL.PIXEL_MEAN))
    backbone = BACKBONE_REGISTRY.get(cfg.MODEL.BACKBONE.NAME)(cfg, input_shape)
    if not isinstance(backbone, Backbone):
        raise TypeError(
            f"Backbone {cfg.MODEL.BACKBONE.NAME!r} returned {type(backbone).__name__}, "
            "which is not a panoptic2.modeling.Backbone"
        )
    return backbone
