"""MobileNetV3-Small / -Large backbones built from torchvision's definition.

The layers are torchvision's own (``_mobilenet_v3_conf`` for the block table,
``InvertedResidual`` blocks, ``Conv2dNormActivation`` for the first and last convs), kept in a
``features`` Sequential with torchvision's indices. A torchvision ``mobilenet_v3_*`` state dict
therefore loads by name (the ``identity`` or ``torchvision_mobilenet_v3`` converter); only the
classifier is left over.

Feature taps: for each stride 4, 8, 16, 32 the output of the *last* layer that works at that
stride (its block table's stride, before dilation), named Detectron2-style:

=========  ======================  ======================
output     MobileNetV3-Large       MobileNetV3-Small
=========  ======================  ======================
``res2``   ``features[3]``, 24 ch  ``features[1]``, 16 ch
``res3``   ``features[6]``, 40 ch  ``features[3]``, 24 ch
``res4``   ``features[12]``, 112   ``features[8]``, 48 ch
``res5``   ``features[16]``, 960   ``features[12]``, 576
=========  ======================  ======================

``res5`` is the last 1x1 conv (960 / 576 channels), as in DeepLab2's MobileNetV3 encoder.
Output stride 16 builds the table with ``dilated=True``: the last stage runs at rate 2
without its stride, so ``res5`` has stride 16.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import torch
from torch import nn
from torchvision.models.mobilenetv3 import InvertedResidual, _mobilenet_v3_conf
from torchvision.ops.misc import Conv2dNormActivation

from panoptic2.config import configurable
from panoptic2.layers import ShapeSpec, get_norm

from .backbone import Backbone
from .build import BACKBONE_REGISTRY

__all__ = ["MobileNetV3", "build_mobilenetv3_backbone"]

_STRIDE_TO_NAME = {4: "res2", 8: "res3", 16: "res4", 32: "res5"}


def _norm_layer(norm: str) -> Callable[[int], nn.Module]:
    """The per-channel norm factory torchvision's blocks call as ``norm_layer(channels)``."""
    if norm == "BN":
        # torchvision's MobileNetV3 (and its ImageNet weights) use these BN hyper-parameters.
        return partial(nn.BatchNorm2d, eps=0.001, momentum=0.01)
    if not norm:
        raise ValueError("MobileNetV3 needs a norm layer; got an empty norm")

    def make(channels: int) -> nn.Module:
        return get_norm(norm, channels)

    return make


class MobileNetV3(Backbone):
    """MobileNetV3 feature extractor with output stride 32 or 16.

    Outputs ``res2``..``res5`` (see the module docstring), each (N, channels,
    ceil(H / stride), ceil(W / stride)).
    """

    @configurable
    def __init__(
        self,
        *,
        variant: str = "large",
        in_channels: int = 3,
        output_stride: int = 32,
        out_features: Sequence[str] = ("res2", "res3", "res4", "res5"),
        norm: str = "BN",
        width_multiplier: float = 1.0,
        freeze_at: int = 0,
    ) -> None:
        """
        Args:
            variant: "large" or "small".
            in_channels: image channels.
            output_stride: 32, or 16 (last stage dilated).
            out_features: names among ``res2``..``res5``.
            norm: a :func:`panoptic2.layers.get_norm` name; "BN" uses torchvision's
                eps=1e-3, momentum=0.01.
            width_multiplier: torchvision's ``width_mult``.
            freeze_at: freezes ``features[:k]`` where k is the index after the layer
                tapped as the ``freeze_at``-th output (1: up to res2, ... 4: all).
        """
        super().__init__()
        if variant not in ("large", "small"):
            raise ValueError(f"MobileNetV3 variant must be 'large' or 'small', got {variant!r}")
        if output_stride not in (16, 32):
            raise ValueError(f"MobileNetV3 output_stride must be 16 or 32, got {output_stride}")
        self._set_out_features("MobileNetV3", out_features, list(_STRIDE_TO_NAME.values()))
        settings, _ = _mobilenet_v3_conf(
            f"mobilenet_v3_{variant}", width_mult=width_multiplier, dilated=output_stride == 16
        )
        norm_layer = _norm_layer(norm)
        first_channels = settings[0].input_channels
        layers: list[nn.Module] = [
            Conv2dNormActivation(
                in_channels,
                first_channels,
                kernel_size=3,
                stride=2,
                norm_layer=norm_layer,
                activation_layer=nn.Hardswish,
            )
        ]
        # (index of the layer, original stride after it, channels) to find the taps.
        trace = [(0, 2, first_channels)]
        stride = 2
        for cnf in settings:
            layers.append(InvertedResidual(cnf, norm_layer))
            stride *= cnf.stride
            trace.append((len(layers) - 1, stride, cnf.out_channels))
        last_in = settings[-1].out_channels
        last_out = 6 * last_in
        layers.append(
            Conv2dNormActivation(
                last_in,
                last_out,
                kernel_size=1,
                norm_layer=norm_layer,
                activation_layer=nn.Hardswish,
            )
        )
        trace.append((len(layers) - 1, stride, last_out))
        self.features = nn.Sequential(*layers)

        # The last layer at each original stride is that stride's tap.
        self._taps: dict[int, str] = {}
        self._out_feature_channels, self._out_feature_strides = {}, {}
        for index, layer_stride, channels in trace:
            name = _STRIDE_TO_NAME.get(layer_stride)
            if name is None:
                continue
            self._taps = {i: n for i, n in self._taps.items() if n != name}
            self._taps[index] = name
            self._out_feature_channels[name] = channels
            self._out_feature_strides[name] = min(layer_stride, output_stride)
        self._last_needed = max(i for i, n in self._taps.items() if n in self._out_features)
        self.freeze(freeze_at)

    @classmethod
    def from_config(cls, cfg, input_shape: ShapeSpec | None = None) -> dict:
        m = cfg.MODEL.MOBILENET
        return {
            "variant": m.VARIANT,
            "in_channels": cls._input_channels(cfg, input_shape),
            "output_stride": m.OUTPUT_STRIDE,
            "out_features": m.OUT_FEATURES,
            "norm": m.NORM,
            "width_multiplier": m.WIDTH_MULTIPLIER,
            "freeze_at": cfg.MODEL.BACKBONE.FREEZE_AT,
        }

    def freeze(self, freeze_at: int = 0) -> MobileNetV3:
        """Freezes the layers up to the ``freeze_at``-th tap (res2 = 1, ..., res5 = 4).

        Args:
            freeze_at: 0 freezes nothing.

        Returns:
            self.
        """
        if freeze_at <= 0:
            return self
        order = ("res2", "res3", "res4", "res5")[: min(freeze_at, 4)]
        last = max(i for i, n in self._taps.items() if n in order)
        for i in range(last + 1):
            self.features[i] = self._frozen(self.features[i])
        return self

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Args:
            x: (N, C, H, W) float images.

        Returns:
            ``{name: (N, channels, ceil(H / stride), ceil(W / stride))}``.
        """
        self._check_input("MobileNetV3", x)
        outputs = {}
        for i, layer in enumerate(self.features):
            x = layer(x)
            name = self._taps.get(i)
            if name in self._out_features:
                outputs[name] = x
            if i == self._last_needed:
                break
        return outputs


@BACKBONE_REGISTRY.register()
def build_mobilenetv3_backbone(cfg, input_shape: ShapeSpec | None = None) -> MobileNetV3:
    """Builds a :class:`MobileNetV3` from ``cfg.MODEL.MOBILENET``.

    Args:
        cfg: the config.
        input_shape: image shape (channels used).

    Returns:
        The MobileNetV3 backbone.
    """
    return MobileNetV3(cfg, input_shape)
