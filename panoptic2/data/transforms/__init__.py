"""Augmentations and transforms applied consistently to images, label maps, boxes and masks."""

from fvcore.transforms.transform import (
    BlendTransform,
    CropTransform,
    HFlipTransform,
    NoOpTransform,
    Transform,
    TransformList,
    VFlipTransform,
)

from .augmentation import AugInput, Augmentation, AugmentationList, apply_augmentations
from .augmentation_impl import (
    ColorJitter,
    PadToDivisibility,
    RandomBrightness,
    RandomContrast,
    RandomCrop,
    RandomCrop_CategoryAreaConstraint,
    RandomFlip,
    RandomSaturation,
    RandomScale,
    ResizeShortestEdge,
)
from .build import build_augmentation
from .transform import PadTransform, ResizeTransform, apply_label, nearest_resize

__all__ = [
    "AugInput",
    "Augmentation",
    "AugmentationList",
    "BlendTransform",
    "ColorJitter",
    "CropTransform",
    "HFlipTransform",
    "NoOpTransform",
    "PadToDivisibility",
    "PadTransform",
    "RandomBrightness",
    "RandomContrast",
    "RandomCrop",
    "RandomCrop_CategoryAreaConstraint",
    "RandomFlip",
    "RandomSaturation",
    "RandomScale",
    "ResizeShortestEdge",
    "ResizeTransform",
    "Transform",
    "TransformList",
    "VFlipTransform",
    "apply_augmentations",
    "apply_label",
    "build_augmentation",
    "nearest_resize",
]
