"""ROI heads of Mask R-CNN / Panoptic FPN: proposal sampling, multi-level ROIAlign, the box
branch (:mod:`.box_head`, :mod:`.fast_rcnn`) and the mask branch (:mod:`.mask_head`).

Per image, the ground truth is an :class:`~panoptic2.structures.Instances` with ``gt_boxes``
(:class:`~panoptic2.structures.Boxes`, XYXY), ``gt_classes`` (M,) int64 0-based thing index
and ``gt_masks`` (:class:`~panoptic2.structures.BitMasks`, (M, H, W)). Between the heads,
tensors travel in plain dicts: proposals ``{"proposal_boxes" (N, 4), "objectness_logits"
(N,)}`` (the RPN's output) and detections ``{"pred_boxes" (N, 4), "scores" (N,),
"pred_classes" (N,) int64 0-based, "pred_masks" (N, 1, 28, 28) float probabilities}`` in the
coordinates of the padded network input; the meta-architecture turns detections into
``Instances`` at the original image size.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torchvision.ops import box_iou, roi_align

from panoptic2.config import configurable
from panoptic2.layers import ShapeSpec
from panoptic2.modeling.matcher import Matcher
from panoptic2.modeling.sampling import subsample_labels
from panoptic2.structures import Instances
from panoptic2.utils.events import get_event_storage

from .box_head import FastRCNNConvFCHead
from .build import ROI_HEADS_REGISTRY
from .fast_rcnn import FastRCNNOutputLayers
from .mask_head import (
    MaskRCNNConvUpsampleHead,
    mask_rcnn_inference,
    mask_rcnn_loss,
    mask_targets,
)

__all__ = ["ROIPooler", "StandardROIHeads", "assign_boxes_to_levels"]


def assign_boxes_to_levels(
    boxes: torch.Tensor,
    min_level: int,
    max_level: int,
    canonical_box_size: int = 224,
    canonical_level: int = 4,
) -> torch.Tensor:
    """FPN level of each box (Lin et al., eq. 1; Detectron2's ``assign_boxes_to_levels``):
    ``floor(canonical_level + log2(sqrt(area) / canonical_box_size))``, clamped.

    Args:
        boxes: (R, 4) float XYXY boxes.
        min_level: finest level (2 for p2).
        max_level: coarsest level (5 for p5).
        canonical_box_size: box side mapped to ``canonical_level``.
        canonical_level: level of a canonical box.

    Returns:
        (R,) int64 index into the levels, ``level - min_level``.
    """
    sizes = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).clamp(min=0).sqrt()
    # The small epsilon keeps a zero-area box finite (it goes to the finest level).
    levels = torch.floor(canonical_level + torch.log2(sizes / canonical_box_size + 1e-8))
    return (levels.clamp(min_level, max_level) - min_level).to(torch.int64)


class ROIPooler(nn.Module):
    """ROIAlign of boxes over a feature pyramid, each box on its level (see
    :func:`assign_boxes_to_levels`), with torchvision's ``roi_align``.

    Args:
        output_size: side of the pooled features.
        scales: ``1 / stride`` of each level, finest first (strides must be powers of 2,
            consecutive).
        sampling_ratio: ``roi_align`` samples per bin (0: adaptive).
        aligned: pixel-aligned ROIAlign (Detectron2's "ROIAlignV2"); False is "ROIAlign".
        canonical_box_size: see :func:`assign_boxes_to_levels`.
        canonical_level: see :func:`assign_boxes_to_levels`.
    """

    def __init__(
        self,
        output_size: int,
        scales: Sequence[float],
        sampling_ratio: int = 0,
        aligned: bool = True,
        canonical_box_size: int = 224,
        canonical_level: int = 4,
    ) -> None:
        super().__init__()
        levels = [-math.log2(s) for s in scales]
        if any(abs(lv - round(lv)) > 1e-6 for lv in levels) or any(
            round(b) - round(a) != 1 for a, b in zip(levels, levels[1:])
        ):
            raise ValueError(f"ROIPooler needs consecutive power-of-2 strides, got scales {scales}")
        self.output_size = output_size
        self.scales = list(scales)
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned
        self.min_level, self.max_level = round(levels[0]), round(levels[-1])
        self.canonical_box_size = canonical_box_size
        self.canonical_level = canonical_level

    def forward(
        self, features: Sequence[torch.Tensor], boxes: Sequence[torch.Tensor]
    ) -> torch.Tensor:
        """Args:
            features: per level (N, C, H_l, W_l) float maps, finest first.
            boxes: per image (R_i, 4) float XYXY boxes in input pixels.

        Returns:
            (sum R_i, C, output_size, output_size) float, boxes in image order.
        """
        if len(features) != len(self.scales):
            raise ValueError(f"ROIPooler got {len(features)} feature levels for {len(self.scales)}")
        rois = torch.cat(
            [torch.cat([b.new_full((len(b), 1), float(i)), b], dim=1) for i, b in enumerate(boxes)]
        )
        size = (self.output_size, self.output_size)
        out = features[0].new_zeros((len(rois), features[0].shape[1], *size))
        if len(rois) == 0:
            return out
        if len(features) == 1:
            return roi_align(
                features[0], rois, size, self.scales[0], self.sampling_ratio, self.aligned
            )
        level = assign_boxes_to_levels(
            rois[:, 1:],
            self.min_level,
            self.max_level,
            self.canonical_box_size,
            self.canonical_level,
        )
        for i, (feature, scale) in enumerate(zip(features, self.scales)):
            idx = (level == i).nonzero().flatten()
            if idx.numel():
                out[idx] = roi_align(
                    feature, rois[idx], size, scale, self.sampling_ratio, self.aligned
                ).to(out.dtype)
        return out


def _pooler_from_config(cfg_head: Any, input_shape: Mapping[str, ShapeSpec], in_features):
    if cfg_head.POOLER_TYPE not in ("ROIAlignV2", "ROIAlign"):
        raise ValueError(
            f"POOLER_TYPE {cfg_head.POOLER_TYPE!r} is not supported; use ROIAlignV2 or ROIAlign"
        )
    return ROIPooler(
        cfg_head.POOLER_RESOLUTION,
        [1.0 / input_shape[f].stride for f in in_features],
        cfg_head.POOLER_SAMPLING_RATIO,
        aligned=cfg_head.POOLER_TYPE == "ROIAlignV2",
    )


@ROI_HEADS_REGISTRY.register()
class StandardROIHeads(nn.Module):
    """Box branch plus optional mask branch on pooled FPN features (Detectron2 semantics).

    Training samples ``batch_size_per_image`` proposals per image (``positive_fraction`` of
    them foreground at most) from the RPN proposals plus the ground-truth boxes; a proposal
    is foreground when its best IoU with a ground-truth box is >= the IoU threshold. The box
    branch trains on all sampled proposals, the mask branch on the foreground ones.

    Args:
        num_classes: number of thing classes K.
        in_features: feature names pooled (finest first), e.g. ``["p2", "p3", "p4", "p5"]``.
        box_pooler: pooler of the box branch (7x7).
        box_head: features of pooled boxes (``output_size`` attribute).
        box_predictor: a :class:`FastRCNNOutputLayers`.
        proposal_matcher: a ``Matcher`` (IoU thresholds [0.5], labels [0, 1]).
        batch_size_per_image: sampled proposals per image.
        positive_fraction: largest foreground fraction of the samples.
        proposal_append_gt: add the ground-truth boxes to the proposals in training.
        mask_pooler: pooler of the mask branch (14x14), or None without masks.
        mask_head: a :class:`MaskRCNNConvUpsampleHead`, or None.
    """

    @configurable
    def __init__(
        self,
        *,
        num_classes: int,
        in_features: Sequence[str],
        box_pooler: ROIPooler,
        box_head: nn.Module,
        box_predictor: FastRCNNOutputLayers,
        proposal_matcher: Any,
        batch_size_per_image: int = 512,
        positive_fraction: float = 0.25,
        proposal_append_gt: bool = True,
        mask_pooler: ROIPooler | None = None,
        mask_head: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if (mask_pooler is None) != (mask_head is None):
            raise ValueError("StandardROIHeads needs both mask_pooler and mask_head, or neither")
        self.num_classes = num_classes
        self.in_features = list(in_features)
        self.box_pooler = box_pooler
        self.box_head = box_head
        self.box_predictor = box_predictor
        self.proposal_matcher = proposal_matcher
        self.batch_size_per_image = batch_size_per_image
        self.positive_fraction = positive_fraction
        self.proposal_append_gt = proposal_append_gt
        self.mask_on = mask_head is not None
        self.mask_pooler = mask_pooler
        self.mask_head = mask_head

    @classmethod
    def from_config(cls, cfg: Any, input_shape: Mapping[str, ShapeSpec]) -> dict[str, Any]:
        roi = cfg.MODEL.ROI_HEADS
        in_features = list(roi.IN_FEATURES)
        missing = [f for f in in_features if f not in input_shape]
        if missing:
            raise ValueError(
                f"MODEL.ROI_HEADS.IN_FEATURES {missing} are not backbone outputs "
                f"({sorted(input_shape)})"
            )
        channels = {input_shape[f].channels for f in in_features}
        if len(channels) != 1:
            raise ValueError(f"ROI heads need equal channels on {in_features}, got {channels}")
        (channel,) = channels
        box_cfg = cfg.MODEL.ROI_BOX_HEAD
        res = box_cfg.POOLER_RESOLUTION
        box_head = FastRCNNConvFCHead(cfg, ShapeSpec(channels=channel, height=res, width=res))
        args = {
            "num_classes": roi.NUM_CLASSES,
            "in_features": in_features,
            "box_pooler": _pooler_from_config(box_cfg, input_shape, in_features),
            "box_head": box_head,
            "box_predictor": FastRCNNOutputLayers(cfg, box_head.output_size),
            "proposal_matcher": Matcher(
                list(roi.IOU_THRESHOLDS), list(roi.IOU_LABELS), allow_low_quality_matches=False
            ),
            "batch_size_per_image": roi.BATCH_SIZE_PER_IMAGE,
            "positive_fraction": roi.POSITIVE_FRACTION,
            "proposal_append_gt": roi.PROPOSAL_APPEND_GT,
        }
        if cfg.MODEL.MASK_ON:
            mask_cfg = cfg.MODEL.ROI_MASK_HEAD
            res = mask_cfg.POOLER_RESOLUTION
            args["mask_pooler"] = _pooler_from_config(mask_cfg, input_shape, in_features)
            args["mask_head"] = MaskRCNNConvUpsampleHead(
                cfg, ShapeSpec(channels=channel, height=res, width=res)
            )
        return args

    # ----------------------------------------------------------------------------- training
    @torch.no_grad()
    def label_and_sample_proposals(
        self, proposals: Sequence[Mapping[str, torch.Tensor]], targets: Sequence[Instances]
    ) -> list[dict[str, torch.Tensor]]:
        """Samples proposals per image and gives each its training targets.

        Args:
            proposals: per image ``{"proposal_boxes" (N, 4), ...}``.
            targets: per image ground truth (module docstring).

        Returns:
            Per image ``{"proposal_boxes" (S, 4), "gt_classes" (S,) int64 (K background),
            "gt_boxes" (S, 4), "matched_idxs" (S,) int64}`` of the S sampled proposals.
        """
        sampled = []
        num_fg, num_bg = 0, 0
        for props, gt in zip(proposals, targets):
            boxes = props["proposal_boxes"].detach()
            gt_boxes = gt.gt_boxes.tensor.to(boxes)
            gt_classes = gt.gt_classes.to(boxes.device, torch.int64)
            if self.proposal_append_gt:
                boxes = torch.cat([boxes, gt_boxes])
            if len(gt_boxes) == 0:
                matched = torch.zeros(len(boxes), dtype=torch.int64, device=boxes.device)
                classes = torch.full_like(matched, self.num_classes)
            else:
                matched, match_labels = self.proposal_matcher(box_iou(gt_boxes, boxes))
                classes = gt_classes[matched]
                classes[match_labels == 0] = self.num_classes
                classes[match_labels == -1] = -1
            fg_idx, bg_idx = subsample_labels(
                classes, self.batch_size_per_image, self.positive_fraction, self.num_classes
            )
            keep = torch.cat([fg_idx, bg_idx])
            num_fg += len(fg_idx)
            num_bg += len(bg_idx)
            classes = classes[keep]
            matched = matched[keep]
            sampled.append(
                {
                    "proposal_boxes": boxes[keep],
                    "gt_classes": classes,
                    "gt_boxes": gt_boxes[matched] if len(gt_boxes) else boxes[keep].clone(),
                    "matched_idxs": matched,
                }
            )
        _put_scalar("roi_head/num_fg_samples", num_fg / max(len(sampled), 1))
        _put_scalar("roi_head/num_bg_samples", num_bg / max(len(sampled), 1))
        return sampled

    def forward(
        self,
        image_sizes: Sequence[tuple[int, int]],
        features: Mapping[str, torch.Tensor],
        proposals: Sequence[Mapping[str, torch.Tensor]],
        gt_instances: Sequence[Instances] | None = None,
    ) -> tuple[list[dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
        """Args:
            image_sizes: per image ``(height, width)`` of the unpadded network input.
            features: backbone features by name.
            proposals: per image proposals.
            gt_instances: per image ground truth (training only).

        Returns:
            ``(detections, losses)``: in training ``([], {"loss_cls", "loss_box_reg"[,
            "loss_mask"]})``, in inference (per-image detections, ``{}``).
        """
        feats = [features[f] for f in self.in_features]
        if self.training:
            if gt_instances is None:
                raise ValueError("StandardROIHeads needs gt_instances in training")
            sampled = self.label_and_sample_proposals(proposals, gt_instances)
            losses = self._box_losses(feats, sampled)
            if self.mask_on:
                losses.update(self._mask_losses(feats, sampled, gt_instances))
            return [], losses
        boxes = [p["proposal_boxes"] for p in proposals]
        predictions = self.box_predictor(self.box_head(self.box_pooler(feats, boxes)))
        detections = self.box_predictor.inference(predictions, boxes, image_sizes)
        if self.mask_on:
            self._predict_masks(feats, detections)
        return detections, {}

    def _box_losses(self, feats, sampled) -> dict[str, torch.Tensor]:
        boxes = [s["proposal_boxes"] for s in sampled]
        predictions = self.box_predictor(self.box_head(self.box_pooler(feats, boxes)))
        return self.box_predictor.losses(
            predictions,
            torch.cat(boxes),
            torch.cat([s["gt_classes"] for s in sampled]),
            torch.cat([s["gt_boxes"] for s in sampled]),
        )

    def _mask_losses(self, feats, sampled, gt_instances) -> dict[str, torch.Tensor]:
        fg_boxes, fg_classes, targets = [], [], []
        size = self.mask_pooler.output_size * 2
        for s, gt in zip(sampled, gt_instances):
            fg = (s["gt_classes"] >= 0) & (s["gt_classes"] < self.num_classes)
            boxes = s["proposal_boxes"][fg]
            fg_boxes.append(boxes)
            fg_classes.append(s["gt_classes"][fg])
            targets.append(
                mask_targets(
                    gt.gt_masks.tensor.to(boxes.device), boxes, s["matched_idxs"][fg], size
                )
            )
        logits = self.mask_head(self.mask_pooler(feats, fg_boxes))
        return {"loss_mask": mask_rcnn_loss(logits, torch.cat(fg_classes), torch.cat(targets))}

    def _predict_masks(self, feats, detections) -> None:
        boxes = [d["pred_boxes"] for d in detections]
        logits = self.mask_head(self.mask_pooler(feats, boxes))
        probs = mask_rcnn_inference(logits, [d["pred_classes"] for d in detections])
        for d, p in zip(detections, probs):
            d["pred_masks"] = p


def _put_scalar(name: str, value: float) -> None:
    """Logs to the current event storage when there is one (training), else nothing."""
    try:
        storage = get_event_storage()
    except RuntimeError:
        return
    storage.put_scalar(name, value)
