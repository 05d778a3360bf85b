"""Panoptic-DeepLab's two branches: the semantic head and the instance (center/offset) head.

Each branch has its own :class:`~panoptic2.layers.DeepLabV3PlusDecoder` (ASPP + low-level
projections), as published (Cheng et al., CVPR 2020; Detectron2's ``projects/
Panoptic-DeepLab``; DeepLab2's ``panoptic_deeplab``). Predictions are made at the decoder's
stride (``common_stride``, 4) and upsampled bilinearly to the input size.

Two options build Detectron2's module structure exactly (its checkpoints then load through
the ``detectron2_deeplab`` weight converter): Detectron2's depthwise-separable models keep
the center tower as two 3x3 convs (``center_head_depthwise_separable_conv=False``), and its
COCO models have no classifier output for COCO's void class (``predict_ignore_class=False``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from panoptic2.config import configurable
from panoptic2.layers import Conv2d, ShapeSpec
from panoptic2.layers.conv import conv3x3_norm_relu
from panoptic2.layers.deeplab_blocks import DeepLabV3PlusDecoder
from panoptic2.layers.resize import resize_bilinear
from panoptic2.layers.separable_conv import DepthwiseSeparableConv2d

from ..losses import DeepLabCE, center_mse_loss, offset_l1_loss
from .build import INS_EMBED_HEADS_REGISTRY, SEM_SEG_HEADS_REGISTRY

__all__ = ["PanopticDeepLabInsEmbedHead", "PanopticDeepLabSemSegHead", "decoder_args_from_config"]

_LOSS_TYPES = ("cross_entropy", "hard_pixel_mining")
# Logit of the ignore class when the classifier has no output for it. Finite, so that the
# bilinear resizing of the logits (whose zero-weight taps would turn -inf into NaN) keeps it;
# low enough that its softmax probability is exactly 0 in float32 and float16.
_IGNORE_CLASS_LOGIT = -1e4


def _depthwise(cfg: Any, head_cfg: Any) -> bool:
    """The head's USE_DEPTHWISE_SEPARABLE_CONV, or MODEL.PANOPTIC_DEEPLAB's for both heads."""
    return bool(
        head_cfg.USE_DEPTHWISE_SEPARABLE_CONV
        or cfg.MODEL.PANOPTIC_DEEPLAB.USE_DEPTHWISE_SEPARABLE_CONV
    )


def decoder_args_from_config(
    cfg: Any, head_cfg: Any, input_shape: Mapping[str, ShapeSpec]
) -> dict[str, Any]:
    """Decoder keyword arguments from a head's config node (``MODEL.SEM_SEG_HEAD`` or
    ``MODEL.INS_EMBED_HEAD``).

    The ASPP image pooling averages over the training crop divided by the encoder stride
    when ``INPUT.CROP.ENABLED`` (Detectron2), so that larger test images see the same
    pooling extent; otherwise it pools globally.

    Args:
        cfg: the root config.
        head_cfg: the head's config node.
        input_shape: backbone output shapes by name.

    Returns:
        Keyword arguments of :class:`DeepLabV3PlusDecoder` plus ``input_shape``.
    """
    in_features = list(head_cfg.IN_FEATURES)
    pool_kernel_size = None
    if cfg.INPUT.CROP.ENABLED and in_features[-1] in input_shape:
        stride = input_shape[in_features[-1]].stride
        crop_h, crop_w = cfg.INPUT.CROP.SIZE
        pool_kernel_size = (crop_h // stride, crop_w // stride)
    return {
        "input_shape": input_shape,
        "in_features": in_features,
        "project_channels": list(head_cfg.PROJECT_CHANNELS),
        # Every fusion stage outputs CONVS_DIM channels; the ASPP outputs ASPP_CHANNELS.
        "decoder_channels": [head_cfg.CONVS_DIM] * (len(in_features) - 1)
        + [head_cfg.ASPP_CHANNELS],
        "aspp_dilations": list(head_cfg.ASPP_DILATIONS),
        "aspp_dropout": head_cfg.ASPP_DROPOUT,
        "norm": head_cfg.NORM,
        "use_depthwise_separable_conv": _depthwise(cfg, head_cfg),
        "aspp_pool_kernel_size": pool_kernel_size,
    }


def _head_tower(in_channels: int, head_channels: int, norm: str, depthwise: bool) -> nn.Module:
    """The conv tower before a 1x1 predictor: two 3x3 conv-norm-ReLU (in -> in -> head), or
    one 5x5 depthwise-separable conv with the same receptive field."""
    if depthwise:
        return DepthwiseSeparableConv2d(
            in_channels,
            head_channels,
            kernel_size=5,
            padding=2,
            norm1=norm,
            activation1=F.relu,
            norm2=norm,
            activation2=F.relu,
        )
    return nn.Sequential(
        conv3x3_norm_relu(in_channels, in_channels, norm),
        conv3x3_norm_relu(in_channels, head_channels, norm),
    )


def _predictor(in_channels: int, out_channels: int) -> Conv2d:
    # Small initial predictions (Detectron2: normal, std 0.001) keep the first losses sane.
    conv = Conv2d(in_channels, out_channels, kernel_size=1)
    nn.init.normal_(conv.weight, 0, 0.001)
    nn.init.constant_(conv.bias, 0)
    return conv


def _upsample(x: torch.Tensor, scale: int) -> torch.Tensor:
    return resize_bilinear(x, scale_factor=scale)


@SEM_SEG_HEADS_REGISTRY.register()
class PanopticDeepLabSemSegHead(nn.Module):
    """Semantic branch: decoder, head tower, 1x1 classifier; cross-entropy with hard pixel
    mining.

    Args:
        decoder: the branch's decoder (a :class:`DeepLabV3PlusDecoder`, or any module with
            ``out_channels`` and ``out_stride`` mapping features to one map).
        head_channels: channels of the head tower.
        num_classes: number of semantic classes ``C``.
        norm: norm of the head tower.
        use_depthwise_separable_conv: head tower as one 5x5 depthwise-separable conv.
        ignore_value: label ignored by the loss.
        loss_weight: multiplier of the loss.
        loss_type: "hard_pixel_mining" (mean over the ``loss_top_k`` fraction of valid pixels
            with the largest loss) or "cross_entropy" (mean over all valid pixels).
        loss_top_k: fraction of pixels kept by hard pixel mining.
        common_stride: stride of the decoder output; predictions are upsampled by it.
        predict_ignore_class: whether the classifier has an output for ``ignore_value``.
            ``False`` (``ignore_value`` must be a class, e.g. COCO's void 0): the classifier
            has ``C - 1`` outputs, for the other classes in order, and the ignore class gets
            the constant logit -1e4 (softmax probability 0); Detectron2's COCO models are
            built so.

    Shapes: ``forward(features, targets, weights)``: features from the backbone, targets
    (N, H, W) int64, weights (N, H, W) float; predictions (N, C, H, W) float with
    ``H = common_stride * H_0``.
    """

    @configurable
    def __init__(
        self,
        *,
        decoder: nn.Module,
        head_channels: int,
        num_classes: int,
        norm: str,
        use_depthwise_separable_conv: bool = False,
        ignore_value: int = -1,
        loss_weight: float = 1.0,
        loss_type: str = "hard_pixel_mining",
        loss_top_k: float = 0.2,
        common_stride: int = 4,
        predict_ignore_class: bool = True,
    ) -> None:
        super().__init__()
        if loss_type not in _LOSS_TYPES:
            raise ValueError(f"Unknown semantic loss_type {loss_type!r}; valid: {_LOSS_TYPES}")
        if decoder.out_stride is not None and decoder.out_stride != common_stride:
            raise ValueError(
                f"PanopticDeepLabSemSegHead: common_stride {common_stride} differs from the "
                f"decoder's output stride {decoder.out_stride}"
            )
        self.decoder = decoder
        self.head = _head_tower(
            decoder.out_channels, head_channels, norm, use_depthwise_separable_conv
        )
        # Channel of the ignore class filled with a constant; None when it is predicted.
        self.constant_ignore_channel: int | None = None
        if not predict_ignore_class:
            if not 0 <= ignore_value < num_classes:
                raise ValueError(
                    f"PanopticDeepLabSemSegHead: predict_ignore_class=False needs the ignore "
                    f"value to be one of the {num_classes} classes, got {ignore_value}"
                )
            self.constant_ignore_channel = ignore_value
        self.predictor = _predictor(
            head_channels, num_classes - (self.constant_ignore_channel is not None)
        )
        self.num_classes = num_classes
        self.ignore_value = ignore_value
        self.loss_weight = loss_weight
        self.common_stride = common_stride
        top_k = loss_top_k if loss_type == "hard_pixel_mining" else 1.0
        self.loss = DeepLabCE(ignore_label=ignore_value, top_k_percent_pixels=top_k)

    @classmethod
    def from_config(cls, cfg: Any, input_shape: Mapping[str, ShapeSpec]) -> dict[str, Any]:
        head = cfg.MODEL.SEM_SEG_HEAD
        return {
            "decoder": DeepLabV3PlusDecoder(**decoder_args_from_config(cfg, head, input_shape)),
            "head_channels": head.HEAD_CHANNELS,
            "num_classes": head.NUM_CLASSES,
            "norm": head.NORM,
            "use_depthwise_separable_conv": _depthwise(cfg, head),
            "ignore_value": head.IGNORE_VALUE,
            "loss_weight": head.LOSS_WEIGHT,
            "loss_type": head.LOSS_TYPE,
            "loss_top_k": head.LOSS_TOP_K,
            "common_stride": head.COMMON_STRIDE,
            "predict_ignore_class": head.PREDICT_IGNORE_CLASS,
        }

    def layers(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Logits at the decoder stride: (N, C, H / common_stride, W / common_stride); the
        ignore class's channel is the constant -1e4 when ``predict_ignore_class`` is False."""
        logits = self.predictor(self.head(self.decoder(features)))
        index = self.constant_ignore_channel
        if index is None:
            return logits
        constant = torch.full_like(logits[:, :1], _IGNORE_CLASS_LOGIT)
        return torch.cat([logits[:, :index], constant, logits[:, index:]], dim=1)

    def forward(
        self,
        features: Mapping[str, torch.Tensor],
        targets: torch.Tensor | None = None,
        weights: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Args:
            features: backbone features by name.
            targets: (N, H, W) int64 labels at the input size (training only).
            weights: optional (N, H, W) float pixel weights of the loss.

        Returns:
            ``(logits, losses)``: (N, C, H, W) float logits at the input size and, in
            training, ``{"loss_sem_seg"}`` (else ``{}``).
        """
        logits = _upsample(self.layers(features), self.common_stride)
        if not self.training:
            return logits, {}
        if targets is None:
            raise ValueError("PanopticDeepLabSemSegHead needs targets (sem_seg) in training")
        loss = self.loss(logits, targets, weights)
        return logits, {"loss_sem_seg": loss * self.loss_weight}


@INS_EMBED_HEADS_REGISTRY.register()
class PanopticDeepLabInsEmbedHead(nn.Module):
    """Instance branch: decoder, then a center head (1 channel) and an offset head (2
    channels, (dy, dx) in input pixels); MSE center loss and L1 offset loss.

    Args:
        decoder: the branch's decoder.
        head_channels: channels of each head tower.
        norm: norm of the head towers.
        use_depthwise_separable_conv: head towers as 5x5 depthwise-separable convs.
        center_head_depthwise_separable_conv: the center tower's kind on its own: None
            follows ``use_depthwise_separable_conv``; False keeps two 3x3 convs while the
            offset tower is depthwise-separable (Detectron2's depthwise-separable models).
        center_loss_weight: multiplier of the center loss (200 as published).
        offset_loss_weight: multiplier of the offset loss (0.01 as published).
        common_stride: stride of the decoder output.

    Shapes: center (N, 1, H, W) float, offset (N, 2, H, W) float at the input size; offsets
    are multiplied by ``common_stride`` when upsampled, since they are displacements in
    pixels of the map they are predicted on.
    """

    @configurable
    def __init__(
        self,
        *,
        decoder: nn.Module,
        head_channels: int,
        norm: str,
        use_depthwise_separable_conv: bool = False,
        center_head_depthwise_separable_conv: bool | None = None,
        center_loss_weight: float = 200.0,
        offset_loss_weight: float = 0.01,
        common_stride: int = 4,
    ) -> None:
        super().__init__()
        if decoder.out_stride is not None and decoder.out_stride != common_stride:
            raise ValueError(
                f"PanopticDeepLabInsEmbedHead: common_stride {common_stride} differs from the "
                f"decoder's output stride {decoder.out_stride}"
            )
        center_option = center_head_depthwise_separable_conv
        if not (center_option is None or isinstance(center_option, bool)):
            raise TypeError(
                "PanopticDeepLabInsEmbedHead: center_head_depthwise_separable_conv must be "
                f"None, True or False, got {center_option!r}"
            )
        self.decoder = decoder
        channels = decoder.out_channels
        center_depthwise = use_depthwise_separable_conv if center_option is None else center_option
        self.center_head = _head_tower(channels, head_channels, norm, center_depthwise)
        self.center_predictor = _predictor(head_channels, 1)
        self.offset_head = _head_tower(channels, head_channels, norm, use_depthwise_separable_conv)
        self.offset_predictor = _predictor(head_channels, 2)
        self.center_loss_weight = center_loss_weight
        self.offset_loss_weight = offset_loss_weight
        self.common_stride = common_stride

    @classmethod
    def from_config(cls, cfg: Any, input_shape: Mapping[str, ShapeSpec]) -> dict[str, Any]:
        head = cfg.MODEL.INS_EMBED_HEAD
        return {
            "decoder": DeepLabV3PlusDecoder(**decoder_args_from_config(cfg, head, input_shape)),
            "head_channels": head.HEAD_CHANNELS,
            "norm": head.NORM,
            "use_depthwise_separable_conv": _depthwise(cfg, head),
            "center_head_depthwise_separable_conv": head.CENTER_HEAD_USE_DEPTHWISE_SEPARABLE_CONV,
            "center_loss_weight": head.CENTER_LOSS_WEIGHT,
            "offset_loss_weight": head.OFFSET_LOSS_WEIGHT,
            "common_stride": head.COMMON_STRIDE,
        }

    def layers(self, features: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Center (N, 1, h, w) and offset (N, 2, h, w) at the decoder stride (offsets in
        decoder-stride pixels)."""
        y = self.decoder(features)
        center = self.center_predictor(self.center_head(y))
        offset = self.offset_predictor(self.offset_head(y))
        return center, offset

    def forward(
        self,
        features: Mapping[str, torch.Tensor],
        center_targets: torch.Tensor | None = None,
        center_weights: torch.Tensor | None = None,
        offset_targets: torch.Tensor | None = None,
        offset_weights: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Args:
            features: backbone features by name.
            center_targets: (N, 1, H, W) float heatmaps (training only).
            center_weights: (N, H, W) float.
            offset_targets: (N, 2, H, W) float offsets (dy, dx).
            offset_weights: (N, H, W) float.

        Returns:
            ``(center, offset, losses)``: (N, 1, H, W) and (N, 2, H, W) float at the input
            size and, in training, ``{"loss_center", "loss_offset"}`` (else ``{}``).
        """
        center, offset = self.layers(features)
        center = _upsample(center, self.common_stride)
        offset = _upsample(offset, self.common_stride) * self.common_stride
        if not self.training:
            return center, offset, {}
        given = (center_targets, center_weights, offset_targets, offset_weights)
        if any(t is None for t in given):
            raise ValueError(
                "PanopticDeepLabInsEmbedHead needs center/offset targets and weights in training"
            )
        losses = {
            "loss_center": center_mse_loss(center, center_targets, center_weights)
            * self.center_loss_weight,
            "loss_offset": offset_l1_loss(offset, offset_targets, offset_weights)
            * self.offset_loss_weight,
        }
        return center, offset, losses
