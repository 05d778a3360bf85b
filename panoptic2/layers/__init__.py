"""Building blocks shared by models: normalisation layers and shape specs."""

from .batch_norm import FrozenBatchNorm2d, NaiveSyncBatchNorm, get_norm
from .shape_spec import ShapeSpec

__all__ = ["FrozenBatchNorm2d", "NaiveSyncBatchNorm", "ShapeSpec", "get_norm"]
