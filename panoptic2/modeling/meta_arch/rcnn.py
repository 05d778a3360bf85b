"""``GeneralizedRCNN`` (Faster / Mask R-CNN): backbone, proposal generator, ROI heads.

The ROI heads work with 0-based thing indices; the model maps the dataset's contiguous
thing ids (``metadata.thing_ids``) to them for training and back for its outputs. The
metadata is that of each input's ``dataset_name``, else of the dataset given at
construction (``DATASETS.TEST[0]``, then ``DATASETS.TRAIN[0]``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from panoptic2.config import configurable
from panoptic2.data.catalog import Metadata, MetadataCatalog

from ..backbone import Backbone, build_backbone
from ..proposal_generator import build_proposal_generator
from ..roi_heads import build_roi_heads
from ..roi_heads.mask_head import paste_masks_in_image
from .build import META_ARCH_REGISTRY
from .panoptic_deeplab import pad_and_stack

__all__ = ["GeneralizedRCNN", "detector_postprocess", "label_space"]


def label_space(meta: Metadata) -> tuple[list[int], list[int]]:
    """Contiguous ids of a dataset's thing and stuff classes.

    Stuff ids are every class of ``range(num_classes)`` that is neither a thing nor the
    ``ignore_label``, in increasing order: label ``s`` of the "separated" stuff map (1..S) is
    the ``s``-th of them, as :class:`panoptic2.data.mappers.PanopticFPNMapper` builds it.

    Args:
        meta: dataset metadata with ``thing_ids`` (and ``num_classes`` for stuff).

    Returns:
        ``(thing_ids, stuff_ids)``, both sorted.
    """
    things = sorted(int(t) for t in meta.thing_ids)
    ignore = meta.get("ignore_label", None)
    num_classes = meta.get("num_classes", 0)
    stuff = [c for c in range(num_classes) if c not in set(things) and c != ignore]
    return things, stuff


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
        ``{"pred_boxes" (N, 4) float XYXY, "scores" (N,) float, "pred_classes" (N,) int64
        contiguous, "pred_masks" (N, H, W) bool (when masks were predicted)}``.
    """
    height, width = output_size
    boxes = detections["pred_boxes"].clone()
    boxes[:, 0::2] *= width / input_size[1]
    boxes[:, 1::2] *= height / input_size[0]
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
    lut = torch.tensor(list(thing_ids), dtype=torch.int64, device=boxes.device)
    out = {
        "pred_boxes": boxes,
        "scores": detections["scores"],
        "pred_classes": lut[detections["pred_classes"].long()],
    }
    if "pred_masks" in detections:
        out["pred_masks"] = paste_masks_in_image(
            detections["pred_masks"], boxes, (height, width), mask_threshold
        )
    return out


@META_ARCH_REGISTRY.register()
class GeneralizedRCNN(nn.Module):
    """A two-stage detector: ``backbone -> proposal_generator -> roi_heads``.

    Training (``model.train()``): ``forward(batched_inputs)`` returns the RPN and ROI losses
    (``loss_rpn_cls``, ``loss_rpn_loc``, ``loss_cls``, ``loss_box_reg``[, ``loss_mask``]).
    Inference: one ``{"instances": {...}}`` per image at the original size (see
    :func:`detector_postprocess`).

    Args:
        backbone: the backbone (``size_divisibility`` pads the inputs).
        proposal_generator: called ``(image_sizes, features, gt_instances)``, returns
            ``(proposals, losses)``.
        roi_heads: called ``(image_sizes, features, proposals, gt_instances)``, returns
            ``(detections, losses)``; ``num_classes`` attribute.
        pixel_mean: per-channel mean (0-255, INPUT.FORMAT order).
        pixel_std: per-channel std.
        metadata_dataset: dataset whose metadata serves inputs without ``dataset_name``.
    """

    @configurable
    def __init__(
        self,
        *,
        backbone: Backbone,
        proposal_generator: nn.Module,
        roi_heads: nn.Module,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        metadata_dataset: str | None = None,
    ) -> None:
        super().__init__()
        if len(pixel_mean) != len(pixel_std):
            raise ValueError(f"pixel_mean {pixel_mean} and pixel_std {pixel_std} differ in length")
        self.backbone = backbone
        self.proposal_generator = proposal_generator
        self.roi_heads = roi_heads
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)
        self.metadata_dataset = metadata_dataset

    @classmethod
    def from_config(cls, cfg: Any) -> dict[str, Any]:
        backbone = build_backbone(cfg)
        shapes = backbone.output_shape()
        datasets = list(cfg.DATASETS.TEST) + list(cfg.DATASETS.TRAIN)
        return {
            "backbone": backbone,
            "proposal_generator": build_proposal_generator(
                cfg, shapes, cfg.MODEL.PROPOSAL_GENERATOR.NAME
            ),
            "roi_heads": build_roi_heads(cfg, shapes, cfg.MODEL.ROI_HEADS.NAME),
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "metadata_dataset": datasets[0] if datasets else None,
        }

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def preprocess_image(
        self, batched_inputs: Sequence[Mapping[str, Any]]
    ) -> tuple[torch.Tensor, list[tuple[int, int]]]:
        """Normalised images padded to the backbone's size divisibility.

        Returns:
            ``(images, image_sizes)``: (N, C, H, W) float and per image its unpadded size.
        """
        images = [
            (d["image"].to(self.device).float() - self.pixel_mean) / self.pixel_std
            for d in batched_inputs
        ]
        sizes = [(int(x.shape[-2]), int(x.shape[-1])) for x in images]
        # Zero padding after normalisation pads with the mean colour, as Detectron2 does.
        return pad_and_stack(images, self.backbone.size_divisibility), sizes

    def metadata(self, dataset_dict: Mapping[str, Any]) -> Metadata:
        """Metadata of ``dataset_dict``'s dataset (module docstring), checked against the
        number of classes the model predicts.

        Raises:
            ValueError: no dataset is known, its metadata lacks ``thing_ids``, or the number
                of thing classes differs from ``MODEL.ROI_HEADS.NUM_CLASSES``.
        """
        name = dataset_dict.get("dataset_name") or self.metadata_dataset
        where = dataset_dict.get("file_name", dataset_dict.get("image_id", "?"))
        if not name:
            raise ValueError(
                f"{type(self).__name__}: image {where!r} has no 'dataset_name' and the model "
                "was built without DATASETS.TEST / DATASETS.TRAIN"
            )
        meta = MetadataCatalog.get(name)
        if "thing_ids" not in meta:
            raise ValueError(f"Metadata of dataset '{name}' lacks 'thing_ids' (image {where!r})")
        if len(meta.thing_ids) != self.roi_heads.num_classes:
            raise ValueError(
                f"Dataset '{name}' has {len(meta.thing_ids)} thing classes but the model "
                f"predicts {self.roi_heads.num_classes} (MODEL.ROI_HEADS.NUM_CLASSES)"
            )
        return meta

    def gt_instances(self, batched_inputs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Each input's ``instances`` with 0-based thing classes, on the model's device.

        Raises:
            ValueError: an input lacks ``instances`` or has a class that is not a thing.
        """
        out = []
        for d in batched_inputs:
            if "instances" not in d:
                raise ValueError(
                    f"{type(self).__name__} training needs 'instances' in every input (use "
                    f"INPUT.DATASET_MAPPER_NAME PanopticFPNMapper); missing for "
                    f"{d.get('file_name', '?')!r}"
                )
            things, _ = label_space(self.metadata(d))
            inst = d["instances"]
            to_index = {t: i for i, t in enumerate(things)}
            classes = inst["gt_classes"].tolist()
            bad = sorted({c for c in classes if c not in to_index})
            if bad:
                raise ValueError(
                    f"Image {d.get('file_name', '?')!r} of dataset "
                    f"'{d.get('dataset_name') or self.metadata_dataset}': instance classes "
                    f"{bad} are not thing ids {things}"
                )
            index = torch.tensor(
                [to_index[c] for c in classes], dtype=torch.int64, device=self.device
            )
            out.append(
                {
                    "gt_boxes": inst["gt_boxes"].to(self.device, torch.float32),
                    "gt_classes": index,
                    "gt_masks": inst["gt_masks"].to(self.device),
                }
            )
        return out

    def forward(self, batched_inputs: Sequence[Mapping[str, Any]]) -> Any:
        """Args:
            batched_inputs: mapper outputs: ``image`` (C, H, W), ``height``/``width``
                (original size), optional ``dataset_name``, and in training ``instances``
                ``{"gt_boxes", "gt_classes" (contiguous thing ids), "gt_masks"}``.

        Returns:
            A dict of losses in training, else one ``{"instances": ...}`` per image.
        """
        images, sizes = self.preprocess_image(batched_inputs)
        features = self.backbone(images)
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
    ) -> list[dict[str, torch.Tensor]]:
        """Per-image detections at the original size (:func:`detector_postprocess`)."""
        proposals, _ = self.proposal_generator(sizes, features, None)
        detections, _ = self.roi_heads(sizes, features, proposals, None)
        results = []
        for d, det, size in zip(batched_inputs, detections, sizes):
            things, _ = label_space(self.metadata(d))
            output_size = (int(d.get("height", size[0])), int(d.get("width", size[1])))
            results.append(detector_postprocess(det, output_size, size, things))
        return results
