"""Registries of dense prediction heads (semantic and instance-embedding) and builders."""

from torch import nn

from panoptic2.layers.shape_spec import ShapeSpec
from panoptic2.registry import INS_EMBED_HEADS_REGISTRY, SEM_SEG_HEADS_REGISTRY


def build_sem_seg_head(cfg, input_shape: dict[str, ShapeSpec]) -> nn.Module:
    """Builds the semantic head named by ``cfg.MODEL.SEM_SEG_HEAD.NAME``."""
    return SEM_SEG_HEADS_REGISTRY.get(cfg.MODEL.SEM_SEG_HEAD.NAME)(cfg, input_shape)


def build_ins_embed_head(cfg, input_shape: dict[str, ShapeSpec]) -> nn.Module:
    """Builds the instance-embedding head named by ``cfg.MODEL.INS_EMBED_HEAD.NAME``."""
    return INS_EMBED_HEADS_REGISTRY.get(cfg.MODEL.INS_EMBED_HEAD.NAME)(cfg, input_shape)
