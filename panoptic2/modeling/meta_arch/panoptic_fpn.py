"""Panoptic FPN (Kirillov et al., CVPR 2019): Mask R-CNN plus a semantic FPN head, fused.

Outputs per image, at the original size: ``sem_seg`` (S + 1, H, W) logits of the
"separated" label space (0 things, 1..S stuff), ``instances`` (see
:func:`.rcnn.detector_postprocess`) and ``panoptic_seg`` from
:func:`.panoptic_fpn_fusion.combine_semantic_and_instance_outputs` with contiguous dataset
category ids, so the COCO panoptic, semantic and COCO instance evaluators apply unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from panoptic2.config import configurable
from panoptic2.data.label_space import LabelSpace
from panoptic2.layers.argmax import argmax_over_classes
from panoptic2.structures import ImageList

from ..heads import build_sem_seg_head
from .base import sem_seg_postprocess
from .build import META_ARCH_REGISTRY
from .panoptic_fpn_fusion import combine_semantic_and_instance_outputs
from .rcnn import GeneralizedRCNN

__all__ = ["PanopticFPN"]


@META_ARCH_REGISTRY.register()
class PanopticFPN(GeneralizedRCNN):
    """:class:`GeneralizedRCNN` with a semantic head and panoptic fusion.

    Training returns ``loss_rpn_cls``, ``loss_rpn_loc``, ``loss_cls``, ``loss_box_reg``,
    ``loss_mask`` (each times ``instance_loss_weight``) and ``loss_sem_seg`` (weighted by the
    head). Inputs need ``sem_seg`` (H, W) int64 separated stuff maps in training.

    Args:
        sem_seg_head: called ``(features, targets)``, returns ``(logits, losses)`` with
            logits at the padded input size.
        combine_overlap_thresh: see :func:`combine_semantic_and_instance_outputs`.
        combine_stuff_area_thresh: see :func:`combine_semantic_and_instance_outputs`.
        combine_instances_score_thresh: see :func:`combine_semantic_and_instance_outputs`.
        combine_on: produce ``panoptic_seg``.
        instance_loss_weight: weight of the RPN and ROI losses.
        **kwargs: the arguments of :class:`GeneralizedRCNN`.
    """

    compiled_parts = ("backbone", "sem_seg_head")

    @configurable
    def __init__(
        self,
        *,
        sem_seg_head: nn.Module,
        combine_overlap_thresh: float = 0.5,
        combine_stuff_area_thresh: int = 4096,
        combine_instances_score_thresh: float = 0.5,
        combine_on: bool = True,
        instance_loss_weight: float = 1.0,
        **kwargs: Any,
    ) -> None:
        # Set last: checking the label space needs the semantic head.
        label_space = kwargs.pop("label_space", None)
        super().__init__(**kwargs)
        self.sem_seg_head = sem_seg_head
        self.combine_overlap_thresh = combine_overlap_thresh
        self.combine_stuff_area_thresh = combine_stuff_area_thresh
        self.combine_instances_score_thresh = combine_instances_score_thresh
        self.combine_on = combine_on
        self.instance_loss_weight = instance_loss_weight
        self.label_space = label_space

    @classmethod
    def from_config(cls, cfg: Any) -> dict[str, Any]:
        args = super().from_config(cfg)
        combine = cfg.MODEL.PANOPTIC_FPN.COMBINE
        args.update(
            {
                "sem_seg_head": build_sem_seg_head(cfg, args["backbone"].output_shape()),
                "combine_overlap_thresh": combine.OVERLAP_THRESH,
                "combine_stuff_area_thresh": combine.STUFF_AREA_LIMIT,
                "combine_instances_score_thresh": combine.INSTANCES_CONFIDENCE_THRESH,
                "combine_on": combine.ENABLED,
                "instance_loss_weight": cfg.MODEL.PANOPTIC_FPN.INSTANCE_LOSS_WEIGHT,
            }
        )
        return args

    def check_label_space(self, space: LabelSpace) -> None:
        super().check_label_space(space)
        num_classes = getattr(self.sem_seg_head, "num_classes", None)
        if num_classes is not None and num_classes != len(space.stuff_ids) + 1:
            raise ValueError(
                f"The label space has {len(space.stuff_ids)} stuff classes, so the semantic "
                f"head must predict {len(space.stuff_ids) + 1} (things + stuff), but "
                f"MODEL.SEM_SEG_HEAD.NUM_CLASSES is {num_classes}: {space}"
            )

    def forward(self, batched_inputs: Sequence[Mapping[str, Any]]) -> Any:
        """Args:
            batched_inputs: as :meth:`GeneralizedRCNN.forward`, plus ``sem_seg`` in training.

        Returns:
            A dict of losses in training, else per image ``{"sem_seg", "instances",
            "panoptic_seg"}`` (``panoptic_seg`` only with ``combine_on``).
        """
        images = self.preprocess_image(batched_inputs)
        sizes = images.image_sizes
        features = self.backbone(images.tensor)
        if self.training:
            missing = [d.get("file_name", "?") for d in batched_inputs if "sem_seg" not in d]
            if missing:
                raise ValueError(
                    "PanopticFPN training needs 'sem_seg' (the separated stuff map) in every "
                    f"input (use INPUT.DATASET_MAPPER_NAME PanopticFPNMapper); missing for "
                    f"{missing}"
                )
            targets = ImageList.from_tensors(
                [d["sem_seg"].to(self.device) for d in batched_inputs],
                self.backbone.size_divisibility,
                self.sem_seg_head.ignore_value,
            ).tensor
            _, losses = self.sem_seg_head(features, targets)
            gt = self.gt_instances(batched_inputs)
            proposals, rpn_losses = self.proposal_generator(sizes, features, gt)
            _, roi_losses = self.roi_heads(sizes, features, proposals, gt)
            for name, value in {**rpn_losses, **roi_losses}.items():
                losses[name] = value * self.instance_loss_weight
            return losses
        sem_logits, _ = self.sem_seg_head(features)
        instances = self.inference(batched_inputs, features, sizes)
        stuff_ids = self.require_label_space().panoptic_fpn_stuff_ids
        results = []
        for d, logits, inst, size in zip(batched_inputs, sem_logits, instances, sizes):
            output_size = (int(d.get("height", size[0])), int(d.get("width", size[1])))
            sem = sem_seg_postprocess(logits, size, *output_size)
            result = {"sem_seg": sem, "instances": inst}
            if self.combine_on:
                result["panoptic_seg"] = combine_semantic_and_instance_outputs(
                    inst,
                    argmax_over_classes(sem),
                    stuff_ids,
                    overlap_threshold=self.combine_overlap_thresh,
                    stuff_area_thresh=self.combine_stuff_area_thresh,
                    instances_score_thresh=self.combine_instances_score_thresh,
                )
            results.append(result)
        return results
