"""Atrous Spatial Pyramid Pooling (DeepLabV3), the context module of every DeepLab head."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .batch_norm import get_norm
from .conv import Conv2d, c2_msra_fill
from .resize import resize_bilinear
from .separable_conv import DepthwiseSeparableConv2d

__all__ = ["ASPP"]


class ASPP(nn.Module):
    """ASPP: a 1x1 conv, one 3x3 atrous conv per rate, and image pooling, concatenated and
    projected by a 1x1 conv, then dropout.

    As in DeepLabV3 and Detectron2's ``ASPP`` (same submodule names: ``convs.0`` .. ``convs.4``
    and ``project``). The image-pooling branch has no norm layer: its spatial size is 1x1, so
    batch statistics would be degenerate with small batches (Detectron2 does the same).

    Args:
        in_channels: channels ``C_in`` of the input feature.
        out_channels: channels ``C_out`` of every branch and of the output.
        dilations: atrous rates of the 3x3 branches (DeepLab uses 3 rates, e.g. (6, 12, 18)
            at output stride 16, (3, 6, 9) at 32).
        norm: norm of every branch but the pooling one and of the projection (a
            :func:`get_norm` name or callable; "" or None for none).
        activation: activation of every branch and of the projection.
        pool_kernel_size: (h, w) of the average pooling of the image-pooling branch (stride
            1), e.g. the training crop divided by the output stride, so that inference on
            larger images pools over the same extent as training; None pools globally. An
            input smaller than the kernel is pooled globally.
        dropout: dropout probability after the projection (training only).
        use_depthwise_separable_conv: atrous branches as depthwise-separable convolutions.

    Shapes: (N, C_in, H, W) float -> (N, C_out, H, W) float.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        dilations: Sequence[int],
        *,
        norm: str | Callable[[int], nn.Module] | None,
        activation: Callable[[torch.Tensor], torch.Tensor] = F.relu,
        pool_kernel_size: Sequence[int] | None = None,
        dropout: float = 0.0,
        use_depthwise_separable_conv: bool = False,
    ) -> None:
        super().__init__()
        if len(dilations) == 0:
            raise ValueError("ASPP needs at least one atrous rate, got an empty list")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"ASPP dropout must be in [0, 1), got {dropout}")
        self.dilations = [int(d) for d in dilations]
        self.pool_kernel_size = None if pool_kernel_size is None else tuple(pool_kernel_size)
        self.dropout = float(dropout)
        use_bias = not norm

        convs = [
            Conv2d(
                in_channels,
                out_channels,
                kernel_size=1,
                bias=use_bias,
                norm=get_norm(norm, out_channels),
                activation=activation,
            )
        ]
        c2_msra_fill(convs[0])
        for d in self.dilations:
            if use_depthwise_separable_conv:
                convs.append(
                    DepthwiseSeparableConv2d(
                        in_channels,
                        out_channels,
                        kernel_size=3,
                        dilation=d,
                        norm1=norm,
                        activation1=activation,
                        norm2=norm,
                        activation2=activation,
                    )
                )
            else:
                conv = Conv2d(
                    in_channels,
                    out_channels,
                    kernel_size=3,
                    padding=d,
                    dilation=d,
                    bias=use_bias,
                    norm=get_norm(norm, out_channels),
                    activation=activation,
                )
                c2_msra_fill(conv)
                convs.append(conv)
        pool_conv = Conv2d(
            in_channels, out_channels, kernel_size=1, bias=True, activation=activation
        )
        c2_msra_fill(pool_conv)
        convs.append(nn.Sequential(nn.AdaptiveAvgPool2d(1), pool_conv))
        self.convs = nn.ModuleList(convs)
        self.project = Conv2d(
            len(convs) * out_channels,
            out_channels,
            kernel_size=1,
            bias=use_bias,
            norm=get_norm(norm, out_channels),
            activation=activation,
        )
        c2_msra_fill(self.project)

    def _image_pooling(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        pool = self.convs[-1]
        kernel = self.pool_kernel_size
        if kernel is None or size[0] < kernel[0] or size[1] < kernel[1]:
            pooled = pool(x)
        else:
            pooled = pool[1](F.avg_pool2d(x, kernel, stride=1))
        return resize_bilinear(pooled, size=size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args:
            x: (N, C_in, H, W) float feature.

        Returns:
            (N, C_out, H, W) float.
        """
        branches = [conv(x) for conv in self.convs[:-1]]
        branches.append(self._image_pooling(x))
        out = self.project(torch.cat(branches, dim=1))
        return F.dropout(out, self.dropout, training=self.training)
