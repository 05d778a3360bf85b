"""A 2D convolution that carries its own normalization and activation (Detectron2's ``Conv2d``).

Keeping the norm layer *inside* the convolution module gives parameter names such as
``res2.0.conv1.weight`` / ``res2.0.conv1.norm.weight``: the names of Detectron2's model zoo,
which the weight converters in :mod:`panoptic2.checkpoint.weight_conversion` target.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from .batch_norm import get_norm

__all__ = ["Conv2d", "c2_msra_fill", "conv3x3_norm_relu"]


class Conv2d(nn.Conv2d):
    """``torch.nn.Conv2d`` followed by an optional norm layer and activation.

    Same arguments as ``torch.nn.Conv2d``, plus:

    Args:
        norm: a module applied after the convolution (e.g. from
            :func:`panoptic2.layers.get_norm`), or None. Stored as ``self.norm``.
        activation: a callable applied last (e.g. ``F.relu``), or None. ``F.relu`` runs in
            place (``F.relu_``): the conv's or norm's output is a fresh tensor that no
            backward needs, and a new (N, C, H, W) tensor per layer costs its allocation.

    Shapes: input (N, C_in, H, W) float -> output (N, C_out, H', W') float, with H', W' as
    for ``torch.nn.Conv2d``.
    """

    def __init__(
        self,
        *args,
        norm: nn.Module | None = None,
        activation: Callable[[torch.Tensor], torch.Tensor] | None = None,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.norm = norm
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(
            x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups
        )
        if self.norm is not None:
            x = self.norm(x)
        if self.activation is F.relu:
            x = F.relu_(x)
        elif self.activation is not None:
            x = self.activation(x)
        return x


def c2_msra_fill(module: nn.Module) -> None:
    """He (MSRA) initialization as Caffe2 does it: normal, fan_out, ReLU gain; zero bias.

    Args:
        module: a module with ``weight`` (and optionally ``bias``), e.g. a conv layer.
    """
    nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    if getattr(module, "bias", None) is not None:
        nn.init.constant_(module.bias, 0)


def conv3x3_norm_relu(
    in_channels: int,
    out_channels: int,
    norm: str | Callable[[int], nn.Module] | None,
) -> Conv2d:
    """A 3x3 conv (padding 1) + norm + ReLU, MSRA-initialized: the unit of the heads' towers.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        norm: a :func:`panoptic2.layers.get_norm` name or factory; the conv has a bias
            only without a norm.

    Returns:
        The conv; (N, in_channels, H, W) -> (N, out_channels, H, W).
    """
    conv = Conv2d(
        in_channels,
        out_channels,
        kernel_size=3,
        padding=1,
        bias=not norm,
        norm=get_norm(norm, out_channels),
        activation=F.relu,
    )
    c2_msra_fill(conv)
    return conv
