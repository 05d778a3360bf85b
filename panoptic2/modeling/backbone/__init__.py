from .backbone import Backbone
from .build import BACKBONE_REGISTRY, build_backbone

__all__ = ["BACKBONE_REGISTRY", "Backbone", "build_backbone"]
