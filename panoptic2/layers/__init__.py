"""Building blocks shared by models: convolutions, normalisation layers, shape specs."""

from .batch_norm import FrozenBatchNorm2d, NaiveSyncBatchNorm, get_norm
from .conv import Conv2d, c2_msra_fill
from .sac import GlobalContext, SAConv2d
from .shape_spec import ShapeSpec

__all__ = [
    "Conv2d",
    "FrozenBatchNorm2d",
    "GlobalContext",
    "NaiveSyncBatchNorm",
    "SAConv2d",
    "ShapeSpec",
    "c2_msra_fill",
    "get_norm",
]
