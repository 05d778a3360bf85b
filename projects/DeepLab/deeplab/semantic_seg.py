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
from torch.nn import functional as F

from panoptic2.config import configurable
from panoptic2.modeling import (
    META_ARCH_REGISTRY,
    Backbone,
    build_backbone,
    build_sem_seg_head,
)

__all__ = ["SemanticSegmentor", "pad_images", "sem_seg_postprocess"]


def pad_images(
    tensors: Sequence[torch.Tensor], size_divisibility: int = 0, pad_value: float = 0.0
) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """Stacks tensors of different sizes into one batch, padding bottom and right.

    Args:
        tensors: each ``(..., H_i, W_i)``; the leading dims must agree.
        size_divisibility: the padded H and W are multiples of this (0 or 1: no rounding).
        pad_value: value of padded elements.

    Returns:
        ``(batch, sizes)``: ``batch`` is ``(N, ..., H, W)`` with ``H = max H_i`` (rounded up),
        same dtype as the inputs; ``sizes`` the ``(H_i, W_i)`` of each tensor.

    Raises:
        ValueError: no tensors, or tensors whose leading dims differ.
    """
    if len(tensors) == 0:
        raise ValueError("pad_images() needs at least one tensor")
    leading = tensors[0].shape[:-2]
    if any(t.shape[:-2] != leading for t in tensors):
        shapes = [tuple(t.shape) for t in tensors]
        raise ValueError(f"pad_images(): tensors differ in their leading dims: {shapes}")
    sizes = [(int(t.shape[-2]), int(t.shape[-1])) for t in tensors]
    h = max(s[0] for s in sizes)
    w = max(s[1] for s in sizes)
    if size_divisibility > 1:
        h = -(-h // size_divisibility) * size_divisibility
        w = -(-w // size_divisibility) * size_divisibility
    batch = tensors[0].new_full((len(tensors), *leading, h, w), pad_value)
    for out, t in zip(batch, tensors):
        out[..., : t.shape[-2], : t.shape[-1]].copy_(t)
    return batch, sizes


def sem_seg_postprocess(
    result: torch.Tensor, image_size: tuple[int, int], height: int, width: int
) -> torch.Tensor:
    """Crops padding from a prediction and resizes it to the original image size.

    Args:
        result: ``(C, H_pad, W_pad)`` float scores of the padded network input.
        image_size: ``(h, w)`` of the image inside the padded input (after test resizing).
        height: original image height.
        width: original image width.

    Returns:
        ``(C, height, width)`` float scores (bilinear, ``align_corners=False``).
    """
    result = result[:, : image_size[0], : image_size[1]]
    if (result.shape[-2], result.shape[-1]) == (height, width):
        return result
    return F.interpolate(result[None], size=(height, width), mode="bilinear", align_corners=False)[
        0
    ]


@META_ARCH_REGISTRY.register()
class SemanticSegmentor(nn.Module):
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
    """

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
        images = [
            (x["image"].to(self.device, non_blocking=True).float() - self.pixel_mean)
            / self.pixel_std
            for x in batched_inputs
        ]
        # Zero after normalisation is the mean colour: padding adds no signal.
        images, image_sizes = pad_images(images, self.size_divisibility, 0.0)
        features = self.backbone(images)

        if self.training:
            missing = [
                x.get("file_name", i) for i, x in enumerate(batched_inputs) if "sem_seg" not in x
            ]
            if missing:
                raise KeyError(
                    f"SemanticSegmentor needs 'sem_seg' targets in training; missing for {missing}"
                )
            targets = [x["sem_seg"].to(self.device, non_blocking=True) for x in batched_inputs]
            targets, _ = pad_images(targets, self.size_divisibility, self.ignore_value)
            _, losses = self.sem_seg_head(features, targets)
            return losses

        results, _ = self.sem_seg_head(features, None)
        processed = []
        for result, x, size in zip(results, batched_inputs, image_sizes):
            height = int(x.get("height", size[0]))
            width = int(x.get("width", size[1]))
            processed.append({"sem_seg": sem_seg_postprocess(result, size, height, width)})
        return processed
