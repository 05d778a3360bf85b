"""ResNet backbones (ResNet-18/34/50/101/152 and ResNet-50-Beta) with atrous output strides.

Parameter names follow Detectron2 (``stem.conv1.weight``, ``stem.conv1.norm.weight``,
``res2.0.conv1.weight``, ``res2.0.shortcut.norm.bias``, ...), so the ``torchvision_resnet``
and ``caffe2`` converters of :mod:`panoptic2.checkpoint.weight_conversion` load torchvision
state dicts and Detectron2 / Caffe2 ``.pkl`` files into it.

Design notes:

* The blocks are written here rather than reused from torchvision: torchvision's
  ``Bottleneck`` names its layers ``bn1``/``downsample.0`` (not Detectron2's) and hard-codes
  a dilation for the whole block, which multi-grid needs per block. The arithmetic is the
  same as torchvision's, so a torchvision ResNet and ours have the same parameter count.
* ``stride_in_1x1=False`` (default) strides in the 3x3 conv as torchvision and DeepLab2 do;
  ``True`` strides in the first 1x1 as MSRA / Detectron2 ImageNet weights expect.
* Output stride 16 dilates res5 (rate 2, no stride), output stride 8 dilates res4 (rate 2)
  and res5 (rate 4). Every block of a dilated stage uses the stage rate times its
  multi-grid factor (DeepLabV3 and Detectron2's DeepLab project), so ``RES5_MULTI_GRID
  (1, 2, 4)`` at output stride 16 gives rates 2, 4, 8.
* ``stem_type="deeplab"`` is ResNet-Beta's "Inception" stem of DeepLab2's
  ``resnet50_beta``: three 3x3 convs (64, 64, 128 channels for ``stem_out_channels=128``),
  the first with stride 2, then the 3x3 max pool. DeepLab2 instead moves the max pool's
  stride into the first block of res2; that changes no parameter and no output shape.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from panoptic2.config import configurable
from panoptic2.layers import ShapeSpec, get_norm
from panoptic2.layers.conv import Conv2d, c2_msra_fill

from .backbone import Backbone
from .build import BACKBONE_REGISTRY

__all__ = [
    "BasicBlock",
    "BasicStem",
    "BottleneckBlock",
    "DeepLabStem",
    "ResNet",
    "build_resnet_backbone",
]

logger = logging.getLogger(__name__)

# Blocks per stage (res2..res5) for each depth, as in the ResNet paper.
_DEPTH_TO_BLOCKS = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
}
_STAGE_NAMES = ("res2", "res3", "res4", "res5")


def _conv_norm(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    norm: str,
    *,
    stride: int = 1,
    dilation: int = 1,
    groups: int = 1,
) -> Conv2d:
    """A bias-free ``kernel_size`` conv + norm, padded to keep ``ceil(size / stride)``.

    Not initialized here: callers apply :func:`c2_msra_fill` in their own order, which fixes
    the random stream (and so the weights for a given seed).
    """
    return Conv2d(
        in_channels,
        out_channels,
        kernel_size=kernel_size,
        stride=stride,
        padding=dilation * (kernel_size // 2),
        dilation=dilation,
        groups=groups,
        bias=False,
        norm=get_norm(norm, out_channels),
    )


class BasicStem(nn.Module):
    """The standard ResNet stem: 7x7 conv (stride 2) + norm + ReLU, 3x3 max pool (stride 2).

    Args:
        in_channels: image channels.
        out_channels: stem output channels (64 for ResNets).
        norm: a :func:`panoptic2.layers.get_norm` name.

    Shapes: (N, in_channels, H, W) -> (N, out_channels, ceil(H / 4), ceil(W / 4)).
    """

    stride = 4

    def __init__(self, in_channels: int = 3, out_channels: int = 64, norm: str = "BN") -> None:
        super().__init__()
        self.out_channels = out_channels
        self.conv1 = _conv_norm(in_channels, out_channels, 7, norm, stride=2)
        c2_msra_fill(self.conv1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu_(self.conv1(x))
        return F.max_pool2d(x, kernel_size=3, stride=2, padding=1)


class DeepLabStem(nn.Module):
    """ResNet-Beta's stem: three 3x3 convs (stride 2 in the first), each + norm + ReLU, then
    the 3x3 max pool (stride 2).

    Args:
        in_channels: image channels.
        out_channels: stem output channels; the first two convs have half as many.
        norm: a :func:`panoptic2.layers.get_norm` name.

    Shapes: (N, in_channels, H, W) -> (N, out_channels, ceil(H / 4), ceil(W / 4)).
    """

    stride = 4

    def __init__(self, in_channels: int = 3, out_channels: int = 128, norm: str = "BN") -> None:
        super().__init__()
        self.out_channels = out_channels
        mid = out_channels // 2
        channels = [(in_channels, mid, 2), (mid, mid, 1), (mid, out_channels, 1)]
        for i, (cin, cout, stride) in enumerate(channels, start=1):
            conv = _conv_norm(cin, cout, 3, norm, stride=stride)
            c2_msra_fill(conv)
            self.add_module(f"conv{i}", conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu_(self.conv1(x))
        x = F.relu_(self.conv2(x))
        x = F.relu_(self.conv3(x))
        return F.max_pool2d(x, kernel_size=3, stride=2, padding=1)


def _shortcut(in_channels: int, out_channels: int, stride: int, norm: str) -> Conv2d | None:
    if in_channels == out_channels and stride == 1:
        return None
    conv = _conv_norm(in_channels, out_channels, 1, norm, stride=stride)
    c2_msra_fill(conv)
    return conv


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual connection (ResNet-18/34).

    Args:
        in_channels: input channels.
        out_channels: output channels.
        stride: stride of the first conv (and of the projection shortcut).
        dilation: atrous rate of both convs.
        norm: a :func:`panoptic2.layers.get_norm` name.

    Shapes: (N, in_channels, H, W) -> (N, out_channels, ceil(H / stride), ceil(W / stride)).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        stride: int = 1,
        dilation: int = 1,
        norm: str = "BN",
    ) -> None:
        super().__init__()
        self.shortcut = _shortcut(in_channels, out_channels, stride, norm)
        self.conv1 = _conv_norm(
            in_channels, out_channels, 3, norm, stride=stride, dilation=dilation
        )
        self.conv2 = _conv_norm(out_channels, out_channels, 3, norm, dilation=dilation)
        for conv in (self.conv1, self.conv2):
            c2_msra_fill(conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu_(self.conv1(x))
        out = self.conv2(out)
        shortcut = x if self.shortcut is None else self.shortcut(x)
        # In place: the norm's output is not saved for backward, and a new (N, C, H, W)
        # tensor per block costs an allocation and its page faults.
        out += shortcut
        return F.relu_(out)


class BottleneckBlock(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand, with a residual connection (ResNet-50 and deeper).

    Args:
        in_channels: input channels.
        out_channels: output channels.
        bottleneck_channels: channels of the 3x3 conv.
        stride: block stride, applied in the 1x1 (``stride_in_1x1``) or in the 3x3 conv.
        num_groups: groups of the 3x3 conv (ResNeXt).
        dilation: atrous rate of the 3x3 conv.
        stride_in_1x1: see above.
        norm: a :func:`panoptic2.layers.get_norm` name.

    Shapes: (N, in_channels, H, W) -> (N, out_channels, ceil(H / stride), ceil(W / stride)).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        bottleneck_channels: int,
        stride: int = 1,
        num_groups: int = 1,
        dilation: int = 1,
        stride_in_1x1: bool = False,
        norm: str = "BN",
    ) -> None:
        super().__init__()
        self.shortcut = _shortcut(in_channels, out_channels, stride, norm)
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = _conv_norm(in_channels, bottleneck_channels, 1, norm, stride=stride_1x1)
        self.conv2 = _conv_norm(
            bottleneck_channels,
            bottleneck_channels,
            3,
            norm,
            stride=stride_3x3,
            dilation=dilation,
            groups=num_groups,
        )
        self.conv3 = _conv_norm(bottleneck_channels, out_channels, 1, norm)
        for conv in (self.conv1, self.conv2, self.conv3):
            c2_msra_fill(conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu_(self.conv1(x))
        out = F.relu_(self.conv2(out))
        out = self.conv3(out)
        shortcut = x if self.shortcut is None else self.shortcut(x)
        out += shortcut  # in place, as in BasicBlock
        return F.relu_(out)


class ResNet(Backbone):
    """A ResNet with Detectron2 parameter names, atrous output strides and multi-grid.

    Outputs (names, strides at output stride 32): ``stem`` (4), ``res2`` (4), ``res3`` (8),
    ``res4`` (16), ``res5`` (32); a dilated stage keeps the previous stage's stride.
    Each output is (N, channels, ceil(H / stride), ceil(W / stride)).

    Build by hand::

        ResNet(depth=50, out_features=["res2", "res3", "res5"], res5_dilation=2,
               res5_multi_grid=(1, 2, 4))

    or from a config through ``build_resnet_backbone(cfg, input_shape)``.
    """

    @configurable
    def __init__(
        self,
        *,
        depth: int = 50,
        in_channels: int = 3,
        out_features: Sequence[str] = ("res2", "res3", "res4", "res5"),
        norm: str = "BN",
        stem_type: str = "basic",
        stem_out_channels: int = 64,
        res2_out_channels: int = 256,
        num_groups: int = 1,
        width_per_group: int = 64,
        stride_in_1x1: bool = False,
        res4_dilation: int = 1,
        res5_dilation: int = 1,
        res5_multi_grid: Sequence[int] | None = None,
        freeze_at: int = 0,
        num_blocks_per_stage: Sequence[int] | None = None,
    ) -> None:
        """
        Args:
            depth: 18, 34, 50, 101 or 152 (18/34 use basic blocks).
            in_channels: image channels.
            out_features: names of the outputs, among ``stem``, ``res2``..``res5``.
            norm: a :func:`panoptic2.layers.get_norm` name: "BN", "SyncBN", "GN", "FrozenBN".
            stem_type: "basic" (7x7 conv) or "deeplab" (ResNet-Beta: three 3x3 convs).
            stem_out_channels: stem channels (64 basic; 128 for ResNet-Beta).
            res2_out_channels: output channels of res2 (doubled each stage); must be 64
                for depth 18/34.
            num_groups: groups of the 3x3 convs (ResNeXt).
            width_per_group: bottleneck width per group at res2.
            stride_in_1x1: stride in the first 1x1 conv of bottleneck blocks (MSRA
                weights) instead of the 3x3 (torchvision, DeepLab2).
            res4_dilation: 1, or 2 for output stride 8 (requires ``res5_dilation=4``).
            res5_dilation: 1 (output stride 32), 2 (16) or 4 (8).
            res5_multi_grid: per-block factors of res5's rate (length = res5 blocks);
                None or all ones means no multi-grid.
            freeze_at: 0 trains all; 1 freezes the stem; k >= 2 freezes the stem and
                res2..res{k}. Frozen parts get no gradient and FrozenBatchNorm2d.
            num_blocks_per_stage: overrides the blocks per stage that ``depth`` implies
                (for small test networks).
        """
        super().__init__()
        if depth not in _DEPTH_TO_BLOCKS:
            raise ValueError(f"ResNet depth must be one of {sorted(_DEPTH_TO_BLOCKS)}, got {depth}")
        if res4_dilation not in (1, 2) or res5_dilation not in (1, 2, 4):
            raise ValueError(
                f"res4_dilation must be 1 or 2 and res5_dilation 1, 2 or 4; got "
                f"{res4_dilation} and {res5_dilation}"
            )
        if (res4_dilation == 2) != (res5_dilation == 4):
            raise ValueError(
                "Output stride 8 dilates both res4 (rate 2) and res5 (rate 4); got "
                f"res4_dilation={res4_dilation}, res5_dilation={res5_dilation}"
            )
        blocks = tuple(num_blocks_per_stage or _DEPTH_TO_BLOCKS[depth])
        if len(blocks) != 4 or min(blocks) < 1:
            raise ValueError(f"num_blocks_per_stage must be 4 positive ints, got {blocks}")
        multi_grid = tuple(res5_multi_grid or ())
        if all(g == 1 for g in multi_grid):
            # All ones means "no multi-grid", whatever the length (the default [1, 1, 1]
            # then also suits ResNet-18's two res5 blocks).
            multi_grid = (1,) * blocks[3]
        if len(multi_grid) != blocks[3]:
            raise ValueError(
                f"res5_multi_grid {multi_grid} must have one factor per res5 block ({blocks[3]})"
            )
        basic = depth in (18, 34)
        if basic and (res2_out_channels != 64 or num_groups != 1):
            raise ValueError("ResNet-18/34 need res2_out_channels=64 and num_groups=1")
        if basic and stem_out_channels != 64 and stem_type == "basic":
            logger.warning("ResNet-%d with a %d-channel stem", depth, stem_out_channels)

        if stem_type == "basic":
            self.stem = BasicStem(in_channels, stem_out_channels, norm)
        elif stem_type == "deeplab":
            self.stem = DeepLabStem(in_channels, stem_out_channels, norm)
        else:
            raise ValueError(f"stem_type must be 'basic' or 'deeplab', got {stem_type!r}")

        self._set_out_features("ResNet", out_features, ("stem", *_STAGE_NAMES))
        self._out_feature_strides = {"stem": self.stem.stride}
        self._out_feature_channels = {"stem": stem_out_channels}

        dilations = (1, 1, res4_dilation, res5_dilation)
        in_ch, out_ch = stem_out_channels, res2_out_channels
        bottleneck_ch = num_groups * width_per_group
        current_stride = self.stem.stride
        self.stage_names: list[str] = []
        for idx, (name, n) in enumerate(zip(_STAGE_NAMES, blocks)):
            # res2 follows the max pool and never strides; a dilated stage replaces its stride.
            stage_stride = 1 if idx == 0 or dilations[idx] > 1 else 2
            stage = []
            for b in range(n):
                rate = dilations[idx] * (multi_grid[b] if name == "res5" else 1)
                stride = stage_stride if b == 0 else 1
                if basic:
                    block = BasicBlock(in_ch, out_ch, stride=stride, dilation=rate, norm=norm)
                else:
                    block = BottleneckBlock(
                        in_ch,
                        out_ch,
                        bottleneck_channels=bottleneck_ch,
                        stride=stride,
                        num_groups=num_groups,
                        dilation=rate,
                        stride_in_1x1=stride_in_1x1,
                        norm=norm,
                    )
                stage.append(block)
                in_ch = out_ch
            current_stride *= stage_stride
            self.add_module(name, nn.Sequential(*stage))
            self.stage_names.append(name)
            self._out_feature_strides[name] = current_stride
            self._out_feature_channels[name] = out_ch
            out_ch *= 2
            bottleneck_ch *= 2
        self.freeze(freeze_at)

    @classmethod
    def from_config(cls, cfg, input_shape: ShapeSpec | None = None) -> dict:
        r = cfg.MODEL.RESNETS
        return {
            "depth": r.DEPTH,
            "in_channels": cls._input_channels(cfg, input_shape),
            "out_features": r.OUT_FEATURES,
            "norm": r.NORM,
            "stem_type": r.STEM_TYPE,
            "stem_out_channels": r.STEM_OUT_CHANNELS,
            "res2_out_channels": r.RES2_OUT_CHANNELS,
            "num_groups": r.NUM_GROUPS,
            "width_per_group": r.WIDTH_PER_GROUP,
            "stride_in_1x1": r.STRIDE_IN_1X1,
            "res4_dilation": r.RES4_DILATION,
            "res5_dilation": r.RES5_DILATION,
            "res5_multi_grid": r.RES5_MULTI_GRID,
            "freeze_at": cfg.MODEL.BACKBONE.FREEZE_AT,
        }

    def freeze(self, freeze_at: int = 0) -> ResNet:
        """Freezes the stem (``freeze_at >= 1``) and res2..res{freeze_at} (``>= 2``).

        Args:
            freeze_at: number of leading parts to freeze, counting the stem as 1.

        Returns:
            self.
        """
        self._freeze_children(("stem", *self.stage_names)[: max(freeze_at, 0)])
        return self

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Args:
            x: (N, C, H, W) float images.

        Returns:
            ``{name: (N, channels, ceil(H / stride), ceil(W / stride))}`` for
            ``out_features``.
        """
        self._check_input("ResNet", x)
        return self._forward_stages(x, self.stage_names)


@BACKBONE_REGISTRY.register()
def build_resnet_backbone(cfg, input_shape: ShapeSpec | None = None) -> ResNet:
    """Builds a :class:`ResNet` from ``cfg.MODEL.RESNETS`` and ``MODEL.BACKBONE.FREEZE_AT``.

    Args:
        cfg: the config.
        input_shape: image shape (channels used).

    Returns:
        The ResNet backbone.
    """
    return ResNet(cfg, input_shape)
