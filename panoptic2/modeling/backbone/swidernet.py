"""Wide-ResNet-41 and SWideRNet-SAC-(w_stem, w, x) backbones, as DeepLab2 defines them.

Reference: DeepLab2 ``model/encoder/axial_resnet.py`` (``backbone_type='wider_resnet'``),
``model/layers/axial_block_groups.py`` and ``axial_blocks.py``, instantiated by
``axial_resnet_instances.SWideRNet`` for both ``wide_resnet41`` and ``swidernet``; papers:
Naive-Student (ECCV 2020) for Wide-ResNet-41, "Scaling Wide Residual Networks for Panoptic
Segmentation" (arXiv:2011.11675) for SWideRNet.

Layout (``w_s`` = stem width multiplier, ``w`` = width multiplier, ``x`` = layer multiplier;
channels for multipliers 1):

=========  =======================================  ========  ========================
output     layers                                   stride    channels
=========  =======================================  ========  ========================
``stem``   3x3 conv, stride 2                       2         ``round(64 w_s)``
``res1``   3 basic blocks                           2         ``4 round(32 w_s)`` = 128
``res2``   ``int(3 x)`` basic blocks                4         256 w
``res3``   ``int(6 x)`` basic blocks                8         512 w
``res4``   ``int(3 x)`` basic blocks                16        1024 w
``res5``   ``int(3 x)`` bottlenecks (C, 2C, 4C)     32        2048 w
=========  =======================================  ========  ========================

A basic block is 3x3 conv + norm + ReLU, 3x3 conv + norm, plus the shortcut, then ReLU; the
res5 bottleneck is 1x1 (512 w), 3x3 (1024 w), 1x1 (2048 w). The shortcut is a 1x1 conv +
norm when the channels change, else the identity (subsampled when strided). The last norm of
each block starts with zero scale (DeepLab2's ``bn_gamma_initializer='zeros'``). No
squeeze-and-excitation. With ``use_sac_beyond_stride = s > 0`` every 3x3 conv of the stages
whose original output stride is ``>= s`` is a :class:`~panoptic2.layers.sac.SAConv2d` (SAC
with global context); SWideRNet-SAC uses ``s = 32`` (res5 only). Wide-ResNet-41 is
multipliers (1, 1, 1) without SAC.

Output stride (32, 16 or 8) follows DeepLab2 exactly: a stage at or beyond the output
stride does not stride; its first block keeps the previous rate in the first conv and uses
the new rate from the second 3x3 conv on (basic blocks), later blocks use the new rate.

Differences from DeepLab2 that change no parameter: the convs pad symmetrically (DeepLab2's
``Conv2DSame`` also does for strided convs), and features have ``ceil(size / stride)`` pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from panoptic2.config import configurable
from panoptic2.layers import ShapeSpec, get_norm
from panoptic2.layers.conv import Conv2d, c2_msra_fill
from panoptic2.layers.sac import SAConv2d

from .backbone import Backbone
from .build import BACKBONE_REGISTRY

__all__ = ["SWideRNet", "WideBasicBlock", "WideBottleneckBlock", "build_swidernet_backbone"]

_STAGE_NAMES = ("res1", "res2", "res3", "res4", "res5")
# Blocks of res2..res5 before the layer multiplier; res1 always has 3 (DeepLab2).
_BASE_BLOCKS = (3, 6, 3, 3)
_RES1_BLOCKS = 3
# Drop path applies from this original stride on (DeepLab2's SWideRNet setting).
_DROP_PATH_BEYOND_STRIDE = 4


def _conv3x3(
    in_channels: int,
    out_channels: int,
    *,
    stride: int,
    dilation: int,
    norm: str,
    relu: bool,
    sac: bool,
) -> nn.Module:
    if sac:
        return SAConv2d(
            in_channels,
            out_channels,
            3,
            stride=stride,
            dilation=dilation,
            norm=get_norm(norm, out_channels),
            activation=F.relu if relu else None,
        )
    conv = Conv2d(
        in_channels,
        out_channels,
        kernel_size=3,
        stride=stride,
        padding=dilation,
        dilation=dilation,
        bias=False,
        norm=get_norm(norm, out_channels),
        activation=F.relu if relu else None,
    )
    c2_msra_fill(conv)
    return conv


def _zero_init_last_norm(conv: nn.Module) -> None:
    norm = getattr(conv, "norm", None)
    if norm is not None and getattr(norm, "weight", None) is not None:
        with torch.no_grad():
            norm.weight.zero_()


class _ResidualBlock(nn.Module):
    """Shortcut, drop path and the final ReLU shared by both block types."""

    def __init__(
        self, in_channels: int, out_channels: int, stride: int, norm: str, keep_prob: float
    ) -> None:
        super().__init__()
        self.stride = stride
        self.drop_path_keep_prob = keep_prob
        self.shortcut: Conv2d | None = None
        if in_channels != out_channels:
            self.shortcut = Conv2d(
                in_channels,
                out_channels,
                kernel_size=1,
                stride=stride,
                bias=False,
                norm=get_norm(norm, out_channels),
            )
            c2_msra_fill(self.shortcut)

    def _residual(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.shortcut is not None:
            shortcut = self.shortcut(x)
        else:
            shortcut = x[:, :, :: self.stride, :: self.stride] if self.stride > 1 else x
        out = self._residual(x)
        if self.training and self.drop_path_keep_prob < 1.0:
            # Per-sample stochastic depth, rescaled so the expectation is unchanged.
            keep = torch.rand(out.shape[0], 1, 1, 1, device=out.device, dtype=out.dtype)
            keep = (keep < self.drop_path_keep_prob).to(out.dtype) / self.drop_path_keep_prob
            out = out * keep
        return F.relu(out + shortcut)


class WideBasicBlock(_ResidualBlock):
    """Two 3x3 convs (the first strided) with a residual connection.

    Args:
        in_channels: input channels.
        out_channels: channels of both convs.
        stride: stride of the first conv and of the shortcut.
        dilation: rate of the first conv.
        second_dilation: rate of the second conv.
        norm: a :func:`panoptic2.layers.get_norm` name.
        use_sac: switchable atrous convs instead of plain 3x3 convs.
        drop_path_keep_prob: stochastic depth keep probability in training.

    Shapes: (N, in_channels, H, W) -> (N, out_channels, ceil(H / stride), ceil(W / stride)).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        stride: int = 1,
        dilation: int = 1,
        second_dilation: int = 1,
        norm: str = "BN",
        use_sac: bool = False,
        drop_path_keep_prob: float = 1.0,
    ) -> None:
        super().__init__(in_channels, out_channels, stride, norm, drop_path_keep_prob)
        self.conv1 = _conv3x3(
            in_channels,
            out_channels,
            stride=stride,
            dilation=dilation,
            norm=norm,
            relu=True,
            sac=use_sac,
        )
        self.conv2 = _conv3x3(
            out_channels,
            out_channels,
            stride=1,
            dilation=second_dilation,
            norm=norm,
            relu=False,
            sac=use_sac,
        )
        _zero_init_last_norm(self.conv2)

    def _residual(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x))


class WideBottleneckBlock(_ResidualBlock):
    """1x1 (C), 3x3 (2C, strided), 1x1 (4C) with a residual connection (res5 of Wide-ResNets).

    Args:
        in_channels: input channels.
        base_channels: ``C``; the block outputs ``4 C`` channels.
        stride: stride of the 3x3 conv and of the shortcut.
        dilation: rate of the 3x3 conv.
        norm: a :func:`panoptic2.layers.get_norm` name.
        use_sac: a switchable atrous 3x3 conv.
        drop_path_keep_prob: stochastic depth keep probability in training.

    Shapes: (N, in_channels, H, W) -> (N, 4 C, ceil(H / stride), ceil(W / stride)).
    """

    def __init__(
        self,
        in_channels: int,
        base_channels: int,
        *,
        stride: int = 1,
        dilation: int = 1,
        norm: str = "BN",
        use_sac: bool = False,
        drop_path_keep_prob: float = 1.0,
    ) -> None:
        out_channels = 4 * base_channels
        super().__init__(in_channels, out_channels, stride, norm, drop_path_keep_prob)
        self.conv1 = Conv2d(
            in_channels,
            base_channels,
            kernel_size=1,
            bias=False,
            norm=get_norm(norm, base_channels),
            activation=F.relu,
        )
        self.conv2 = _conv3x3(
            base_channels,
            2 * base_channels,
            stride=stride,
            dilation=dilation,
            norm=norm,
            relu=True,
            sac=use_sac,
        )
        self.conv3 = Conv2d(
            2 * base_channels,
            out_channels,
            kernel_size=1,
            bias=False,
            norm=get_norm(norm, out_channels),
        )
        for conv in (self.conv1, self.conv3):
            c2_msra_fill(conv)
        _zero_init_last_norm(self.conv3)

    def _residual(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(self.conv2(self.conv1(x)))


def _keep_prob(keep_prob: float, schedule: str, current_stride: int) -> float:
    """DeepLab2's drop-path keep probability of a block working at ``current_stride``."""
    if current_stride < _DROP_PATH_BEYOND_STRIDE or keep_prob >= 1.0:
        return 1.0
    if schedule == "constant":
        return keep_prob
    if schedule == "linear":
        stage = math.log2(current_stride) - 1  # 1 at stride 4 ... 4 at stride 32
        return 1.0 - stage / 4 * (1.0 - keep_prob)
    raise ValueError(f"drop_path_schedule must be 'constant' or 'linear', got {schedule!r}")


class SWideRNet(Backbone):
    """Wide-ResNet-41 / SWideRNet backbone (see the module docstring for the layout).

    Outputs among ``stem``, ``res1``..``res5``, each (N, channels, ceil(H / stride),
    ceil(W / stride)) with strides 2, 2, 4, 8, 16, 32 capped at the output stride.

    Build by hand, e.g. SWideRNet-SAC-(1, 1, 3) at output stride 16::

        SWideRNet(layer_multiplier=3, use_sac_beyond_stride=32, output_stride=16)
    """

    @configurable
    def __init__(
        self,
        *,
        in_channels: int = 3,
        stem_width_multiplier: float = 1.0,
        width_multiplier: float = 1.0,
        layer_multiplier: float = 1.0,
        use_sac_beyond_stride: int = 0,
        output_stride: int = 16,
        out_features: Sequence[str] = ("res2", "res3", "res4", "res5"),
        norm: str = "BN",
        drop_path_keep_prob: float = 1.0,
        drop_path_schedule: str = "constant",
        freeze_at: int = 0,
    ) -> None:
        """
        Args:
            in_channels: image channels.
            stem_width_multiplier: scales the stem and res1 channels.
            width_multiplier: scales the channels of res2..res5.
            layer_multiplier: scales the blocks of res2..res5 (``int(n * x)``, DeepLab2's
                rounding: 4.5 gives 13, 27, 13, 13).
            use_sac_beyond_stride: SAC in stages whose original output stride is ``>=``
                this; 0 or negative disables SAC.
            output_stride: 32, 16 or 8.
            out_features: names among ``stem``, ``res1``..``res5``.
            norm: a :func:`panoptic2.layers.get_norm` name.
            drop_path_keep_prob: stochastic depth keep probability (1.0 disables it).
            drop_path_schedule: "constant" or "linear" (DeepLab2's schedules).
            freeze_at: 1 freezes the stem, k >= 2 also res1..res{k-1}.
        """
        super().__init__()
        if output_stride not in (8, 16, 32):
            raise ValueError(f"SWideRNet output_stride must be 8, 16 or 32, got {output_stride}")
        self._set_out_features("SWideRNet", out_features, ("stem", *_STAGE_NAMES))
        blocks = (_RES1_BLOCKS, *(int(n * layer_multiplier) for n in _BASE_BLOCKS))
        if min(blocks) < 1:
            raise ValueError(
                f"layer_multiplier={layer_multiplier} leaves a stage without blocks: {blocks}"
            )
        stem_channels = int(round(64 * stem_width_multiplier))
        self.stem = Conv2d(
            in_channels,
            stem_channels,
            kernel_size=3,
            stride=2,
            padding=1,
            bias=False,
            norm=get_norm(norm, stem_channels),
            activation=F.relu,
        )
        c2_msra_fill(self.stem)
        self._out_feature_strides = {"stem": 2}
        self._out_feature_channels = {"stem": stem_channels}

        in_ch = stem_channels
        # Original (undilated) input stride and stride of each stage, as in DeepLab2.
        input_strides = (2, 2, 4, 8, 16)
        stage_strides = (1, 2, 2, 2, 2)
        for idx, name in enumerate(_STAGE_NAMES):
            multiplier = stem_width_multiplier if idx == 0 else width_multiplier
            base = int(round((2**idx) * 32 * multiplier))
            in_s, s = input_strides[idx], stage_strides[idx]
            use_sac = in_s * s >= use_sac_beyond_stride > 0
            stage = []
            for b in range(blocks[idx]):
                stride = s if b == 0 and in_s < output_stride else 1
                current = in_s if b == 0 else in_s * s
                rate = current // output_stride if current > output_stride else 1
                keep = _keep_prob(drop_path_keep_prob, drop_path_schedule, current)
                if name == "res5":
                    block = WideBottleneckBlock(
                        in_ch,
                        base,
                        stride=stride,
                        dilation=rate,
                        norm=norm,
                        use_sac=use_sac,
                        drop_path_keep_prob=keep,
                    )
                    out_ch = 4 * base
                else:
                    second = (
                        (in_s * s) // output_stride if b == 0 and in_s * s > output_stride else rate
                    )
                    out_ch = 4 * base
                    block = WideBasicBlock(
                        in_ch,
                        out_ch,
                        stride=stride,
                        dilation=rate,
                        second_dilation=second,
                        norm=norm,
                        use_sac=use_sac,
                        drop_path_keep_prob=keep,
                    )
                stage.append(block)
                in_ch = out_ch
            self.add_module(name, nn.Sequential(*stage))
            self._out_feature_strides[name] = min(in_s * s, output_stride)
            self._out_feature_channels[name] = in_ch
        self.num_blocks = blocks
        self.freeze(freeze_at)

    @classmethod
    def from_config(cls, cfg, input_shape: ShapeSpec | None = None) -> dict:
        s = cfg.MODEL.SWIDERNET
        return {
            "in_channels": cls._input_channels(cfg, input_shape),
            "stem_width_multiplier": s.STEM_WIDTH_MULTIPLIER,
            "width_multiplier": s.WIDTH_MULTIPLIER,
            "layer_multiplier": s.LAYER_MULTIPLIER,
            "use_sac_beyond_stride": s.USE_SAC_BEYOND_STRIDE,
            "output_stride": s.OUTPUT_STRIDE,
            "out_features": s.OUT_FEATURES,
            "norm": s.NORM,
            "drop_path_keep_prob": s.DROP_PATH_KEEP_PROB,
            "drop_path_schedule": s.DROP_PATH_SCHEDULE,
            "freeze_at": cfg.MODEL.BACKBONE.FREEZE_AT,
        }

    def freeze(self, freeze_at: int = 0) -> SWideRNet:
        """Freezes the stem (``freeze_at >= 1``) and res1..res{freeze_at - 1}.

        Args:
            freeze_at: number of leading parts to freeze, counting the stem as 1.

        Returns:
            self.
        """
        self._freeze_children(("stem", *_STAGE_NAMES)[: max(freeze_at, 0)])
        return self

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Args:
            x: (N, C, H, W) float images.

        Returns:
            ``{name: (N, channels, ceil(H / stride), ceil(W / stride))}``.
        """
        self._check_input("SWideRNet", x)
        # Stages after the last requested output are not run.
        last = max(("stem", *_STAGE_NAMES).index(f) for f in self._out_features)
        return self._forward_stages(x, _STAGE_NAMES[:last])


@BACKBONE_REGISTRY.register()
def build_swidernet_backbone(cfg, input_shape: ShapeSpec | None = None) -> SWideRNet:
    """Builds a :class:`SWideRNet` (Wide-ResNet-41 by default) from ``cfg.MODEL.SWIDERNET``.

    Args:
        cfg: the config.
        input_shape: image shape (channels used).

    Returns:
        The SWideRNet backbone.
    """
    return SWideRNet(cfg, input_shape)
