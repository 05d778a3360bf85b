"""Box coding: the (dx, dy, dw, dh) parameterisation of R-CNN and the dense box losses.

Detectron2 semantics (``detectron2.modeling.box_regression``): for a source box with centre
``(x, y)`` and size ``(w, h)`` and a target box ``(x', y', w', h')``, with weights
``(wx, wy, ww, wh)``::

    dx = wx * (x' - x) / w      dy = wy * (y' - y) / h
    dw = ww * log(w' / w)       dh = wh * log(h' / h)

Widths are ``x1 - x0`` (no "+1"), boxes are (N, 4) float XYXY absolute pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch.nn import functional as F
from torchvision.ops import ciou_loss, diou_loss, generalized_box_iou_loss

__all__ = ["Box2BoxTransform", "dense_box_regression_loss", "smooth_l1_loss"]

# Largest dw/dh applied, so that exp() cannot blow up a box beyond 1000 / 16 = 62.5 times
# its anchor (Detectron2's default, chosen for 16-pixel anchors on 1000-pixel images).
_DEFAULT_SCALE_CLAMP = math.log(1000.0 / 16)


class Box2BoxTransform:
    """Encodes a target box relative to a source box as deltas, and decodes deltas back.

    Args:
        weights: ``(wx, wy, ww, wh)`` scales of the deltas; (1, 1, 1, 1) for the RPN,
            (10, 10, 5, 5) for Fast R-CNN box heads.
        scale_clamp: ``dw`` and ``dh`` are clamped to at most this value in
            :meth:`apply_deltas` (after dividing by the weights).
    """

    def __init__(
        self,
        weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
        scale_clamp: float = _DEFAULT_SCALE_CLAMP,
    ) -> None:
        if len(weights) != 4:
            raise ValueError(f"Box2BoxTransform needs 4 weights (wx, wy, ww, wh), got {weights}")
        self.weights = tuple(float(w) for w in weights)
        self.scale_clamp = float(scale_clamp)

    def get_deltas(self, src_boxes: torch.Tensor, target_boxes: torch.Tensor) -> torch.Tensor:
        """Deltas that turn each source box into its target box.

        Args:
            src_boxes: (N, 4) float XYXY, e.g. anchors or proposals; positive sizes.
            target_boxes: (N, 4) float XYXY, e.g. matched ground-truth boxes.

        Returns:
            (N, 4) float deltas ``(dx, dy, dw, dh)``.

        Raises:
            ValueError: a source box has zero or negative width or height.
        """
        if src_boxes.shape != target_boxes.shape or src_boxes.shape[-1:] != (4,):
            raise ValueError(
                f"get_deltas needs two (N, 4) tensors, got {tuple(src_boxes.shape)} and "
                f"{tuple(target_boxes.shape)}"
            )
        src_w = src_boxes[:, 2] - src_boxes[:, 0]
        src_h = src_boxes[:, 3] - src_boxes[:, 1]
        if not bool(((src_w > 0) & (src_h > 0)).all()):
            raise ValueError("get_deltas: source boxes must have positive width and height")
        src_x = src_boxes[:, 0] + 0.5 * src_w
        src_y = src_boxes[:, 1] + 0.5 * src_h

        tgt_w = target_boxes[:, 2] - target_boxes[:, 0]
        tgt_h = target_boxes[:, 3] - target_boxes[:, 1]
        tgt_x = target_boxes[:, 0] + 0.5 * tgt_w
        tgt_y = target_boxes[:, 1] + 0.5 * tgt_h

        wx, wy, ww, wh = self.weights
        dx = wx * (tgt_x - src_x) / src_w
        dy = wy * (tgt_y - src_y) / src_h
        dw = ww * torch.log(tgt_w / src_w)
        dh = wh * torch.log(tgt_h / src_h)
        return torch.stack((dx, dy, dw, dh), dim=1)

    def apply_deltas(self, deltas: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """Applies deltas to boxes (the inverse of :meth:`get_deltas`, up to the clamp).

        Args:
            deltas: (N, k * 4) float; k > 1 for class-specific regression, each group of 4
                applied to the same box.
            boxes: (N, 4) float XYXY boxes to transform.

        Returns:
            (N, k * 4) float XYXY boxes, in ``deltas``' dtype.
        """
        if deltas.dim() != 2 or deltas.shape[1] % 4 != 0 or deltas.shape[0] != boxes.shape[0]:
            raise ValueError(
                f"apply_deltas needs (N, k*4) deltas and (N, 4) boxes, got "
                f"{tuple(deltas.shape)} and {tuple(boxes.shape)}"
            )
        deltas = deltas.float()
        boxes = boxes.to(deltas.dtype)
        widths = boxes[:, 2] - boxes[:, 0]
        heights = boxes[:, 3] - boxes[:, 1]
        ctr_x = boxes[:, 0] + 0.5 * widths
        ctr_y = boxes[:, 1] + 0.5 * heights

        wx, wy, ww, wh = self.weights
        dx = deltas[:, 0::4] / wx
        dy = deltas[:, 1::4] / wy
        # Clamp before exp(): a diverging head must give a huge box, not an inf.
        dw = torch.clamp(deltas[:, 2::4] / ww, max=self.scale_clamp)
        dh = torch.clamp(deltas[:, 3::4] / wh, max=self.scale_clamp)

        pred_ctr_x = dx * widths[:, None] + ctr_x[:, None]
        pred_ctr_y = dy * heights[:, None] + ctr_y[:, None]
        pred_w = torch.exp(dw) * widths[:, None]
        pred_h = torch.exp(dh) * heights[:, None]

        x0 = pred_ctr_x - 0.5 * pred_w
        y0 = pred_ctr_y - 0.5 * pred_h
        x1 = pred_ctr_x + 0.5 * pred_w
        y1 = pred_ctr_y + 0.5 * pred_h
        return torch.stack((x0, y0, x1, y1), dim=-1).reshape(deltas.shape)


def smooth_l1_loss(
    input: torch.Tensor, target: torch.Tensor, beta: float, reduction: str = "none"
) -> torch.Tensor:
    """Smooth-L1 (Huber / beta) loss; ``beta < 1e-5`` is exactly the L1 loss.

    ``0.5 * x**2 / beta`` where ``|x| < beta``, else ``|x| - 0.5 * beta`` (Detectron2 / fvcore).

    Args:
        input: predictions, any shape.
        target: targets, the same shape.
        beta: transition point; Detectron2's RPN and box heads default to 0 (L1).
        reduction: "none", "mean" or "sum".

    Returns:
        The loss, reduced as asked.
    """
    if beta < 1e-5:
        # Avoid the division by a tiny beta; the limit is L1.
        return F.l1_loss(input, target, reduction=reduction)
    return F.smooth_l1_loss(input, target, beta=beta, reduction=reduction)


_IOU_LOSSES = {"giou": generalized_box_iou_loss, "diou": diou_loss, "ciou": ciou_loss}


def dense_box_regression_loss(
    anchors: list[torch.Tensor],
    box2box_transform: Box2BoxTransform,
    pred_anchor_deltas: list[torch.Tensor],
    gt_boxes: list[torch.Tensor],
    fg_mask: torch.Tensor,
    box_reg_loss_type: str = "smooth_l1",
    smooth_l1_beta: float = 0.0,
) -> torch.Tensor:
    """Summed box regression loss over the foreground anchors of a batch (dense detectors, RPN).

    Args:
        anchors: per feature level, (R_l, 4) float XYXY anchors (shared by all images).
        box2box_transform: the coding of the deltas.
        pred_anchor_deltas: per level, (N, R_l, 4) float predicted deltas.
        gt_boxes: per image, (R, 4) float XYXY ground-truth box matched to each anchor,
            ``R = sum(R_l)`` (anything for background anchors).
        fg_mask: (N, R) bool, the anchors that contribute.
        box_reg_loss_type: "smooth_l1" (on deltas), or "giou", "diou", "ciou" (on the
            decoded boxes).
        smooth_l1_beta: beta of the smooth-L1 loss (0 = L1).

    Returns:
        Scalar float: the loss summed over foreground anchors and coordinates (the caller
        normalises).
    """
    all_anchors = torch.cat(anchors, dim=0)
    pred = torch.cat(pred_anchor_deltas, dim=1)
    if box_reg_loss_type == "smooth_l1":
        gt_deltas = torch.stack([box2box_transform.get_deltas(all_anchors, g) for g in gt_boxes])
        return smooth_l1_loss(pred[fg_mask], gt_deltas[fg_mask], smooth_l1_beta, reduction="sum")
    if box_reg_loss_type in _IOU_LOSSES:
        pred_boxes = torch.stack([box2box_transform.apply_deltas(d, all_anchors) for d in pred])
        return _IOU_LOSSES[box_reg_loss_type](
            pred_boxes[fg_mask], torch.stack(gt_boxes)[fg_mask], reduction="sum"
        )
    raise ValueError(
        f"Unknown box regression loss type {box_reg_loss_type!r}; expected 'smooth_l1', "
        "'giou', 'diou' or 'ciou'"
    )
