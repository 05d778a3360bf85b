"""``GeneralizedRCNN`` (Faster / Mask R-CNN): backbone, proposal generator, ROI heads.

The ROI heads work with 0-based thing indices; the model maps the contiguous thing ids of
its label space (``label_space.thing_ids``) to them for training and back for its outputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from panoptic2.config import configurable
from panoptic2.data.label_space import LabelSpace, label_space_from_config
from panoptic2.structures import BitMasks, Boxes, ImageList, Instances

from ..backbone import Backbone, build_backbone
from ..proposal_generator import build_proposal_generator
from ..roi_heads import build_roi_heads
from ..roi_heads.mask_head import paste_masks_in_image
from .base import LabelSpaceMixin, preprocess_images
from .build import META_ARCH_REGISTRY

__all__ = ["GeneralizedRCNN", "detector_postprocess"]


def detector_postprocess(
    detections: Mapping[str, torch.Tensor],
    output_size: tuple[int, int],
    input_size: tuple[int, int],
    thing_ids: Sequence[int],
    mask_threshold: float = 0.5,
) -> dict[str, torch.Tensor]:
    """Detections of the network input resized to the original image (Detectron2's
    ``detector_postprocess``): boxes scaled and clipped, masks pasted, classes mapped.

    Args:
        detections: ``{"pred_boxes" (N, 4), "scores" (N,), "pred_classes" (N,) 0-based,
            "pred_masks" (N, 1, M, M) optional}`` in input coordinates.
        output_size: ``(height, width)`` of the original image.
        input_size: ``(height, width)`` of the (unpadded) network input.
        thing_ids: contiguous dataset id of each 0-based thing index.
        mask_threshold: threshold of the pasted mask probabilities.

    Returns:
        :class:`Instances` of size ``output_size`` with ``pred_boxes`` (:class:`Boxes` XYXY),
        ``scores`` (N,) float, ``pred_classes`` (N,) int64 contiguous and ``pred_masks``
        (N, H, W) bool (when masks were predicted).
    """
    height, width = output_size
    boxes = Boxes(detections["pred_boxes"].clone())
    boxes.scale(width / input_size[1], height / input_size[0])
    boxes.clip((height, width))
    lut = torch.tensor(list(thing_ids), dtype=torch.int64, device=boxes.device)
    out = Instances(
        (height, width),
        pred_boxes=boxes,
        scores=detections["scores"],
        pred_classes=lut[detections["pred_classes"].long()],
    )
    if "pred_masks" in detections:
        out.pred_masks = paste_masks_in_image(
            detections["pred_masks"], boxes.tensor, (height, width), mask_threshold
        )
    return out


@META_ARCH_REGISTRY.register()
class GeneralizedRCNN(LabelSpaceMixin, nn.Module):
    """A two-stage detector: ``backbone -> proposal_generator -> roi_heads``.

    Training (``model.train()``): ``forward(batched_inputs)`` returns the RPN and ROI losses
    (``loss_rpn_cls``, ``loss_rpn_loc``, ``loss_cls``, ``loss_box_reg``[, ``loss_mask``]).
    Inference: one ``{"instances": Instances}`` per image at the original size (see
    :func:`detector_postprocess`).

    Args:
        backbone: the backbone (``size_divisibility`` pads the inputs).
        proposal_generator: called ``(image_sizes, features, gt_instances)``, returns
            ``(proposals, losses)``.
        roi_heads: called ``(image_sizes, features, proposals, gt_instances)``, returns
            ``(detections, losses)``; ``num_classes`` attribute.
        pixel_mean: per-channel mean (0-255, INPUT.FORMAT order).
        pixel_std: per-channel std.
        label_space: the classes (its things are the ROI heads' classes); None: set it
            before use, e.g. by loading a checkpoint that stores one.
    """

    # Why XLA devices cannot train it (read by panoptic2.engine.xla): every step would
    # compile new graphs and run ops on the host.
    dynamic_shape_reason = (
        "its RPN and ROI heads match anchors and proposals to boxes and sample them with "
        "data-dependent shapes (nonzero over IoU matches, randperm in the box sampler, NMS)"
    )

    # What MODEL.COMPILE compiles as one graph (panoptic2.modeling.compile); the RPN and ROI
    # heads stay eager (see dynamic_shape_reason).
    compiled_parts: tuple[str, ...] = ("backbone",)

    @configurable
    def __init__(
        self,
        *,
        backbone: Backbone,
        proposal_generator: nn.Module,
        roi_heads: nn.Module,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        label_space: LabelSpace | None = None,
    ) -> None:
        super().__init__()
        if len(pixel_mean) != len(pixel_std):
            raise ValueError(f"pixel_mean {pixel_mean} and pixel_std {pixel_std} differ in length")
        self.backbone = backbone
        self.proposal_generator = proposal_generator
        self.roi_heads = roi_heads
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)
        self.label_space = label_space

    @classmethod
    def from_config(cls, cfg: Any) -> dict[str, Any]:
        backbone = build_backbone(cfg)
        shapes = backbone.output_shape()
        return {
            "backbone": backbone,
            "proposal_generator": build_proposal_generator(
                cfg, shapes, cfg.MODEL.PROPOSAL_GENERATOR.NAME
            ),
            "roi_heads": build_roi_heads(cfg, shapes, cfg.MODEL.ROI_HEADS.NAME),
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "label_space": label_space_from_config(cfg),
        }

    def check_label_space(self, space: LabelSpace) -> None:
        if len(space.thing_ids) != self.roi_heads.num_classes:
            raise ValueError(
                f"The label space has {len(space.thing_ids)} thing classes but the model "
                f"predicts {self.roi_heads.num_classes} (MODEL.ROI_HEADS.NUM_CLASSES): {space}"
            )

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def preprocess_image(self, batched_inputs: Sequence[Mapping[str, Any]]) -> ImageList:
        """Normalised images padded to the backbone's size divisibility."""
        return preprocess_images(
            batched_inputs, self.pixel_mean, self.pixel_std, self.backbone.size_divisibility
        )

    def gt_instances(self, batched_inputs: Sequence[Mapping[str, Any]]) -> list[Instances]:
        """Each input's ``instances`` with 0-based thing classes, on the model's device.

        Returns:
            Per image an :class:`Instances` with ``gt_boxes`` (:class:`Boxes`),
            ``gt_classes`` (M,) int64 0-based thing index and, when present, ``gt_masks``
            (:class:`BitMasks`).

        Raises:
            ValueError: an input lacks ``instances`` or has a class that is not a thing.
        """
        things = list(self.require_label_space().thing_ids)
        to_index = {t: i for i, t in enumerate(things)}
        out = []
        for d in batched_inputs:
            if "instances" not in d:
                raise ValueError(
                    f"{type(self).__name__} training needs 'instances' in every input (use "
                    f"INPUT.DATASET_MAPPER_NAME DetectionMapper or PanopticFPNMapper); missing "
                    f"for {d.get('file_name', '?')!r}"
                )
            inst = d["instances"]
            if self.roi_heads.mask_on and not inst.has("gt_masks"):
                raise ValueError(
                    f"Image {d.get('file_name', '?')!r} of dataset {d.get('dataset_name', '?')!r} "
                    "has no instance masks (its annotations have no 'segmentation') but the "
                    "model has a mask head: train boxes only with MODEL.MASK_ON False"
                )
            classes = inst.gt_classes.tolist()
            bad = sorted({c for c in classes if c not in to_index})
            if bad:
                raise ValueError(
                    f"Image {d.get('file_name', '?')!r} of dataset {d.get('dataset_name', '?')!r}: "
                    f"instance classes {bad} are not thing ids {things}"
                )
            gt = Instances(
                inst.image_size,
                gt_boxes=Boxes(inst.gt_boxes.tensor.to(self.device, torch.float32)),
                gt_classes=torch.tensor(
                    [to_index[c] for c in classes], dtype=torch.int64, device=self.device
                ),
            )
            if inst.has("gt_masks"):
                gt.gt_masks = BitMasks(inst.gt_masks.tensor.to(self.device))
            out.append(gt)
        return out

    def forward(self, batched_inputs: Sequence[Mapping[str, Any]]) -> Any:
        """Args:
            batched_inputs: mapper outputs: ``image`` (C, H, W), ``height``/``width``
                (original size), and in training ``instances`` (:class:`Instances` with
                ``gt_boxes``, ``gt_classes`` (contiguous thing ids), optional ``gt_masks``).

        Returns:
            A dict of losses in training, else one ``{"instances": ...}`` per image.
        """
        images = self.preprocess_image(batched_inputs)
        sizes = images.image_sizes
        features = self.backbone(images.tensor)
        if self.training:
            gt = self.gt_instances(batched_inputs)
            proposals, losses = self.proposal_generator(sizes, features, gt)
            _, roi_losses = self.roi_heads(sizes, features, proposals, gt)
            return {**losses, **roi_losses}
        return [{"instances": inst} for inst in self.inference(batched_inputs, features, sizes)]

    def inference(
        self,
        batched_inputs: Sequence[Mapping[str, Any]],
        features: Mapping[str, torch.Tensor],
        sizes: Sequence[tuple[int, int]],
    ) -> list[Instances]:
        """Per-image detections at the original size (:func:`detector_postprocess`)."""
        things = self.require_label_space().thing_ids
        proposals, _ = self.proposal_generator(sizes, features, None)
        detections, _ = self.roi_heads(sizes, features, proposals, None)
        results = []
        for d, det, size in zip(batched_inputs, detections, sizes):
            output_size = (int(d.get("height", size[0])), int(d.get("width", size[1])))
            results.append(detector_postprocess(det, output_size, size, things))
        return results
