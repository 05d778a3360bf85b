"""``SemanticSegmentor``: a backbone and a semantic head, trained per pixel (Detectron2's name).

The meta-architecture normalises and pads the images of a batch, runs the backbone and the
head named by ``MODEL.SEM_SEG_HEAD.NAME``, and returns the head's losses in training or one
``{"sem_seg": (C, H, W) scores}`` per image at its original size in inference.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from panoptic2.config import configurable
from panoptic2.data.label_space import LabelSpace, label_space_from_config
from panoptic2.modeling import (
    META_ARCH_REGISTRY,
    Backbone,
    build_backbone,
    build_sem_seg_head,
)
from panoptic2.modeling.meta_arch import LabelSpaceMixin, preprocess_images, sem_seg_postprocess
from panoptic2.structures import ImageList

__all__ = ["SemanticSegmentor"]


@META_ARCH_REGISTRY.register()
class SemanticSegmentor(LabelSpaceMixin, nn.Module):
    """A backbone plus a semantic segmentation head (DeepLabV3 / DeepLabV3+ heads here).

    The head is called as ``head(features, targets)`` and returns ``(logits, losses)``:
    ``(None, {"loss_sem_seg": ...})`` in training, ``((N, C, H_pad, W_pad) scores, {})`` in
    inference (the contract of Detectron2's semantic heads).

    Args:
        backbone: the feature extractor.
        sem_seg_head: the head (see above).
        pixel_mean: per-channel mean (0-255 scale, ``INPUT.FORMAT`` order).
        pixel_std: per-channel std.
        size_divisibility: padded batch sides are multiples of this; 0 takes the largest
            output stride of ``backbone`` (so the head's upsampled logits align with pixels).
        ignore_value: label of padded target pixels (not trained on).
        label_space: the classes (names for predictions; None until known).
    """

    # What MODEL.COMPILE compiles, each part as one graph (panoptic2.modeling.compile).
    compiled_parts = ("backbone", "sem_seg_head")

    @configurable
    def __init__(
        self,
        *,
        backbone: Backbone,
        sem_seg_head: nn.Module,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        size_divisibility: int = 0,
        ignore_value: int = 255,
        label_space: LabelSpace | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.sem_seg_head = sem_seg_head
        if len(pixel_mean) != len(pixel_std):
            raise ValueError(
                f"pixel_mean has {len(pixel_mean)} channels but pixel_std {len(pixel_std)}"
            )
        if size_divisibility <= 0:
            strides = [s.stride for s in backbone.output_shape().values()]
            size_divisibility = max([backbone.size_divisibility, *strides])
        self.size_divisibility = int(size_divisibility)
        self.ignore_value = int(ignore_value)
        # Not persistent: checkpoints hold weights only, the statistics come from the config.
        self.register_buffer(
            "pixel_mean", torch.tensor(pixel_mean, dtype=torch.float32).view(-1, 1, 1), False
        )
        self.register_buffer(
            "pixel_std", torch.tensor(pixel_std, dtype=torch.float32).view(-1, 1, 1), False
        )
        self.label_space = label_space

    @classmethod
    def from_config(cls, cfg: Any) -> dict[str, Any]:
        backbone = build_backbone(cfg)
        return {
            "backbone": backbone,
            "sem_seg_head": build_sem_seg_head(cfg, backbone.output_shape()),
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "size_divisibility": cfg.MODEL.DEEPLAB.SIZE_DIVISIBILITY,
            "ignore_value": cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE,
            "label_space": label_space_from_config(cfg),
        }

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def forward(
        self, batched_inputs: list[dict[str, Any]]
    ) -> dict[str, torch.Tensor] | list[dict[str, torch.Tensor]]:
        """Args:
            batched_inputs: mapper outputs, each with ``image`` (3, H, W) uint8/float in
                ``INPUT.FORMAT`` order, ``sem_seg`` (H, W) int64 (training), and optionally
                ``height``/``width`` (output size; default the image size).

        Returns:
            Training: ``{"loss_sem_seg": scalar}``. Inference: per image
            ``{"sem_seg": (C, height, width) float}`` class scores (logits).

        Raises:
            KeyError: training without ``sem_seg`` targets (names the image).
        """
        images = preprocess_images(
            batched_inputs, self.pixel_mean, self.pixel_std, self.size_divisibility
        )
        image_sizes = images.image_sizes
        features = self.backbone(images.tensor)

        if self.training:
            missing = [
                x.get("file_name", i) for i, x in enumerate(batched_inputs) if "sem_seg" not in x
            ]
            if missing:
                raise KeyError(
                    f"SemanticSegmentor needs 'sem_seg' targets in training; missing for {missing}"
                )
            targets = [x["sem_seg"].to(self.device, non_blocking=True) for x in batched_inputs]
            targets = ImageList.from_tensors(
                targets, self.size_divisibility, self.ignore_value
            ).tensor
            _, losses = self.sem_seg_head(features, targets)
            return losses

        results, _ = self.sem_seg_head(features, None)
        processed = []
        for result, x, size in zip(results, batched_inputs, image_sizes):
            height = int(x.get("height", size[0]))
            width = int(x.get("width", size[1]))
            processed.append({"sem_seg": sem_seg_postprocess(result, size, height, width)})
        return processed
