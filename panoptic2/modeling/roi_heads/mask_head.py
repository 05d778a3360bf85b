"""Mask R-CNN's mask head (4 convs + deconv + 1x1 predictor), its loss, and mask pasting.

Detectron2 semantics: the head predicts one ``M x M`` (28x28) logit map per thing class for
each box; training takes the map of the box's ground-truth class and compares it by binary
cross-entropy with the ground-truth bitmask cropped and resized to the box by ``roi_align``;
inference takes the map of the predicted class and :func:`paste_masks_in_image` resamples it
into the image (bilinear, ``grid_sample``) and thresholds it at 0.5.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.ops import roi_align

from panoptic2.config import configurable
from panoptic2.layers import Conv2d, ShapeSpec, c2_msra_fill, get_norm

__all__ = [
    "MaskRCNNConvUpsampleHead",
    "mask_rcnn_inference",
    "mask_rcnn_loss",
    "mask_targets",
    "paste_masks_in_image",
]


class MaskRCNNConvUpsampleHead(nn.Module):
    """``num_conv`` 3x3 convs, a 2x deconv, and a 1x1 conv to one mask logit map per class.

    Args:
        input_shape: channels (and ``height``) of the pooled (R, C, P, P) region features.
        num_classes: number of thing classes (maps predicted; 1 when class-agnostic).
        conv_dims: channels of the convs and the deconv.
        num_conv: number of 3x3 convs.
        conv_norm: norm of the convs (``""`` for none), see :func:`panoptic2.layers.get_norm`.
        cls_agnostic_mask: predict a single map shared by all classes.

    Shapes: ``forward`` takes (R, C, P, P) float and returns (R, K, 2P, 2P) float logits
    (K = ``num_classes``, or 1 class-agnostic).
    """

    @configurable
    def __init__(
        self,
        input_shape: ShapeSpec,
        *,
        num_classes: int,
        conv_dims: int = 256,
        num_conv: int = 4,
        conv_norm: str = "",
        cls_agnostic_mask: bool = False,
    ) -> None:
        super().__init__()
        channels = input_shape.channels
        self.convs = nn.ModuleList()
        for _ in range(num_conv):
            conv = Conv2d(
                channels,
                conv_dims,
                kernel_size=3,
                padding=1,
                bias=not conv_norm,
                norm=get_norm(conv_norm, conv_dims),
                activation=F.relu,
            )
            self.convs.append(conv)
            channels = conv_dims
        self.deconv = nn.ConvTranspose2d(channels, conv_dims, kernel_size=2, stride=2)
        self.predictor = nn.Conv2d(conv_dims, 1 if cls_agnostic_mask else num_classes, 1)
        for layer in [*self.convs, self.deconv]:
            c2_msra_fill(layer)
        # Small initial logits, as Detectron2: the first masks are ~0.5 everywhere.
        nn.init.normal_(self.predictor.weight, std=0.001)
        nn.init.constant_(self.predictor.bias, 0)

    @classmethod
    def from_config(cls, cfg: Any, input_shape: ShapeSpec) -> dict[str, Any]:
        head = cfg.MODEL.ROI_MASK_HEAD
        return {
            "input_shape": input_shape,
            "num_classes": cfg.MODEL.ROI_HEADS.NUM_CLASSES,
            "conv_dims": head.CONV_DIM,
            "num_conv": head.NUM_CONV,
            "conv_norm": head.NORM,
            "cls_agnostic_mask": head.CLS_AGNOSTIC_MASK,
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = conv(x)
        return self.predictor(F.relu(self.deconv(x)))


def mask_targets(
    gt_masks: torch.Tensor, boxes: torch.Tensor, matched_idxs: torch.Tensor, mask_size: int
) -> torch.Tensor:
    """Ground-truth masks cropped to boxes and resized to ``mask_size`` (Detectron2's
    ``BitMasks.crop_and_resize``: aligned ``roi_align``, then >= 0.5).

    Args:
        gt_masks: (M, H, W) bool ground-truth masks of one image.
        boxes: (R, 4) float XYXY boxes in the same image.
        matched_idxs: (R,) int64 index into ``gt_masks`` of each box's ground truth.
        mask_size: side of the square targets.

    Returns:
        (R, mask_size, mask_size) float32 of 0/1.
    """
    if boxes.numel() == 0:
        return boxes.new_zeros((0, mask_size, mask_size))
    rois = torch.cat([matched_idxs.to(boxes.dtype)[:, None], boxes], dim=1)
    crops = roi_align(
        gt_masks[:, None].to(boxes.dtype), rois, (mask_size, mask_size), 1.0, 0, aligned=True
    )
    return (crops[:, 0] >= 0.5).to(torch.float32)


def mask_rcnn_loss(
    pred_mask_logits: torch.Tensor, gt_classes: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    """Mean binary cross-entropy of each foreground box's ground-truth-class mask.

    Args:
        pred_mask_logits: (R, K, M, M) float logits (K = 1 when class-agnostic).
        gt_classes: (R,) int64 0-based thing class of each (foreground) box.
        targets: (R, M, M) float 0/1 targets from :func:`mask_targets`.

    Returns:
        Scalar loss; ``0 * logits.sum()`` (keeps the graph) when there is no box.
    """
    if pred_mask_logits.shape[0] == 0:
        return pred_mask_logits.sum() * 0
    index = torch.arange(pred_mask_logits.shape[0], device=pred_mask_logits.device)
    channel = gt_classes if pred_mask_logits.shape[1] > 1 else torch.zeros_like(gt_classes)
    logits = pred_mask_logits[index, channel]
    return F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype), reduction="mean")


def mask_rcnn_inference(
    pred_mask_logits: torch.Tensor, pred_classes: Sequence[torch.Tensor]
) -> list[torch.Tensor]:
    """Mask probabilities of each detection's predicted class, split per image.

    Args:
        pred_mask_logits: (R, K, M, M) float logits of all images' detections, concatenated.
        pred_classes: per image, (R_i,) int64 0-based predicted classes (sum R_i = R).

    Returns:
        Per image, (R_i, 1, M, M) float probabilities.
    """
    classes = torch.cat(list(pred_classes)) if pred_classes else pred_mask_logits.new_zeros(0)
    if pred_mask_logits.shape[1] == 1:
        probs = pred_mask_logits.sigmoid()
    else:
        index = torch.arange(pred_mask_logits.shape[0], device=pred_mask_logits.device)
        probs = pred_mask_logits[index, classes.long()][:, None].sigmoid()
    return list(probs.split([len(c) for c in pred_classes]))


def paste_masks_in_image(
    masks: torch.Tensor, boxes: torch.Tensor, image_shape: tuple[int, int], threshold: float = 0.5
) -> torch.Tensor:
    """Pastes box-relative masks into an image (Detectron2's ``paste_masks_in_image``).

    Each ``M x M`` mask covers its box exactly: image pixel ``(x, y)``, sampled at its centre
    ``(x + 0.5, y + 0.5)``, reads the mask bilinearly at
    ``u = (x + 0.5 - x0) / (x1 - x0) * M - 0.5`` (and ``v`` likewise), with zeros outside
    the mask (``grid_sample``, ``align_corners=False``). Only the pixels of the box's integer
    bounding region are sampled; the rest of the image is 0.

    Args:
        masks: (N, M, M) or (N, 1, M, M) float probabilities.
        boxes: (N, 4) float XYXY boxes in the image.
        image_shape: ``(height, width)`` of the output.
        threshold: probability threshold; a negative value returns the soft probabilities.

    Returns:
        (N, height, width) bool masks (float32 probabilities when ``threshold < 0``).
    """
    if masks.dim() == 4:
        masks = masks[:, 0]
    if masks.shape[0] != boxes.shape[0]:
        raise ValueError(f"paste_masks_in_image: {masks.shape[0]} masks for {boxes.shape[0]} boxes")
    height, width = image_shape
    out = torch.zeros((masks.shape[0], height, width), dtype=torch.float32, device=masks.device)
    boxes = boxes.to(torch.float32)
    for i, (x0, y0, x1, y1) in enumerate(boxes.tolist()):
        # The pixels whose centres can fall inside the box; others would read only zeros.
        c0, r0 = max(int(x0) - 1, 0), max(int(y0) - 1, 0)
        c1, r1 = min(int(x1) + 2, width), min(int(y1) + 2, height)
        if c1 <= c0 or r1 <= r0:
            continue
        bw, bh = max(x1 - x0, 1e-6), max(y1 - y0, 1e-6)
        xs = (torch.arange(c0, c1, device=masks.device, dtype=torch.float32) + 0.5 - x0) / bw
        ys = (torch.arange(r0, r1, device=masks.device, dtype=torch.float32) + 0.5 - y0) / bh
        # grid_sample coordinates: -1 / +1 are the outer edges of the mask (align_corners=False).
        gy, gx = torch.meshgrid(ys * 2 - 1, xs * 2 - 1, indexing="ij")
        grid = torch.stack([gx, gy], dim=-1)[None]
        region = F.grid_sample(
            masks[i][None, None].to(torch.float32), grid, mode="bilinear", align_corners=False
        )
        out[i, r0:r1, c0:c1] = region[0, 0]
    if threshold >= 0:
        return out >= threshold
    return out
