"""Models: backbones, heads and meta-architectures, each family behind a registry."""

from panoptic2.layers.shape_spec import ShapeSpec

from .anchor_generator import (
    ANCHOR_GENERATOR_REGISTRY,
    DefaultAnchorGenerator,
    build_anchor_generator,
)
from .backbone import BACKBONE_REGISTRY, Backbone, build_backbone
from .box_regression import Box2BoxTransform
from .compile import COMPILE_MODES, compile_model
from .heads import (
    INS_EMBED_HEADS_REGISTRY,
    SEM_SEG_HEADS_REGISTRY,
    build_ins_embed_head,
    build_sem_seg_head,
)
from .losses import DeepLabCE, center_mse_loss, deeplab_ce_loss, offset_l1_loss
from .matcher import Matcher
from .meta_arch import META_ARCH_REGISTRY, build_model
from .proposal_generator import PROPOSAL_GENERATOR_REGISTRY, build_proposal_generator
from .roi_heads import ROI_HEADS_REGISTRY, build_roi_heads
from .sampling import subsample_labels

__all__ = [
    "ANCHOR_GENERATOR_REGISTRY",
    "Box2BoxTransform",
    "COMPILE_MODES",
    "compile_model",
    "DefaultAnchorGenerator",
    "Matcher",
    "build_anchor_generator",
    "subsample_labels",
    "DeepLabCE",
    "center_mse_loss",
    "deeplab_ce_loss",
    "offset_l1_loss",
    "BACKBONE_REGISTRY",
    "INS_EMBED_HEADS_REGISTRY",
    "META_ARCH_REGISTRY",
    "PROPOSAL_GENERATOR_REGISTRY",
    "ROI_HEADS_REGISTRY",
    "SEM_SEG_HEADS_REGISTRY",
    "Backbone",
    "ShapeSpec",
    "build_backbone",
    "build_ins_embed_head",
    "build_model",
    "build_proposal_generator",
    "build_roi_heads",
    "build_sem_seg_head",
]
