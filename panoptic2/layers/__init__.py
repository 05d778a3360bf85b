"""Building blocks shared by models: convolutions, normalisation layers, shape specs."""

from .argmax import argmax_over_classes
from .aspp import ASPP
from .batch_norm import FrozenBatchNorm2d, NaiveSyncBatchNorm, get_norm
from .conv import Conv2d, c2_msra_fill
from .deeplab_blocks import DeepLabV3PlusDecoder
from .resize import interpolation_matrix, resize_bilinear
from .sac import GlobalContext, SAConv2d
from .separable_conv import DepthwiseSeparableConv2d
from .shape_spec import ShapeSpec

__all__ = [
    "ASPP",
    "DeepLabV3PlusDecoder",
    "DepthwiseSeparableConv2d",
    "Conv2d",
    "FrozenBatchNorm2d",
    "GlobalContext",
    "NaiveSyncBatchNorm",
    "SAConv2d",
    "ShapeSpec",
    "argmax_over_classes",
    "c2_msra_fill",
    "get_norm",
    "interpolation_matrix",
    "resize_bilinear",
]
