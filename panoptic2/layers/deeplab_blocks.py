"""The DeepLabV3 / V3+ decoder: ASPP on the deepest feature, then low-level fusion stages.

Shared by Panoptic-DeepLab's two branches (:mod:`panoptic2.modeling.heads.panoptic_deeplab`)
and by the DeepLab plugin's DeepLabV3 / V3+ heads (``projects/DeepLab``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .aspp import ASPP
from .batch_norm import get_norm
from .conv import Conv2d, c2_msra_fill, conv3x3_norm_relu
from .resize import resize_bilinear
from .separable_conv import DepthwiseSeparableConv2d
from .shape_spec import ShapeSpec

__all__ = ["DeepLabV3PlusDecoder"]

Norm = str | Callable[[int], nn.Module] | None


def _fuse_conv(
    in_channels: int, out_channels: int, norm: Norm, use_depthwise_separable_conv: bool
) -> nn.Module:
    """Two 3x3 conv-norm-ReLU, or one 5x5 depthwise-separable conv (same receptive field)."""
    if use_depthwise_separable_conv:
        return DepthwiseSeparableConv2d(
            in_channels,
            out_channels,
            kernel_size=5,
            padding=2,
            norm1=norm,
            activation1=F.relu,
            norm2=norm,
            activation2=F.relu,
        )
    return nn.Sequential(
        *(conv3x3_norm_relu(c_in, out_channels, norm) for c_in in (in_channels, out_channels))
    )


class DeepLabV3PlusDecoder(nn.Module):
    """ASPP on the deepest input feature, then, from deep to shallow, for each lower feature:
    a 1x1 projection of the feature, bilinear upsampling of the running output to its size,
    concatenation and fusion convolutions.

    With one input feature it is DeepLabV3's head body (ASPP only); with ``["res2", "res5"]``
    DeepLabV3+; with ``["res2", "res3", "res5"]`` a Panoptic-DeepLab branch. Submodules are
    ``decoder[<feature>]["project_conv" | "fuse_conv"]`` (the ASPP is the deepest feature's
    ``project_conv``), as in Detectron2, so its checkpoints load by name.

    Args:
        input_shape: backbone output shapes, by feature name (must include ``in_features``).
        in_features: feature names from shallow to deep (increasing stride); the last one
            goes through the ASPP.
        project_channels: output channels of the 1x1 projection of each feature but the
            last (``len(in_features) - 1`` values, same order).
        decoder_channels: output channels after each feature's stage (``len(in_features)``
            values): ``decoder_channels[-1]`` is the ASPP's, ``decoder_channels[0]`` the
            decoder's output channels.
        aspp_dilations: atrous rates of the ASPP.
        aspp_dropout: dropout after the ASPP projection.
        norm: norm of every conv (a :func:`get_norm` name or callable; "" for none).
        use_depthwise_separable_conv: fusion (and ASPP atrous) convs as 5x5 (3x3)
            depthwise-separable convs.
        aspp_pool_kernel_size: see :class:`ASPP` (None = global image pooling).

    Shapes: ``forward(features)`` with ``features[f]`` (N, C_f, H_f, W_f) float returns
    (N, decoder_channels[0], H_0, W_0) float at the resolution of ``in_features[0]``.
    """

    def __init__(
        self,
        input_shape: Mapping[str, ShapeSpec],
        *,
        in_features: Sequence[str],
        project_channels: Sequence[int],
        decoder_channels: Sequence[int],
        aspp_dilations: Sequence[int],
        aspp_dropout: float,
        norm: Norm,
        use_depthwise_separable_conv: bool = False,
        aspp_pool_kernel_size: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        in_features = list(in_features)
        if not in_features:
            raise ValueError("DeepLabV3PlusDecoder needs at least one input feature")
        missing = [f for f in in_features if f not in input_shape]
        if missing:
            raise ValueError(
                f"DeepLabV3PlusDecoder: features {missing} are not among the backbone "
                f"outputs {sorted(input_shape)}"
            )
        strides = [input_shape[f].stride for f in in_features]
        if any(a is not None and b is not None and a > b for a, b in zip(strides, strides[1:])):
            raise ValueError(
                f"DeepLabV3PlusDecoder: in_features {in_features} must go from shallow to deep "
                f"(non-decreasing strides), got strides {strides}"
            )
        if len(project_channels) != len(in_features) - 1:
            raise ValueError(
                f"DeepLabV3PlusDecoder: {len(in_features)} in_features need "
                f"{len(in_features) - 1} project_channels, got {list(project_channels)}"
            )
        if len(decoder_channels) != len(in_features):
            raise ValueError(
                f"DeepLabV3PlusDecoder: {len(in_features)} in_features need as many "
                f"decoder_channels, got {list(decoder_channels)}"
            )
        self.in_features = in_features
        self.out_channels = int(decoder_channels[0])
        self.out_stride = strides[0]
        self.decoder = nn.ModuleDict()
        deepest = in_features[-1]
        self.decoder[deepest] = nn.ModuleDict(
            {
                "project_conv": ASPP(
                    input_shape[deepest].channels,
                    decoder_channels[-1],
                    aspp_dilations,
                    norm=norm,
                    activation=F.relu,
                    pool_kernel_size=aspp_pool_kernel_size,
                    dropout=aspp_dropout,
                    use_depthwise_separable_conv=use_depthwise_separable_conv,
                )
            }
        )
        for idx in range(len(in_features) - 2, -1, -1):
            name = in_features[idx]
            project = Conv2d(
                input_shape[name].channels,
                project_channels[idx],
                kernel_size=1,
                bias=not norm,
                norm=get_norm(norm, project_channels[idx]),
                activation=F.relu,
            )
            c2_msra_fill(project)
            fuse = _fuse_conv(
                project_channels[idx] + decoder_channels[idx + 1],
                decoder_channels[idx],
                norm,
                use_depthwise_separable_conv,
            )
            self.decoder[name] = nn.ModuleDict({"project_conv": project, "fuse_conv": fuse})

    def forward(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Args:
            features: backbone features by name, each (N, C_f, H_f, W_f) float.

        Returns:
            (N, decoder_channels[0], H_0, W_0) float, H_0 x W_0 the size of
            ``features[in_features[0]]``.
        """
        y = self.decoder[self.in_features[-1]]["project_conv"](features[self.in_features[-1]])
        for name in reversed(self.in_features[:-1]):
            stage = self.decoder[name]
            proj = stage["project_conv"](features[name])
            y = resize_bilinear(y, size=proj.shape[-2:])
            y = stage["fuse_conv"](torch.cat([proj, y], dim=1))
        return y
