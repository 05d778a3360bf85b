"""Mapper for Mask R-CNN / Faster R-CNN on instance annotations (Detectron2's ``DatasetMapper``).

Reads the image, applies the augmentations to the image, the boxes and (with masks) the
instance masks, and builds the training target ``instances``: an
:class:`~panoptic2.structures.Instances` of the augmented image's size with

* ``gt_boxes``: :class:`~panoptic2.structures.Boxes` XYXY, the annotations' ``bbox``
  transformed (corners through the transform, then the enclosing box) and clipped to the
  image; with masks and cropping, the tight boxes of the cropped masks instead (a cropped
  object's transformed box no longer bounds it tightly), as Detectron2 does;
* ``gt_classes``: ``(N,)`` int64 contiguous thing ids of the dataset's label space;
* ``gt_masks``: :class:`~panoptic2.structures.BitMasks` ``(N, H, W)``, only with
  ``use_instance_mask`` (``MODEL.MASK_ON``), decoded from polygons or RLE by
  :mod:`.instance_annotations`. A dict whose annotations have no ``segmentation`` at all
  (a box-only dataset) gets no ``gt_masks``; one that mixes both is an error.

Crowd annotations (``iscrowd`` 1) are dropped, and so are instances left empty by the
augmentations (box width or height <= 1e-5, or an empty mask), as in Detectron2. Inference
mappers read and resize the image only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from panoptic2.config import configurable
from panoptic2.data.build import DATA_MAPPER_REGISTRY
from panoptic2.data.label_space import LabelSpace
from panoptic2.data.reading import describe_record, read_image
from panoptic2.data.transforms import AugInput, Augmentation
from panoptic2.structures import BitMasks, Boxes, Instances, masks_to_boxes

from .base import SegmentationMapperBase, mapper_label_space
from .instance_annotations import annotation_boxes, annotation_masks

__all__ = ["DatasetMapper", "DetectionMapper"]

# Detectron2's ``filter_empty_instances`` threshold on box width and height.
_EMPTY_BOX = 1e-5


@DATA_MAPPER_REGISTRY.register()
class DetectionMapper(SegmentationMapperBase):
    """Reads and augments an image and its instance annotations (see module doc).

    Args:
        is_train: Build ``instances`` (else the image only).
        augmentations: Applied to the image, boxes and masks.
        image_format: ``"RGB"`` or ``"BGR"``.
        label_space: The dataset's label space; annotation classes must be its things.
        use_instance_mask: Decode the segmentations into ``gt_masks``.
        recompute_boxes: Replace the boxes by the tight boxes of the augmented masks
            (needs ``use_instance_mask``).
    """

    @configurable
    def __init__(
        self,
        *,
        is_train: bool,
        augmentations: Sequence[Augmentation],
        image_format: str = "RGB",
        label_space: LabelSpace,
        use_instance_mask: bool = False,
        recompute_boxes: bool = False,
    ) -> None:
        super().__init__(is_train=is_train, augmentations=augmentations, image_format=image_format)
        if recompute_boxes and not use_instance_mask:
            raise ValueError("DetectionMapper: recompute_boxes needs use_instance_mask")
        self.label_space = label_space
        self.use_instance_mask = use_instance_mask
        self.recompute_boxes = recompute_boxes

    @classmethod
    def from_config(
        cls, cfg: Any, is_train: bool = True, dataset_name: str | None = None
    ) -> dict[str, Any]:
        """``use_instance_mask`` from ``MODEL.MASK_ON``; ``recompute_boxes`` when training
        with masks and ``INPUT.CROP.ENABLED`` (Detectron2's rule)."""
        mask_on = bool(cfg.MODEL.MASK_ON)
        return {
            **cls._base_from_config(cfg, is_train, 255),
            "label_space": mapper_label_space(cfg, is_train, dataset_name),
            "use_instance_mask": mask_on,
            "recompute_boxes": bool(is_train and mask_on and cfg.INPUT.CROP.ENABLED),
        }

    def _classes(self, annotations: list[dict], where: str) -> np.ndarray:
        classes = np.array([int(a["category_id"]) for a in annotations], dtype=np.int64)
        bad = sorted(set(classes.tolist()) - set(self.label_space.thing_ids))
        if bad:
            raise ValueError(
                f"{where}: annotation classes {bad} are not thing classes of the label space "
                f"(thing ids {list(self.label_space.thing_ids)})"
            )
        return classes

    def _masks(self, annotations: list[dict], h: int, w: int, where: str) -> np.ndarray | None:
        """``(N, h, w)`` masks, or None when no annotation has a segmentation."""
        with_mask = [a.get("segmentation") is not None for a in annotations]
        if annotations and not any(with_mask):
            return None
        if not all(with_mask):
            ids = [a.get("id", i) for i, (a, m) in enumerate(zip(annotations, with_mask)) if not m]
            raise ValueError(
                f"{where}: annotations {ids[:5]} have no 'segmentation' while others of the "
                "image have one; masks are on (MODEL.MASK_ON), so every non-crowd annotation "
                "needs one (or train boxes only with MODEL.MASK_ON False)"
            )
        return annotation_masks(annotations, h, w, where)

    def __call__(self, dataset_dict: dict[str, Any]) -> dict[str, Any]:
        """Maps one standard dataset dict (not modified) to a model input."""
        dataset_dict = self._input(dataset_dict)
        image = read_image(dataset_dict, self.image_format)
        size = self._original_size(dataset_dict, image)
        if not self.is_train:
            return self._test_output(dataset_dict, image, size)
        where = f"'{dataset_dict.get('file_name')}'{describe_record(dataset_dict)}"
        if "annotations" not in dataset_dict:
            raise ValueError(
                f"{where} has no 'annotations': DetectionMapper trains on instance annotations"
            )
        annos = [a for a in dataset_dict["annotations"] if not a.get("iscrowd", 0)]
        h, w = image.shape[:2]
        classes = self._classes(annos, where)
        boxes = annotation_boxes(annos, where)
        masks = self._masks(annos, h, w, where) if self.use_instance_mask else None
        aug = AugInput(
            image, boxes=boxes, masks=masks if masks is not None and len(masks) else None
        )
        aug.apply_augmentations(self.augmentations)
        out = self._output(dataset_dict, aug.image)
        out.update(size)
        out["instances"] = self._instances(aug, classes, with_masks=masks is not None)
        return out

    def _instances(self, aug: AugInput, classes: np.ndarray, with_masks: bool) -> Instances:
        """The target of the augmented boxes / masks, without the emptied instances."""
        out_h, out_w = aug.image.shape[:2]
        boxes = np.asarray(aug.boxes, dtype=np.float64).reshape(-1, 4)
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, out_w)
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, out_h)
        masks = None
        if with_masks:
            masks = aug.masks if len(classes) else np.zeros((0, out_h, out_w), dtype=bool)
            if self.recompute_boxes:
                boxes = masks_to_boxes(masks).astype(np.float64)
        sides = boxes[:, 2:] - boxes[:, :2]
        keep = (sides > _EMPTY_BOX).all(axis=1)
        if masks is not None:
            keep &= masks.any(axis=(1, 2))
        instances = Instances(
            (out_h, out_w),
            gt_boxes=Boxes(torch.from_numpy(boxes[keep]).to(torch.float32)),
            gt_classes=torch.from_numpy(classes[keep]),
        )
        if masks is not None:
            instances.gt_masks = BitMasks(torch.from_numpy(np.ascontiguousarray(masks[keep])))
        return instances


DatasetMapper = DetectionMapper
"""Detectron2's name of the mapper, for ported code (``DatasetMapper(cfg, is_train=True)``)."""
DATA_MAPPER_REGISTRY.register(DetectionMapper, name="DatasetMapper")
