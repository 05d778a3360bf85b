"""Switchable Atrous Convolution (SAC), as DeepLab2 uses it in SWideRNet.

Reference: Qiao, Chen, Yuille, "DetectoRS: Detecting Objects with Recursive Feature Pyramid
and Switchable Atrous Convolution", CVPR 2021; DeepLab2's ``Conv2DSame`` with
``use_switchable_atrous_conv`` and ``use_global_context_in_sac``.

One set of weights is applied at two atrous rates, ``d`` and ``3 d``, and the two results are
mixed per pixel by a learned switch ``s`` (not squashed to [0, 1], as in DeepLab2)::

    s   = conv1x1(avg_pool5x5(x))                     # 1 channel, at the output stride
    out = s * conv(x, rate 3 d) + (1 - s) * conv(x, rate d)

A global-context module (global average pool -> 1x1 conv with bias -> broadcast add) runs
before and after. The switch and both context convs start at zero, so an untrained SAC equals
a plain convolution. As in DeepLab2, a strided SAC has no switch (plain convolution) but keeps
its global-context modules.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from .conv import c2_msra_fill

__all__ = ["GlobalContext", "SAConv2d"]

# Rate ratio of the large branch, and the switch's pooling window (DeepLab2's values).
_LARGE_RATE_FACTOR = 3
_SWITCH_POOL_SIZE = 5


class GlobalContext(nn.Module):
    """``x + conv1x1(global_avg_pool(x))``; the 1x1 conv starts at zero (identity at init).

    Args:
        channels: number of channels ``C`` of the (N, C, H, W) input.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=1, bias=True)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x.mean(dim=(2, 3), keepdim=True))


class SAConv2d(nn.Module):
    """A square convolution with a switchable atrous rate, plus norm and activation.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: odd kernel size (padding keeps ``ceil(size / stride)``).
        stride: 1 or 2; with a stride the switch is dropped (DeepLab2 does the same).
        dilation: the small atrous rate ``d``; the large one is ``3 d``.
        use_global_context: add the pre- and post-global-context modules.
        norm: module applied after the convolution, or None. Stored as ``self.norm``.
        activation: callable applied last, or None.

    Shapes: (N, in_channels, H, W) float -> (N, out_channels, ceil(H / stride),
    ceil(W / stride)) float.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        *,
        stride: int = 1,
        dilation: int = 1,
        use_global_context: bool = True,
        norm: nn.Module | None = None,
        activation: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"SAConv2d needs an odd kernel size, got {kernel_size}")
        self.stride = stride
        self.dilation = dilation
        self.kernel_size = kernel_size
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        c2_msra_fill(self)
        self.switch: nn.Conv2d | None = None
        if stride == 1:
            self.switch = nn.Conv2d(in_channels, 1, kernel_size=1, bias=True)
            nn.init.zeros_(self.switch.weight)
            nn.init.zeros_(self.switch.bias)
        self.pre_context = GlobalContext(in_channels) if use_global_context else None
        self.post_context = GlobalContext(out_channels) if use_global_context else None
        self.norm = norm
        self.activation = activation

    def _conv(self, x: torch.Tensor, rate: int) -> torch.Tensor:
        pad = rate * (self.kernel_size - 1) // 2
        return F.conv2d(x, self.weight, None, self.stride, pad, rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pre_context is not None:
            x = self.pre_context(x)
        out = self._conv(x, self.dilation)
        if self.switch is not None:
            # TF "same" average pooling averages over valid pixels only.
            pooled = F.avg_pool2d(
                x,
                _SWITCH_POOL_SIZE,
                stride=1,
                padding=_SWITCH_POOL_SIZE // 2,
                count_include_pad=False,
            )
            s = self.switch(pooled)
            large = self._conv(x, self.dilation * _LARGE_RATE_FACTOR)
            out = s * large + (1 - s) * out
        if self.post_context is not None:
            out = self.post_context(out)
        if self.norm is not None:
            out = self.norm(out)
        if self.activation is not None:
            out = self.activation(out)
        return out

    def extra_repr(self) -> str:
        out_c, in_c, k, _ = self.weight.shape
        return f"{in_c}, {out_c}, kernel_size={k}, stride={self.stride}, dilation={self.dilation}"
