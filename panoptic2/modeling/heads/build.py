"""Registries of dense prediction heads (semantic and instance-embedding) and builders."""

from fvcore.common.registry import Registry
from torch import nn

from panoptic2.layers.shape_spec import ShapeSpec

SEM_SEG_HEADS_REGISTRY = Registry("SEM_SEG_HEADS")
SEM_SEG_HEADS_REGISTRY.__doc__ = """
Semantic segmentation heads, called as ``obj(cfg, input_shape)`` where ``input_shape`` maps
backbone feature names to :class:`ShapeSpec`. ``cfg.MODEL.SEM_SEG_HEAD.NAME`` selects one.
"""

INS_EMBED_HEADS_REGISTRY = Registry("INS_EMBED_HEADS")
INS_EMBED_HEADS_REGISTRY.__doc__ = """
Instance-embedding heads (e.g. Panoptic-DeepLab's center and offset branches), called as
``obj(cfg, input_shape)``. ``cfg.MODEL.INS_EMBED_HEAD.NAME`` selects one.
"""


def build_sem_seg_head(cfg, input_shape: dict[str, ShapeSpec]) -> nn.Module:
    """Builds the semantic head named by ``cfg.MODEL.SEM_SEG_HEAD.NAME``."""
    return SEM_SEG_HEADS_REGISTRY.get(cfg.MODEL.SEM_SEG_HEAD.NAME)(cfg, input_shape)


def build_ins_embed_head(cfg, input_shape: dict[str, ShapeSpec]) -> nn.Module:
    """Builds the instance-embedding head named by ``cfg.MODEL.INS_EMBED_HEAD.NAME``."""
    return INS_EMBED_HEADS_REGISTRY.get(cfg.MODEL.INS_EMBED_HEAD.NAME)(cfg, input_shape)
