"""DeepLabV3 and DeepLabV3+ semantic heads, registered in ``SEM_SEG_HEADS_REGISTRY``.

Both are panoptic2's :class:`DeepLabV3PlusDecoder` (ASPP on the deepest feature, then the
low-level fusion stages) followed by a 1x1 classifier:

* ``DeepLabV3Head`` (Chen et al., "Rethinking Atrous Convolution", 2017): ASPP on ``res5``
  and the classifier; logits at the output stride (16 or 8).
* ``DeepLabV3PlusHead`` (Chen et al., "Encoder-Decoder with Atrous Separable Convolution",
  2018): ASPP on ``res5``, ``res2`` projected to 48 channels, concatenated with the upsampled
  ASPP output, two 3x3 convs of 256 channels, the classifier; logits at stride 4.

The contract is Detectron2's: ``head(features, targets) -> (logits, losses)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from panoptic2.config import configurable
from panoptic2.layers import Conv2d, DeepLabV3PlusDecoder, ShapeSpec, resize_bilinear
from panoptic2.modeling import SEM_SEG_HEADS_REGISTRY, DeepLabCE

__all__ = ["DeepLabV3Head", "DeepLabV3PlusHead", "build_sem_seg_loss"]

LOSS_TYPES = ("cross_entropy", "hard_pixel_mining")


def build_sem_seg_loss(loss_type: str, ignore_value: int, top_k: float) -> nn.Module:
    """The per-pixel loss named by ``MODEL.DEEPLAB.LOSS_TYPE``.

    Args:
        loss_type: ``"cross_entropy"`` (mean over non-ignored pixels) or
            ``"hard_pixel_mining"`` (mean over the ``top_k`` fraction of the non-ignored
            pixels with the largest cross-entropy).
        ignore_value: label not counted.
        top_k: fraction in (0, 1] for hard pixel mining.

    Returns:
        A module ``loss(logits (N, C, H, W) float, labels (N, H, W) int64) -> scalar``.

    Raises:
        ValueError: an unknown ``loss_type``.
    """
    if loss_type == "cross_entropy":
        return DeepLabCE(ignore_label=ignore_value, top_k_percent_pixels=1.0)
    if loss_type == "hard_pixel_mining":
        return DeepLabCE(ignore_label=ignore_value, top_k_percent_pixels=top_k)
    raise ValueError(f"Unknown MODEL.DEEPLAB.LOSS_TYPE {loss_type!r}; expected one of {LOSS_TYPES}")


class _DeepLabHead(nn.Module):
    """Decoder + 1x1 classifier + loss; the two registered heads differ in their features.

    Args:
        input_shape: backbone output shapes by name.
        in_features: features from shallow to deep; the last feeds the ASPP.
        project_channels: 1x1 projection channels of every feature but the last.
        decoder_channels: channels after each feature's stage (the last is the ASPP's).
        aspp_dilations: ASPP atrous rates.
        aspp_dropout: dropout after the ASPP.
        aspp_pool_kernel_size: ASPP image-pooling window, or None for global pooling.
        norm: norm of every conv (``get_norm`` name).
        use_depthwise_separable_conv: separable ASPP and fusion convs.
        num_classes: number of classes ``C``.
        ignore_value: target label that is not trained on.
        loss_weight: factor of ``loss_sem_seg``.
        loss_type: ``"cross_entropy"`` or ``"hard_pixel_mining"``.
        loss_top_k: fraction of pixels kept by hard pixel mining.
    """

    @configurable
    def __init__(
        self,
        input_shape: Mapping[str, ShapeSpec],
        *,
        in_features: Sequence[str],
        project_channels: Sequence[int],
        decoder_channels: Sequence[int],
        aspp_dilations: Sequence[int],
        aspp_dropout: float,
        aspp_pool_kernel_size: Sequence[int] | None = None,
        norm: str = "BN",
        use_depthwise_separable_conv: bool = False,
        num_classes: int,
        ignore_value: int = 255,
        loss_weight: float = 1.0,
        loss_type: str = "cross_entropy",
        loss_top_k: float = 0.2,
    ) -> None:
        super().__init__()
        self.in_features = list(in_features)
        self.decoder = DeepLabV3PlusDecoder(
            input_shape,
            in_features=self.in_features,
            project_channels=project_channels,
            decoder_channels=decoder_channels,
            aspp_dilations=aspp_dilations,
            aspp_dropout=aspp_dropout,
            norm=norm,
            use_depthwise_separable_conv=use_depthwise_separable_conv,
            aspp_pool_kernel_size=aspp_pool_kernel_size,
        )
        self.predictor = Conv2d(self.decoder.out_channels, num_classes, kernel_size=1)
        # Small classifier init as in Detectron2's DeepLab heads: logits start near uniform.
        nn.init.normal_(self.predictor.weight, 0, 0.001)
        nn.init.constant_(self.predictor.bias, 0)
        self.common_stride = int(self.decoder.out_stride)
        self.num_classes = int(num_classes)
        self.ignore_value = int(ignore_value)
        self.loss_weight = float(loss_weight)
        self.loss = build_sem_seg_loss(loss_type, ignore_value, loss_top_k)

    @classmethod
    def _common_config(cls, cfg: Any, input_shape: Mapping[str, ShapeSpec]) -> dict[str, Any]:
        d = cfg.MODEL.DEEPLAB
        pool = list(d.ASPP_POOL_KERNEL_SIZE) or None
        return {
            "input_shape": input_shape,
            "aspp_dilations": d.ASPP_DILATIONS,
            "aspp_dropout": d.ASPP_DROPOUT,
            "aspp_pool_kernel_size": pool,
            "norm": cfg.MODEL.SEM_SEG_HEAD.NORM,
            "use_depthwise_separable_conv": d.USE_DEPTHWISE_SEPARABLE_CONV,
            "num_classes": cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES,
            "ignore_value": cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE,
            "loss_weight": cfg.MODEL.SEM_SEG_HEAD.LOSS_WEIGHT,
            "loss_type": d.LOSS_TYPE,
            "loss_top_k": d.LOSS_TOP_K,
        }

    def layers(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Args:
            features: backbone features by name, ``(N, C_f, H_f, W_f)`` float.

        Returns:
            ``(N, C, H_0, W_0)`` float logits at the stride of ``in_features[0]``.
        """
        return self.predictor(self.decoder(features))

    def forward(
        self, features: Mapping[str, torch.Tensor], targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor | None, dict[str, torch.Tensor]]:
        """Args:
            features: backbone features by name.
            targets: ``(N, H, W)`` int64 labels of the (padded) input, in training.

        Returns:
            Training: ``(None, {"loss_sem_seg": scalar})``. Inference: ``((N, C, H, W)
            float logits upsampled by the head's stride, {})``.
        """
        y = self.layers(features)
        if self.training:
            return None, self.losses(y, targets)
        y = resize_bilinear(y, scale_factor=self.common_stride)
        return y, {}

    def losses(self, logits: torch.Tensor, targets: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """Upsamples logits to the label size, then the configured per-pixel loss.

        Args:
            logits: ``(N, C, h, w)`` float at the head's stride.
            targets: ``(N, H, W)`` int64 labels, ``ignore_value`` not counted.

        Returns:
            ``{"loss_sem_seg": scalar}`` times ``loss_weight``.

        Raises:
            ValueError: no targets.
        """
        if targets is None:
            raise ValueError(f"{type(self).__name__} needs targets in training mode")
        logits = resize_bilinear(logits, size=targets.shape[-2:])
        return {"loss_sem_seg": self.loss(logits, targets) * self.loss_weight}


@SEM_SEG_HEADS_REGISTRY.register()
class DeepLabV3Head(_DeepLabHead):
    """DeepLabV3: ASPP on ``MODEL.DEEPLAB.IN_FEATURE`` (``res5``) and a 1x1 classifier.

    Built from a config as ``DeepLabV3Head(cfg, input_shape)``; see :class:`_DeepLabHead`
    for the keyword arguments. The ASPP has ``MODEL.DEEPLAB.ASPP_CHANNELS`` channels.
    """

    @classmethod
    def from_config(cls, cfg: Any, input_shape: Mapping[str, ShapeSpec]) -> dict[str, Any]:
        d = cfg.MODEL.DEEPLAB
        return {
            **cls._common_config(cfg, input_shape),
            "in_features": [d.IN_FEATURE],
            "project_channels": [],
            "decoder_channels": [d.ASPP_CHANNELS],
        }


@SEM_SEG_HEADS_REGISTRY.register()
class DeepLabV3PlusHead(_DeepLabHead):
    """DeepLabV3+: ASPP, low-level projections (``res2`` -> 48), fusion convs, classifier.

    Built from a config as ``DeepLabV3PlusHead(cfg, input_shape)``; see
    :class:`_DeepLabHead` for the keyword arguments.
    """

    @classmethod
    def from_config(cls, cfg: Any, input_shape: Mapping[str, ShapeSpec]) -> dict[str, Any]:
        d = cfg.MODEL.DEEPLAB
        if len(d.PROJECT_FEATURES) != len(d.PROJECT_CHANNELS):
            raise ValueError(
                f"MODEL.DEEPLAB.PROJECT_FEATURES {list(d.PROJECT_FEATURES)} and "
                f"PROJECT_CHANNELS {list(d.PROJECT_CHANNELS)} must have the same length"
            )
        if not d.PROJECT_FEATURES:
            raise ValueError(
                "DeepLabV3PlusHead needs MODEL.DEEPLAB.PROJECT_FEATURES (e.g. [res2]); "
                "use DeepLabV3Head for ASPP alone"
            )
        n = len(d.PROJECT_FEATURES)
        return {
            **cls._common_config(cfg, input_shape),
            "in_features": [*d.PROJECT_FEATURES, d.IN_FEATURE],
            "project_channels": d.PROJECT_CHANNELS,
            "decoder_channels": [d.DECODER_CHANNELS] * n + [d.ASPP_CHANNELS],
        }
