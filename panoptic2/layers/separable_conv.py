"""Depthwise-separable convolution (depthwise KxK + pointwise 1x1), as in DeepLab / MobileNet."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .batch_norm import get_norm
from .conv import Conv2d, c2_msra_fill

__all__ = ["DepthwiseSeparableConv2d"]

Activation = Callable[[torch.Tensor], torch.Tensor]


class DepthwiseSeparableConv2d(nn.Module):
    """A depthwise KxK conv (+ norm1, activation1), then a pointwise 1x1 conv (+ norm2,
    activation2).

    Panoptic-DeepLab replaces two stacked 3x3 convolutions by one 5x5 depthwise-separable
    convolution: same receptive field, far fewer multiply-adds. Submodule names
    (``depthwise``, ``pointwise``) follow Detectron2 so its checkpoints load by name.

    Args:
        in_channels: input channels ``C_in``.
        out_channels: output channels ``C_out``.
        kernel_size: depthwise kernel size.
        padding: depthwise padding (``kernel_size // 2 * dilation`` keeps the size).
        dilation: depthwise dilation.
        norm1: norm of the depthwise output (a :func:`get_norm` name or callable, or None).
        activation1: activation after ``norm1``, or None.
        norm2: norm of the pointwise output.
        activation2: activation after ``norm2``, or None.

    Shapes: (N, C_in, H, W) float -> (N, C_out, H', W') float (H' = H with the default
    padding and stride 1).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        padding: int | None = None,
        dilation: int = 1,
        *,
        norm1: str | Callable[[int], nn.Module] | None = None,
        activation1: Activation | None = None,
        norm2: str | Callable[[int], nn.Module] | None = None,
        activation2: Activation | None = None,
    ) -> None:
        super().__init__()
        if padding is None:
            padding = kernel_size // 2 * dilation
        # A conv followed by a norm needs no bias (the norm's shift replaces it).
        self.depthwise = Conv2d(
            in_channels,
            in_channels,
            kernel_size=kernel_size,
            padding=padding,
            dilation=dilation,
            groups=in_channels,
            bias=not norm1,
            norm=get_norm(norm1, in_channels),
            activation=activation1,
        )
        self.pointwise = Conv2d(
            in_channels,
            out_channels,
            kernel_size=1,
            bias=not norm2,
            norm=get_norm(norm2, out_channels),
            activation=activation2,
        )
        c2_msra_fill(self.depthwise)
        c2_msra_fill(self.pointwise)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args:
            x: (N, C_in, H, W) float.

        Returns:
            (N, C_out, H', W') float.
        """
        return self.pointwise(self.depthwise(x))
