"""The Fast R-CNN box predictor: class scores, class-specific box deltas, losses, inference.

Detectron2 semantics. Classes are 0-based thing indices ``0..K-1`` and ``K`` is background.
Training: cross-entropy over ``K + 1`` classes on all sampled proposals, and a smooth-L1
(``beta`` 0: L1) loss of the ground-truth class's deltas on the foreground proposals, summed
and divided by the number of sampled proposals. Inference: softmax scores, decoded boxes
clipped to the image, a score threshold, per-class NMS and a top-k per image.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.ops import batched_nms, clip_boxes_to_image

from panoptic2.config import configurable
from panoptic2.modeling.box_regression import Box2BoxTransform, smooth_l1_loss

__all__ = ["FastRCNNOutputLayers", "fast_rcnn_inference_single_image"]


def fast_rcnn_inference_single_image(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    image_size: tuple[int, int],
    score_thresh: float,
    nms_thresh: float,
    topk_per_image: int,
) -> dict[str, torch.Tensor]:
    """Detections of one image from per-class boxes and scores.

    Args:
        boxes: (R, K, 4) float decoded boxes, one per thing class (or (R, 1, 4) agnostic).
        scores: (R, K + 1) float softmax scores, background last.
        image_size: ``(height, width)`` the boxes are clipped to.
        score_thresh: keep (box, class) pairs scoring above this.
        nms_thresh: IoU threshold of the per-class NMS.
        topk_per_image: most detections kept (< 0: all).

    Returns:
        ``{"pred_boxes" (N, 4) float, "scores" (N,) float, "pred_classes" (N,) int64}``
        sorted by decreasing score.
    """
    valid = torch.isfinite(boxes).all(dim=(1, 2)) & torch.isfinite(scores).all(dim=1)
    boxes, scores = boxes[valid], scores[valid, :-1]
    num_classes = scores.shape[1]
    boxes = clip_boxes_to_image(boxes.reshape(-1, 4), image_size).view(-1, boxes.shape[1], 4)
    if boxes.shape[1] == 1 and num_classes > 1:
        boxes = boxes.expand(-1, num_classes, 4)
    keep_mask = scores > score_thresh
    idx = keep_mask.nonzero()
    boxes = boxes[idx[:, 0], idx[:, 1]]
    kept_scores = scores[keep_mask]
    keep = batched_nms(boxes, kept_scores, idx[:, 1], nms_thresh)
    if topk_per_image >= 0:
        keep = keep[:topk_per_image]
    return {
        "pred_boxes": boxes[keep],
        "scores": kept_scores[keep],
        "pred_classes": idx[keep, 1],
    }


class FastRCNNOutputLayers(nn.Module):
    """Two linear layers on the box head's features: ``K + 1`` class logits and
    ``4 K`` (class-specific) or 4 (agnostic) box deltas.

    Args:
        input_size: width of the box head's output features.
        num_classes: number of thing classes K (background is added).
        box2box_transform: the box coder (``get_deltas``/``apply_deltas``), e.g.
            ``Box2BoxTransform(weights=(10, 10, 5, 5))``.
        cls_agnostic_bbox_reg: one set of deltas shared by all classes.
        smooth_l1_beta: beta of the box loss (0: L1).
        box_reg_loss_weight: weight of ``loss_box_reg``.
        test_score_thresh: inference score threshold.
        test_nms_thresh: inference per-class NMS IoU threshold.
        test_topk_per_image: inference detections per image.
    """

    @configurable
    def __init__(
        self,
        *,
        input_size: int,
        num_classes: int,
        box2box_transform: Any,
        cls_agnostic_bbox_reg: bool = False,
        smooth_l1_beta: float = 0.0,
        box_reg_loss_weight: float = 1.0,
        test_score_thresh: float = 0.05,
        test_nms_thresh: float = 0.5,
        test_topk_per_image: int = 100,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.cls_score = nn.Linear(input_size, num_classes + 1)
        self.bbox_pred = nn.Linear(input_size, 4 if cls_agnostic_bbox_reg else 4 * num_classes)
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        for layer in (self.cls_score, self.bbox_pred):
            nn.init.constant_(layer.bias, 0)
        self.box2box_transform = box2box_transform
        self.smooth_l1_beta = smooth_l1_beta
        self.box_reg_loss_weight = box_reg_loss_weight
        self.test_score_thresh = test_score_thresh
        self.test_nms_thresh = test_nms_thresh
        self.test_topk_per_image = test_topk_per_image

    @classmethod
    def from_config(cls, cfg: Any, input_size: int) -> dict[str, Any]:
        head = cfg.MODEL.ROI_BOX_HEAD
        if head.BBOX_REG_LOSS_TYPE != "smooth_l1":
            raise ValueError(
                f"MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE {head.BBOX_REG_LOSS_TYPE!r} is not "
                "supported; use 'smooth_l1' (SMOOTH_L1_BETA 0 gives L1)"
            )
        return {
            "input_size": input_size,
            "num_classes": cfg.MODEL.ROI_HEADS.NUM_CLASSES,
            "box2box_transform": Box2BoxTransform(weights=tuple(head.BBOX_REG_WEIGHTS)),
            "cls_agnostic_bbox_reg": head.CLS_AGNOSTIC_BBOX_REG,
            "smooth_l1_beta": head.SMOOTH_L1_BETA,
            "box_reg_loss_weight": head.BBOX_REG_LOSS_WEIGHT,
            "test_score_thresh": cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST,
            "test_nms_thresh": cfg.MODEL.ROI_HEADS.NMS_THRESH_TEST,
            "test_topk_per_image": cfg.TEST.DETECTIONS_PER_IMAGE,
        }

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Args:
            x: (R, D) float box features.

        Returns:
            ``(scores, deltas)``: (R, K + 1) logits and (R, 4K) or (R, 4) deltas.
        """
        return self.cls_score(x), self.bbox_pred(x)

    def losses(
        self,
        predictions: tuple[torch.Tensor, torch.Tensor],
        proposal_boxes: torch.Tensor,
        gt_classes: torch.Tensor,
        gt_boxes: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """Classification and box regression losses of the sampled proposals.

        Args:
            predictions: ``forward``'s output for the R sampled proposals of all images.
            proposal_boxes: (R, 4) float XYXY proposals.
            gt_classes: (R,) int64 targets, ``K`` for background.
            gt_boxes: (R, 4) float matched ground-truth boxes (ignored for background).

        Returns:
            ``{"loss_cls", "loss_box_reg"}`` scalars.
        """
        scores, deltas = predictions
        if scores.shape[0] == 0:
            zero = scores.sum() * 0 + deltas.sum() * 0
            return {"loss_cls": zero, "loss_box_reg": zero}
        loss_cls = F.cross_entropy(scores, gt_classes, reduction="mean")
        fg = ((gt_classes >= 0) & (gt_classes < self.num_classes)).nonzero().flatten()
        if deltas.shape[1] == 4:
            fg_deltas = deltas[fg]
        else:
            fg_deltas = deltas.view(-1, self.num_classes, 4)[fg, gt_classes[fg]]
        targets = self.box2box_transform.get_deltas(proposal_boxes[fg], gt_boxes[fg])
        # Normalised by all sampled proposals, not only the foreground (Detectron2).
        loss_box_reg = smooth_l1_loss(fg_deltas, targets, self.smooth_l1_beta, "sum") / max(
            gt_classes.numel(), 1
        )
        return {"loss_cls": loss_cls, "loss_box_reg": loss_box_reg * self.box_reg_loss_weight}

    def predict_boxes(
        self, deltas: torch.Tensor, proposal_boxes: Sequence[torch.Tensor]
    ) -> list[torch.Tensor]:
        """Decoded boxes per image, (R_i, K, 4) (or (R_i, 1, 4) class-agnostic)."""
        if not proposal_boxes:
            return []
        boxes = torch.cat(list(proposal_boxes))
        per_box = deltas.shape[1] // 4
        decoded = self.box2box_transform.apply_deltas(
            deltas.reshape(-1, 4), boxes.repeat_interleave(per_box, dim=0)
        ).view(-1, per_box, 4)
        return list(decoded.split([len(b) for b in proposal_boxes]))

    def inference(
        self,
        predictions: tuple[torch.Tensor, torch.Tensor],
        proposal_boxes: Sequence[torch.Tensor],
        image_sizes: Sequence[tuple[int, int]],
    ) -> list[dict[str, torch.Tensor]]:
        """Per-image detections (see :func:`fast_rcnn_inference_single_image`)."""
        scores, deltas = predictions
        boxes = self.predict_boxes(deltas, proposal_boxes)
        probs = F.softmax(scores, dim=-1).split([len(b) for b in proposal_boxes])
        return [
            fast_rcnn_inference_single_image(
                b,
                p,
                size,
                self.test_score_thresh,
                self.test_nms_thresh,
                self.test_topk_per_image,
            )
            for b, p, size in zip(boxes, probs, image_sizes)
        ]
