"""Meta-architecture registry and the model builder."""

import logging

import torch
from torch import nn

from panoptic2.registry import META_ARCH_REGISTRY
from panoptic2.utils.xla import xla_device

from ..compile import compile_model

logger = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    """Turns ``MODEL.DEVICE`` into a device: "auto" means CUDA when available, else CPU.

    "xla" is resolved by ``torch_xla`` (imported only when asked for), so nothing here
    requires CUDA or XLA to be installed.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "xla":
        return xla_device()
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"MODEL.DEVICE is {name!r} but CUDA is not available; use MODEL.DEVICE cpu or auto"
        )
    return device


def build_model(cfg) -> nn.Module:
    """Builds the model named by ``cfg.MODEL.META_ARCHITECTURE`` on ``cfg.MODEL.DEVICE``,
    compiled in place with ``MODEL.COMPILE`` (see :func:`panoptic2.modeling.compile_model`).

    Weights are not loaded here; use :class:`panoptic2.checkpoint.Checkpointer`.
    """
    model = META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE)(cfg)
    model.to(resolve_device(cfg.MODEL.DEVICE))
    logger.debug("Model:\n%s", model)
    if cfg.MODEL.COMPILE:
        compile_model(
            model,
            mode=cfg.MODEL.COMPILE_MODE,
            backend=cfg.MODEL.COMPILE_BACKEND,
            freeze=cfg.MODEL.COMPILE_FREEZE,
        )
    return model
