"""Optimizers, gradient clipping and learning-rate schedules."""

from .build import (
    OPTIMIZER_REGISTRY,
    build_lr_scheduler,
    build_optimizer,
    clip_gradients,
    get_default_optimizer_params,
    norm_module_types,
)
from .lr_scheduler import (
    LR_SCHEDULER_REGISTRY,
    LRMultiplier,
    PolyParamScheduler,
    WarmupParamScheduler,
)

__all__ = [
    "LR_SCHEDULER_REGISTRY",
    "OPTIMIZER_REGISTRY",
    "LRMultiplier",
    "PolyParamScheduler",
    "WarmupParamScheduler",
    "build_lr_scheduler",
    "build_optimizer",
    "clip_gradients",
    "get_default_optimizer_params",
    "norm_module_types",
]
