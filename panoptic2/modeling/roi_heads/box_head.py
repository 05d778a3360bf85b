"""The box head of Fast/Mask R-CNN: optional 3x3 convs, then fully connected layers."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from panoptic2.config import configurable
from panoptic2.layers import Conv2d, ShapeSpec, c2_msra_fill, get_norm

__all__ = ["FastRCNNConvFCHead"]


class FastRCNNConvFCHead(nn.Module):
    """``num_conv`` 3x3 convs then ``num_fc`` fully connected layers, each with ReLU
    (Detectron2's ``FastRCNNConvFCHead``; the standard "2fc" head is ``num_fc=2, fc_dim=1024``).

    Args:
        input_shape: channels, height and width of the pooled region features.
        num_conv: number of 3x3 convs.
        conv_dim: channels of the convs.
        num_fc: number of fully connected layers.
        fc_dim: width of the fully connected layers.
        conv_norm: norm of the convs (``""`` for none).

    Shapes: ``forward`` takes (R, C, P, P) float and returns (R, fc_dim) float (or the
    flattened conv output when ``num_fc`` is 0). ``output_size`` is the feature width.
    """

    @configurable
    def __init__(
        self,
        input_shape: ShapeSpec,
        *,
        num_conv: int = 0,
        conv_dim: int = 256,
        num_fc: int = 2,
        fc_dim: int = 1024,
        conv_norm: str = "",
    ) -> None:
        super().__init__()
        if num_conv + num_fc == 0:
            raise ValueError("FastRCNNConvFCHead needs at least one conv or fully connected layer")
        channels, height, width = input_shape.channels, input_shape.height, input_shape.width
        self.convs = nn.ModuleList()
        for _ in range(num_conv):
            conv = Conv2d(
                channels,
                conv_dim,
                kernel_size=3,
                padding=1,
                bias=not conv_norm,
                norm=get_norm(conv_norm, conv_dim),
                activation=F.relu,
            )
            c2_msra_fill(conv)
            self.convs.append(conv)
            channels = conv_dim
        size = channels * height * width
        self.fcs = nn.ModuleList()
        for _ in range(num_fc):
            fc = nn.Linear(size, fc_dim)
            # Caffe2's XavierFill (Detectron2's c2_xavier_fill): uniform, fan_in, gain 1.
            nn.init.kaiming_uniform_(fc.weight, a=1)
            nn.init.constant_(fc.bias, 0)
            self.fcs.append(fc)
            size = fc_dim
        self.output_size = size

    @classmethod
    def from_config(cls, cfg: Any, input_shape: ShapeSpec) -> dict[str, Any]:
        head = cfg.MODEL.ROI_BOX_HEAD
        return {
            "input_shape": input_shape,
            "num_conv": head.NUM_CONV,
            "conv_dim": head.CONV_DIM,
            "num_fc": head.NUM_FC,
            "fc_dim": head.FC_DIM,
            "conv_norm": head.NORM,
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = conv(x)
        x = x.flatten(1)
        for fc in self.fcs:
            x = F.relu(fc(x))
        return x
