"""Backbone registry and builder."""

from fvcore.common.registry import Registry

from panoptic2.layers.shape_spec import ShapeSpec

from .backbone import Backbone

BACKBONE_REGISTRY = Registry("BACKBONE")
BACKBONE_REGISTRY.__doc__ = """
Backbones, by name. A registered object is called as ``obj(cfg, input_shape)`` and must
return a :class:`Backbone`. ``cfg.MODEL.BACKBONE.NAME`` selects one.
"""


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
