"""Region Proposal Network (Faster R-CNN), Detectron2 semantics with plain dicts of tensors.

:class:`RPN` tiles anchors over the feature maps, predicts an objectness logit and box deltas
per anchor with :class:`StandardRPNHead`, trains them against anchors labelled by IoU with the
ground-truth boxes (balanced sampling), and turns the best anchors into proposals: top-k per
level before NMS, clipping, small-box removal, NMS per level, top-k per image after NMS.

Boxes are (N, 4) float XYXY absolute pixels of the (resized, padded) network input.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.ops import batched_nms, box_iou, clip_boxes_to_image

from panoptic2.config import configurable
from panoptic2.layers import Conv2d, ShapeSpec
from panoptic2.modeling.anchor_generator import build_anchor_generator
from panoptic2.modeling.box_regression import Box2BoxTransform, dense_box_regression_loss
from panoptic2.modeling.matcher import Matcher
from panoptic2.modeling.sampling import subsample_labels
from panoptic2.registry import RPN_HEAD_REGISTRY
from panoptic2.structures import Instances
from panoptic2.utils.events import get_event_storage

from .build import PROPOSAL_GENERATOR_REGISTRY

__all__ = [
    "RPN",
    "RPN_HEAD_REGISTRY",
    "StandardRPNHead",
    "build_rpn_head",
    "find_top_rpn_proposals",
]


def build_rpn_head(cfg, input_shape: Sequence[ShapeSpec]) -> nn.Module:
    """Builds the RPN head named by ``cfg.MODEL.RPN.HEAD_NAME``."""
    return RPN_HEAD_REGISTRY.get(cfg.MODEL.RPN.HEAD_NAME)(cfg, input_shape)


@RPN_HEAD_REGISTRY.register()
class StandardRPNHead(nn.Module):
    """Shared 3x3 conv(s) + ReLU, then 1x1 convs for objectness and box deltas, on every level.

    Args:
        in_channels: channels of every input level (they must all be equal).
        num_anchors: anchors per cell (the same at every level).
        box_dim: values per box delta (4).
        conv_dims: output channels of the 3x3 convs; -1 keeps ``in_channels``.
    """

    @configurable
    def __init__(
        self,
        *,
        in_channels: int,
        num_anchors: int,
        box_dim: int = 4,
        conv_dims: Sequence[int] = (-1,),
    ) -> None:
        super().__init__()
        # Detectron2's parameter names (``conv.weight``, or ``conv.conv{i}.weight`` for several
        # convs), so its RPN weights load by name.
        convs = []
        cur = in_channels
        for dim in conv_dims:
            out = in_channels if dim == -1 else int(dim)
            if out <= 0:
                raise ValueError(f"RPN conv dims must be positive or -1, got {list(conv_dims)}")
            convs.append(Conv2d(cur, out, kernel_size=3, padding=1, activation=F.relu))
            cur = out
        if len(convs) == 1:
            self.conv = convs[0]
        else:
            self.conv = nn.Sequential()
            for i, conv in enumerate(convs):
                self.conv.add_module(f"conv{i}", conv)
        self.objectness_logits = nn.Conv2d(cur, num_anchors, kernel_size=1)
        self.anchor_deltas = nn.Conv2d(cur, num_anchors * box_dim, kernel_size=1)
        for layer in self.modules():
            if isinstance(layer, nn.Conv2d):
                # Small normal init keeps the initial objectness near 0.5 and deltas near 0.
                nn.init.normal_(layer.weight, std=0.01)
                nn.init.constant_(layer.bias, 0)

    @classmethod
    def from_config(cls, cfg, input_shape: Sequence[ShapeSpec]) -> dict:
        channels = {s.channels for s in input_shape}
        if len(channels) != 1:
            raise ValueError(f"RPN input levels must have equal channels, got {channels}")
        anchor_generator = build_anchor_generator(cfg, input_shape)
        num_anchors = set(anchor_generator.num_cell_anchors)
        if len(num_anchors) != 1:
            raise ValueError(
                f"StandardRPNHead needs the same anchors per cell at every level, got "
                f"{anchor_generator.num_cell_anchors}"
            )
        return {
            "in_channels": channels.pop(),
            "num_anchors": num_anchors.pop(),
            "box_dim": anchor_generator.box_dim,
            "conv_dims": cfg.MODEL.RPN.CONV_DIMS,
        }

    def forward(
        self, features: list[torch.Tensor]
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Args:
            features: per level, (N, C, H_l, W_l) feature maps.

        Returns:
            objectness_logits: per level, (N, A, H_l, W_l) float.
            anchor_deltas: per level, (N, A * box_dim, H_l, W_l) float.
        """
        logits, deltas = [], []
        for x in features:
            t = self.conv(x)
            logits.append(self.objectness_logits(t))
            deltas.append(self.anchor_deltas(t))
        return logits, deltas


def _nonempty(boxes: torch.Tensor, threshold: float) -> torch.Tensor:
    """(N,) bool: width and height strictly above ``threshold`` (Detectron2 ``nonempty``).

    torchvision's ``remove_small_boxes`` keeps ``>= min_size``, which would keep zero-size
    boxes at the default threshold 0; the RPN must drop them.
    """
    widths = boxes[:, 2] - boxes[:, 0]
    heights = boxes[:, 3] - boxes[:, 1]
    return (widths > threshold) & (heights > threshold)


def find_top_rpn_proposals(
    proposals: list[torch.Tensor],
    pred_objectness_logits: list[torch.Tensor],
    image_sizes: Sequence[tuple[int, int]],
    nms_thresh: float,
    pre_nms_topk: int,
    post_nms_topk: int,
    min_box_size: float = 0.0,
    training: bool = False,
) -> list[dict[str, torch.Tensor]]:
    """Selects proposals: top-k per level, clip, drop small boxes, NMS per level, top-k.

    Args:
        proposals: per level, (N, R_l, 4) float decoded boxes.
        pred_objectness_logits: per level, (N, R_l) float logits.
        image_sizes: per image, ``(height, width)`` of the valid (unpadded) input.
        nms_thresh: IoU threshold of the NMS (applied within each level).
        pre_nms_topk: boxes kept per level and image before NMS.
        post_nms_topk: boxes kept per image after NMS (over all levels).
        min_box_size: boxes with a side <= this (after clipping) are dropped.
        training: non-finite boxes or scores raise in training and are dropped otherwise.

    Returns:
        Per image ``{"proposal_boxes": (K, 4) float, "objectness_logits": (K,) float}``
        sorted by decreasing logit, ``K <= post_nms_topk``.

    Raises:
        FloatingPointError: non-finite predictions in training (the run has diverged).
    """
    num_images = len(image_sizes)
    device = proposals[0].device
    batch_idx = torch.arange(num_images, device=device)[:, None]

    topk_scores, topk_proposals, level_ids = [], [], []
    for level, (boxes_l, logits_l) in enumerate(zip(proposals, pred_objectness_logits)):
        k = min(pre_nms_topk, logits_l.shape[1])
        # topk after a full sort: ties keep anchor order, so results do not depend on the
        # topk kernel.
        logits_sorted, idx = logits_l.sort(descending=True, dim=1, stable=True)
        topk_scores.append(logits_sorted[:, :k])
        topk_proposals.append(boxes_l[batch_idx, idx[:, :k]])
        level_ids.append(torch.full((k,), level, dtype=torch.int64, device=device))
    scores_all = torch.cat(topk_scores, dim=1)
    boxes_all = torch.cat(topk_proposals, dim=1)
    levels_all = torch.cat(level_ids, dim=0)

    results = []
    for i, (height, width) in enumerate(image_sizes):
        boxes, scores, levels = boxes_all[i], scores_all[i], levels_all
        valid = torch.isfinite(boxes).all(dim=1) & torch.isfinite(scores)
        if not bool(valid.all()):
            if training:
                raise FloatingPointError(
                    "RPN predicted non-finite boxes or objectness logits: training has diverged"
                )
            boxes, scores, levels = boxes[valid], scores[valid], levels[valid]
        boxes = clip_boxes_to_image(boxes, (int(height), int(width)))
        keep = _nonempty(boxes, min_box_size)
        boxes, scores, levels = boxes[keep], scores[keep], levels[keep]
        keep = batched_nms(boxes, scores, levels, nms_thresh)[:post_nms_topk]
        results.append({"proposal_boxes": boxes[keep], "objectness_logits": scores[keep]})
    return results


@PROPOSAL_GENERATOR_REGISTRY.register()
class RPN(nn.Module):
    """Region Proposal Network over several feature levels (Detectron2's ``RPN``).

    Build by hand with modules, or from a config via ``RPN(cfg, input_shape)`` /
    ``build_proposal_generator(cfg, input_shape, "RPN")``.

    Args:
        in_features: names of the feature maps used, fine to coarse (``p2``..``p6``).
        head: module mapping the feature list to (logits, deltas) lists.
        anchor_generator: module mapping the feature list to per-level anchors.
        anchor_matcher: labels anchors by IoU with ground-truth boxes.
        box2box_transform: coding of anchor deltas.
        batch_size_per_image: anchors sampled per image for the losses (256).
        positive_fraction: largest fraction of positives among them (0.5).
        pre_nms_topk: ``(train, test)`` boxes per level before NMS.
        post_nms_topk: ``(train, test)`` boxes per image after NMS.
        nms_thresh: NMS IoU threshold.
        min_box_size: proposals with a side <= this are dropped.
        anchor_boundary_thresh: anchors beyond the image by more than this many pixels are
            ignored in training; negative keeps all anchors.
        loss_weight: multiplies both losses, or a dict of per-loss weights.
        box_reg_loss_type: "smooth_l1", "giou", "diou" or "ciou".
        smooth_l1_beta: beta of the smooth-L1 loss (0 = L1).
    """

    @configurable
    def __init__(
        self,
        *,
        in_features: Sequence[str],
        head: nn.Module,
        anchor_generator: nn.Module,
        anchor_matcher: Matcher,
        box2box_transform: Box2BoxTransform,
        batch_size_per_image: int,
        positive_fraction: float,
        pre_nms_topk: tuple[int, int],
        post_nms_topk: tuple[int, int],
        nms_thresh: float = 0.7,
        min_box_size: float = 0.0,
        anchor_boundary_thresh: float = -1.0,
        loss_weight: float | dict[str, float] = 1.0,
        box_reg_loss_type: str = "smooth_l1",
        smooth_l1_beta: float = 0.0,
    ) -> None:
        super().__init__()
        self.in_features = list(in_features)
        self.rpn_head = head
        self.anchor_generator = anchor_generator
        self.anchor_matcher = anchor_matcher
        self.box2box_transform = box2box_transform
        self.batch_size_per_image = int(batch_size_per_image)
        self.positive_fraction = float(positive_fraction)
        self.pre_nms_topk = {True: int(pre_nms_topk[0]), False: int(pre_nms_topk[1])}
        self.post_nms_topk = {True: int(post_nms_topk[0]), False: int(post_nms_topk[1])}
        self.nms_thresh = float(nms_thresh)
        self.min_box_size = float(min_box_size)
        self.anchor_boundary_thresh = float(anchor_boundary_thresh)
        if isinstance(loss_weight, (int, float)):
            loss_weight = {"loss_rpn_cls": loss_weight, "loss_rpn_loc": loss_weight}
        self.loss_weight = dict(loss_weight)
        self.box_reg_loss_type = box_reg_loss_type
        self.smooth_l1_beta = float(smooth_l1_beta)

    @classmethod
    def from_config(cls, cfg, input_shape: dict[str, ShapeSpec]) -> dict:
        rpn = cfg.MODEL.RPN
        missing = [f for f in rpn.IN_FEATURES if f not in input_shape]
        if missing:
            raise ValueError(
                f"MODEL.RPN.IN_FEATURES {missing} are not backbone outputs {list(input_shape)}"
            )
        shapes = [input_shape[f] for f in rpn.IN_FEATURES]
        return {
            "in_features": rpn.IN_FEATURES,
            "head": build_rpn_head(cfg, shapes),
            "anchor_generator": build_anchor_generator(cfg, shapes),
            "anchor_matcher": Matcher(
                rpn.IOU_THRESHOLDS, rpn.IOU_LABELS, allow_low_quality_matches=True
            ),
            "box2box_transform": Box2BoxTransform(weights=rpn.BBOX_REG_WEIGHTS),
            "batch_size_per_image": rpn.BATCH_SIZE_PER_IMAGE,
            "positive_fraction": rpn.POSITIVE_FRACTION,
            "pre_nms_topk": (rpn.PRE_NMS_TOPK_TRAIN, rpn.PRE_NMS_TOPK_TEST),
            "post_nms_topk": (rpn.POST_NMS_TOPK_TRAIN, rpn.POST_NMS_TOPK_TEST),
            "nms_thresh": rpn.NMS_THRESH,
            "min_box_size": cfg.MODEL.PROPOSAL_GENERATOR.MIN_SIZE,
            "anchor_boundary_thresh": rpn.BOUNDARY_THRESH,
            "loss_weight": {
                "loss_rpn_cls": rpn.LOSS_WEIGHT,
                "loss_rpn_loc": rpn.BBOX_REG_LOSS_WEIGHT * rpn.LOSS_WEIGHT,
            },
            "box_reg_loss_type": rpn.BBOX_REG_LOSS_TYPE,
            "smooth_l1_beta": rpn.SMOOTH_L1_BETA,
        }

    @torch.no_grad()
    def label_and_sample_anchors(
        self,
        anchors: list[torch.Tensor],
        image_sizes: Sequence[tuple[int, int]],
        gt_boxes: list[torch.Tensor],
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Labels anchors by IoU with the ground truth, then samples a balanced subset.

        Args:
            anchors: per level, (R_l, 4) float anchors.
            image_sizes: per image, ``(height, width)`` of the valid input.
            gt_boxes: per image, (M_i, 4) float ground-truth boxes.

        Returns:
            gt_labels: per image, (R,) int64: 1 sampled positive, 0 sampled negative,
                -1 ignored (not sampled, between the IoU thresholds, or off the image).
            matched_gt_boxes: per image, (R, 4) float box matched to each anchor (zeros
                when the image has no ground truth).
        """
        all_anchors = torch.cat(anchors, dim=0)
        gt_labels, matched_gt_boxes = [], []
        for (height, width), boxes in zip(image_sizes, gt_boxes):
            boxes = boxes.to(all_anchors)
            matched_idxs, labels = self.anchor_matcher(box_iou(boxes, all_anchors))
            labels = labels.to(torch.int64)
            if self.anchor_boundary_thresh >= 0:
                t = self.anchor_boundary_thresh
                inside = (
                    (all_anchors[:, 0] >= -t)
                    & (all_anchors[:, 1] >= -t)
                    & (all_anchors[:, 2] < width + t)
                    & (all_anchors[:, 3] < height + t)
                )
                labels[~inside] = -1
            labels = self._subsample_labels(labels)
            if len(boxes) == 0:
                matched_gt_boxes.append(torch.zeros_like(all_anchors))
            else:
                matched_gt_boxes.append(boxes[matched_idxs])
            gt_labels.append(labels)
        return gt_labels, matched_gt_boxes

    def _subsample_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """Keeps a balanced sample as 1/0 and sets every other anchor to -1 (ignored)."""
        pos_idx, neg_idx = subsample_labels(
            labels, self.batch_size_per_image, self.positive_fraction, 0
        )
        sampled = torch.full_like(labels, -1)
        sampled[pos_idx] = 1
        sampled[neg_idx] = 0
        return sampled

    def losses(
        self,
        anchors: list[torch.Tensor],
        pred_objectness_logits: list[torch.Tensor],
        gt_labels: list[torch.Tensor],
        pred_anchor_deltas: list[torch.Tensor],
        gt_boxes: list[torch.Tensor],
    ) -> dict[str, torch.Tensor]:
        """Objectness (BCE) and box (smooth-L1 / IoU) losses of the sampled anchors.

        Both sums are divided by ``batch_size_per_image * num_images`` (Detectron2's
        normaliser: the number of anchors sampled when enough exist), then weighted.

        Args:
            anchors: per level, (R_l, 4) float anchors.
            pred_objectness_logits: per level, (N, R_l) float.
            gt_labels: per image, (R,) int64 from :meth:`label_and_sample_anchors`.
            pred_anchor_deltas: per level, (N, R_l, 4) float.
            gt_boxes: per image, (R, 4) float matched boxes.

        Returns:
            ``{"loss_rpn_cls": scalar, "loss_rpn_loc": scalar}``.
        """
        num_images = len(gt_labels)
        labels = torch.stack(gt_labels)
        pos_mask = labels == 1
        self._log_anchor_counts(pos_mask, labels == 0, num_images)

        loc_loss = dense_box_regression_loss(
            anchors,
            self.box2box_transform,
            pred_anchor_deltas,
            gt_boxes,
            pos_mask,
            box_reg_loss_type=self.box_reg_loss_type,
            smooth_l1_beta=self.smooth_l1_beta,
        )
        valid = labels >= 0
        cls_loss = F.binary_cross_entropy_with_logits(
            torch.cat(pred_objectness_logits, dim=1)[valid],
            labels[valid].to(torch.float32),
            reduction="sum",
        )
        normalizer = self.batch_size_per_image * num_images
        losses = {"loss_rpn_cls": cls_loss / normalizer, "loss_rpn_loc": loc_loss / normalizer}
        return {k: v * self.loss_weight.get(k, 1.0) for k, v in losses.items()}

    @staticmethod
    def _log_anchor_counts(pos: torch.Tensor, neg: torch.Tensor, num_images: int) -> None:
        """Average sampled positives/negatives per image, when a training storage is open."""
        try:
            storage = get_event_storage()
        except RuntimeError:
            return  # called outside a training loop (tests, scripts)
        storage.put_scalar("rpn/num_pos_anchors", pos.sum().item() / num_images)
        storage.put_scalar("rpn/num_neg_anchors", neg.sum().item() / num_images)

    def _decode_proposals(
        self, anchors: list[torch.Tensor], pred_anchor_deltas: list[torch.Tensor]
    ) -> list[torch.Tensor]:
        """Per level, (N, R_l, 4) boxes: the deltas applied to the anchors."""
        proposals = []
        for anchors_l, deltas_l in zip(anchors, pred_anchor_deltas):
            n, r, b = deltas_l.shape
            expanded = anchors_l[None].expand(n, -1, -1).reshape(-1, b)
            boxes = self.box2box_transform.apply_deltas(deltas_l.reshape(-1, b), expanded)
            proposals.append(boxes.view(n, r, b))
        return proposals

    def predict_proposals(
        self,
        anchors: list[torch.Tensor],
        pred_objectness_logits: list[torch.Tensor],
        pred_anchor_deltas: list[torch.Tensor],
        image_sizes: Sequence[tuple[int, int]],
    ) -> list[dict[str, torch.Tensor]]:
        """Decodes the deltas and selects proposals (no gradient flows into them).

        Args:
            anchors: per level, (R_l, 4) float.
            pred_objectness_logits: per level, (N, R_l) float.
            pred_anchor_deltas: per level, (N, R_l, 4) float.
            image_sizes: per image, ``(height, width)``.

        Returns:
            See :func:`find_top_rpn_proposals`.
        """
        # The ROI heads train on proposals as fixed inputs (Faster R-CNN's approximate joint
        # training), so the selection is detached.
        with torch.no_grad():
            proposals = self._decode_proposals(anchors, pred_anchor_deltas)
            return find_top_rpn_proposals(
                proposals,
                pred_objectness_logits,
                image_sizes,
                self.nms_thresh,
                self.pre_nms_topk[self.training],
                self.post_nms_topk[self.training],
                self.min_box_size,
                self.training,
            )

    def forward(
        self,
        image_sizes: Sequence[tuple[int, int]],
        features: dict[str, torch.Tensor],
        gt_instances: Sequence[Instances] | None = None,
    ) -> tuple[list[dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
        """Predicts proposals, and in training computes the RPN losses.

        Args:
            image_sizes: per image, ``(height, width)`` of the valid (unpadded) input.
            features: backbone features by name, each (N, C, H_l, W_l).
            gt_instances: per image, :class:`Instances` with ``gt_boxes`` (:class:`Boxes`,
                M_i boxes XYXY; other fields ignored); required in training.

        Returns:
            proposals: per image ``{"proposal_boxes": (K, 4) float, "objectness_logits":
                (K,) float}``, sorted by decreasing logit.
            losses: ``{"loss_rpn_cls", "loss_rpn_loc"}`` scalars in training, else ``{}``.
        """
        feats = [features[f] for f in self.in_features]
        if len(image_sizes) != feats[0].shape[0]:
            raise ValueError(
                f"RPN got {len(image_sizes)} image sizes for a batch of {feats[0].shape[0]}"
            )
        anchors = self.anchor_generator(feats)
        logits, deltas = self.rpn_head(feats)
        # (N, A, H, W) -> (N, H*W*A), matching the anchors' (H, W, A) order.
        logits = [x.permute(0, 2, 3, 1).flatten(1) for x in logits]
        # (N, A*B, H, W) -> (N, A, B, H, W) -> (N, H, W, A, B) -> (N, H*W*A, B).
        box_dim = anchors[0].shape[1]
        deltas = [
            x.view(x.shape[0], -1, box_dim, x.shape[-2], x.shape[-1])
            .permute(0, 3, 4, 1, 2)
            .flatten(1, -2)
            for x in deltas
        ]

        losses: dict[str, torch.Tensor] = {}
        if self.training:
            if gt_instances is None:
                raise ValueError("RPN needs gt_instances (with 'gt_boxes') in training")
            gt_boxes = [inst.gt_boxes.tensor for inst in gt_instances]
            gt_labels, matched_boxes = self.label_and_sample_anchors(anchors, image_sizes, gt_boxes)
            losses = self.losses(anchors, logits, gt_labels, deltas, matched_boxes)
        proposals = self.predict_proposals(anchors, logits, deltas, image_sizes)
        return proposals, losses
