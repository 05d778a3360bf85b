"""Panoptic FPN's semantic head (Kirillov et al., 2019): FPN levels merged at 1/4 scale.

Each input level goes through ``log2(stride / common_stride)`` stages of 3x3 conv + norm
(GN) + ReLU + 2x bilinear upsampling (one stage without upsampling for the 1/4 level), the
levels are summed, a 1x1 conv predicts the classes, and the logits are upsampled to the
input size. For Panoptic FPN the classes are the "separated" stuff map's: 0 = any thing,
``1..S`` the stuff classes, ``ignore_value`` (255) ignored by the loss.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from panoptic2.config import configurable
from panoptic2.layers import ShapeSpec, c2_msra_fill
from panoptic2.layers.conv import conv3x3_norm_relu

from .build import SEM_SEG_HEADS_REGISTRY

__all__ = ["SemSegFPNHead"]


@SEM_SEG_HEADS_REGISTRY.register()
class SemSegFPNHead(nn.Module):
    """Semantic head of Panoptic FPN (Detectron2's ``SemSegFPNHead`` semantics).

    Args:
        input_shape: channels and stride of the backbone features, by name.
        in_features: the merged features, e.g. ``["p2", "p3", "p4", "p5"]``.
        num_classes: predicted classes (stuff classes + 1 for Panoptic FPN).
        conv_dims: channels of the merging convs.
        common_stride: stride the levels are merged at (4).
        norm: norm of the convs (``"GN"`` in Panoptic FPN).
        loss_weight: weight of ``loss_sem_seg`` (0.5 in Panoptic FPN).
        ignore_value: target value the loss ignores.

    ``forward(features, targets=None)`` returns ``(logits, losses)``: (N, num_classes, H, W)
    float logits at the input size (``H = common_stride * h`` of the finest merged level) and
    ``{"loss_sem_seg"}`` when targets ((N, H, W) int64) are given, else ``{}``.
    """

    @configurable
    def __init__(
        self,
        input_shape: Mapping[str, ShapeSpec],
        *,
        in_features: Sequence[str],
        num_classes: int,
        conv_dims: int = 128,
        common_stride: int = 4,
        norm: str = "GN",
        loss_weight: float = 0.5,
        ignore_value: int = 255,
    ) -> None:
        super().__init__()
        missing = [f for f in in_features if f not in input_shape]
        if missing:
            raise ValueError(
                f"SemSegFPNHead: features {missing} are not backbone outputs ({sorted(input_shape)})"
            )
        self.in_features = list(in_features)
        self.num_classes = num_classes
        self.common_stride = common_stride
        self.loss_weight = loss_weight
        self.ignore_value = ignore_value
        self.scale_heads = nn.ModuleList()
        for name in self.in_features:
            stride = input_shape[name].stride
            if stride < common_stride or stride % common_stride:
                raise ValueError(
                    f"SemSegFPNHead: stride {stride} of {name!r} is not a multiple of "
                    f"common_stride {common_stride}"
                )
            stages = []
            num_stages = max(1, int(math.log2(stride) - math.log2(common_stride)))
            channels = input_shape[name].channels
            for _ in range(num_stages):
                stages.append(conv3x3_norm_relu(channels, conv_dims, norm))
                channels = conv_dims
                if stride != common_stride:
                    stages.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
            self.scale_heads.append(nn.Sequential(*stages))
        self.predictor = nn.Conv2d(conv_dims, num_classes, kernel_size=1)
        c2_msra_fill(self.predictor)

    @classmethod
    def from_config(cls, cfg: Any, input_shape: Mapping[str, ShapeSpec]) -> dict[str, Any]:
        head = cfg.MODEL.SEM_SEG_HEAD
        return {
            "input_shape": input_shape,
            "in_features": head.IN_FEATURES,
            "num_classes": head.NUM_CLASSES,
            "conv_dims": head.CONVS_DIM,
            "common_stride": head.COMMON_STRIDE,
            "norm": head.NORM,
            "loss_weight": head.LOSS_WEIGHT,
            "ignore_value": head.IGNORE_VALUE,
        }

    def layers(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Merged (N, num_classes, h, w) logits at ``common_stride``."""
        x = None
        for name, head in zip(self.in_features, self.scale_heads):
            y = head(features[name])
            # Levels of odd-sized inputs can be off by one pixel: align to the finest.
            if x is not None and y.shape[-2:] != x.shape[-2:]:
                y = F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)
            x = y if x is None else x + y
        return self.predictor(x)

    def forward(
        self, features: Mapping[str, torch.Tensor], targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Args:
            features: backbone features by name.
            targets: (N, H, W) int64 labels at the input size, or None.

        Returns:
            ``(logits, losses)`` (class docstring).
        """
        logits = F.interpolate(
            self.layers(features),
            scale_factor=self.common_stride,
            mode="bilinear",
            align_corners=False,
        )
        if targets is None:
            return logits, {}
        return logits, {"loss_sem_seg": self.losses(logits, targets)}

    def losses(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over the non-ignored pixels, times ``loss_weight``.

        Args:
            logits: (N, C, H, W) float.
            targets: (N, H', W') int64; cropped or padded (with ``ignore_value``) to H, W.

        Returns:
            Scalar loss (0 with a graph when every pixel is ignored).
        """
        h, w = logits.shape[-2:]
        if targets.shape[-2:] != (h, w):
            padded = targets.new_full((targets.shape[0], h, w), self.ignore_value)
            th, tw = min(h, targets.shape[-2]), min(w, targets.shape[-1])
            padded[:, :th, :tw] = targets[:, :th, :tw]
            targets = padded
        valid = targets != self.ignore_value
        if not bool(valid.any()):
            return logits.sum() * 0
        bad = targets[valid]
        if bool(((bad < 0) | (bad >= self.num_classes)).any()):
            raise ValueError(
                f"SemSegFPNHead: target labels {sorted(set(bad.unique().tolist()))} outside "
                f"[0, {self.num_classes}) and not the ignore value {self.ignore_value}"
            )
        loss = F.cross_entropy(logits, targets, ignore_index=self.ignore_value, reduction="mean")
        return loss * self.loss_weight
