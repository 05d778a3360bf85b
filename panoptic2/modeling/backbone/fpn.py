"""Feature Pyramid Network backbones: a bottom-up backbone + torchvision's top-down FPN.

:class:`FPN` wraps any :class:`Backbone` (``bottom_up``) and torchvision's
``FeaturePyramidNetwork``; outputs are named ``p{log2(stride)}`` (Detectron2's names), so a
ResNet's ``res2..res5`` (strides 4..32) give ``p2..p5`` and the ``LastLevelMaxPool`` top block
(a 1x1 max pool with stride 2 on the coarsest output) adds ``p6`` (stride 64).

Parameter names: ``bottom_up.*`` are the wrapped backbone's (Detectron2's names, so ResNet
weights converted for ``build_resnet_backbone`` load under the ``bottom_up.`` prefix);
the FPN's own layers are torchvision's (``fpn.inner_blocks.{i}`` = Detectron2's
``fpn_lateral{i+2}``, ``fpn.layer_blocks.{i}`` = ``fpn_output{i+2}``).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence

import torch
from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool

from panoptic2.config import configurable
from panoptic2.layers import ShapeSpec, get_norm

from .backbone import Backbone
from .build import BACKBONE_REGISTRY
from .resnet import ResNet

__all__ = ["FPN", "build_resnet_fpn_backbone"]


def _level(stride: int, name: str) -> int:
    level = math.log2(stride)
    if stride < 1 or level != int(level):
        raise ValueError(f"FPN input {name!r} has stride {stride}, not a power of 2")
    return int(level)


class FPN(Backbone):
    """Top-down feature pyramid over a bottom-up backbone (Lin et al., 2017).

    Every output has ``out_channels`` channels; the output at stride ``s`` is
    (N, out_channels, ceil(H / s), ceil(W / s)) when the bottom-up features are.

    Args:
        bottom_up: the backbone whose features are fused.
        in_features: names of its features to fuse, fine to coarse, with strides that
            double from one to the next.
        out_channels: channels of every pyramid level (256).
        norm: norm of the lateral and output convs ("" = none; convs then have a bias).
        top_block: True adds ``p{last + 1}`` by max-pooling the coarsest output (P6).
        fuse_type: "sum" (the only mode of torchvision's FPN).
    """

    @configurable
    def __init__(
        self,
        *,
        bottom_up: Backbone,
        in_features: Sequence[str],
        out_channels: int = 256,
        norm: str = "",
        top_block: bool = True,
        fuse_type: str = "sum",
    ) -> None:
        super().__init__()
        if fuse_type != "sum":
            raise ValueError(f"FPN fuse_type must be 'sum' (torchvision's FPN), got {fuse_type!r}")
        shapes = bottom_up.output_shape()
        missing = [f for f in in_features if f not in shapes]
        if missing or not in_features:
            raise ValueError(
                f"FPN in_features {list(in_features)} must be outputs of the bottom-up "
                f"backbone {list(shapes)}"
            )
        strides = [shapes[f].stride for f in in_features]
        levels = [_level(s, f) for s, f in zip(strides, in_features)]
        if any(b != a + 1 for a, b in zip(levels[:-1], levels[1:])):
            raise ValueError(
                f"FPN in_features must double in stride from fine to coarse, got {strides}"
            )
        self.bottom_up = bottom_up
        self.in_features = list(in_features)
        norm_layer = (lambda c: get_norm(norm, c)) if norm else None
        self.fpn = FeaturePyramidNetwork(
            [shapes[f].channels for f in in_features],
            out_channels,
            extra_blocks=LastLevelMaxPool() if top_block else None,
            norm_layer=norm_layer,
        )
        if top_block:
            levels.append(levels[-1] + 1)
        self._out_features = [f"p{lvl}" for lvl in levels]
        self._out_feature_strides = {f"p{lvl}": 2**lvl for lvl in levels}
        self._out_feature_channels = {name: out_channels for name in self._out_features}
        self._size_divisibility = strides[-1]

    @classmethod
    def from_config(cls, cfg, input_shape: ShapeSpec | None = None) -> dict:
        return {
            "bottom_up": ResNet(cfg, input_shape),
            "in_features": cfg.MODEL.FPN.IN_FEATURES,
            "out_channels": cfg.MODEL.FPN.OUT_CHANNELS,
            "norm": cfg.MODEL.FPN.NORM,
            "top_block": True,
            "fuse_type": cfg.MODEL.FPN.FUSE_TYPE,
        }

    @property
    def size_divisibility(self) -> int:
        """The coarsest fused stride (32 for res2..res5): inputs padded to a multiple of it
        keep every lateral and its upsampled coarser level the same size."""
        return self._size_divisibility

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Args:
            x: (N, C, H, W) float images, normalised.

        Returns:
            ``{"p2": ..., "p6": ...}``, each (N, out_channels, ceil(H / s), ceil(W / s))
            for stride s, fine to coarse.
        """
        bottom_up = self.bottom_up(x)
        fused = self.fpn(OrderedDict((f, bottom_up[f]) for f in self.in_features))
        # torchvision names the outputs after the inputs plus "pool"; the order is the same.
        return dict(zip(self._out_features, fused.values()))


@BACKBONE_REGISTRY.register()
def build_resnet_fpn_backbone(cfg, input_shape: ShapeSpec | None = None) -> FPN:
    """Builds a ResNet (``MODEL.RESNETS``, ``MODEL.BACKBONE.FREEZE_AT``) with an FPN on top
    (``MODEL.FPN``) and a P6 max-pool top block: outputs ``p2..p6``.

    Args:
        cfg: the config.
        input_shape: image shape (channels used).

    Returns:
        The FPN backbone.
    """
    return FPN(cfg, input_shape)
