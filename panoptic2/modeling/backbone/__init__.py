"""Backbones: the contract, the registry, and the registered families."""

from .backbone import Backbone
from .build import BACKBONE_REGISTRY, build_backbone
from .fpn import FPN, build_resnet_fpn_backbone
from .mobilenet import MobileNetV3, build_mobilenetv3_backbone
from .resnet import (
    BasicBlock,
    BasicStem,
    BottleneckBlock,
    DeepLabStem,
    ResNet,
    build_resnet_backbone,
)
from .swidernet import SWideRNet, build_swidernet_backbone

__all__ = [
    "BACKBONE_REGISTRY",
    "Backbone",
    "BasicBlock",
    "BasicStem",
    "BottleneckBlock",
    "DeepLabStem",
    "FPN",
    "MobileNetV3",
    "ResNet",
    "SWideRNet",
    "build_backbone",
    "build_mobilenetv3_backbone",
    "build_resnet_backbone",
    "build_resnet_fpn_backbone",
    "build_swidernet_backbone",
]
