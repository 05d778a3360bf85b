"""Mapper for Panoptic FPN: thing instances (boxes, classes, bitmasks) + a stuff semantic map.

Instances come from the dict's ``annotations`` (polygons or COCO RLE, decoded by
:mod:`.instance_annotations`; crowd annotations dropped, as Detectron2 does) or, when it has
none, from its panoptic map (non-crowd thing segments). The stuff map follows Detectron2's
"separated" convention: 0 = any thing, ``1..S`` = the stuff classes in contiguous-id order,
255 = ignore; it is read from ``sem_seg_file_name`` (the stuff-only PNG of the separated
datasets) or derived from the panoptic map with :meth:`LabelSpace.panoptic_fpn_lut`.

``instances`` is an :class:`~panoptic2.structures.Instances` with ``gt_boxes``
(:class:`~panoptic2.structures.Boxes`, tight XYXY boxes of the augmented masks),
``gt_classes`` ((N,) int64 contiguous thing ids) and ``gt_masks``
(:class:`~panoptic2.structures.BitMasks`, (N, H, W)).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from panoptic2.config import configurable
from panoptic2.data.build import DATA_MAPPER_REGISTRY
from panoptic2.data.label_space import PANOPTIC_FPN_IGNORE, LabelSpace
from panoptic2.data.panoptic_label import read_panoptic_label
from panoptic2.data.reading import describe_record, read_image, read_sem_seg
from panoptic2.data.transforms import AugInput, Augmentation
from panoptic2.structures import BitMasks, Boxes, Instances, masks_to_boxes

from .base import SegmentationMapperBase, mapper_label_space
from .instance_annotations import annotation_masks

__all__ = ["PanopticFPNMapper"]


@DATA_MAPPER_REGISTRY.register()
class PanopticFPNMapper(SegmentationMapperBase):
    """Reads and augments an image, its thing instances and its stuff map (see module doc).

    Args:
        is_train: Read labels (else the image only).
        augmentations: Applied to the image, masks and stuff map.
        image_format: ``"RGB"`` or ``"BGR"``.
        label_space: The dataset's label space (things, the separated stuff labels, the
            void label and divisor of its panoptic maps).
    """

    @configurable
    def __init__(
        self,
        *,
        is_train: bool,
        augmentations: Sequence[Augmentation],
        image_format: str = "RGB",
        label_space: LabelSpace,
    ) -> None:
        super().__init__(is_train=is_train, augmentations=augmentations, image_format=image_format)
        self.label_space = label_space
        self._stuff_lut = label_space.panoptic_fpn_lut()

    @classmethod
    def from_config(
        cls, cfg: Any, is_train: bool = True, dataset_name: str | None = None
    ) -> dict[str, Any]:
        return {
            **cls._base_from_config(cfg, is_train, PANOPTIC_FPN_IGNORE),
            "label_space": mapper_label_space(cfg, is_train, dataset_name),
        }

    def _stuff_map(self, panoptic: np.ndarray, dataset_dict: dict[str, Any]) -> np.ndarray:
        """Panoptic map to the separated stuff map (0 things, 1..S stuff, 255 ignore)."""
        semantic = panoptic // self.label_space.label_divisor
        if semantic.size and int(semantic.max()) >= len(self._stuff_lut):
            raise ValueError(
                f"The panoptic label of '{dataset_dict.get('file_name')}' (dataset "
                f"{dataset_dict.get('dataset_name', '?')!r}) has class {int(semantic.max())}, "
                f"outside the label space's {self.label_space.num_classes} classes"
            )
        return self._stuff_lut[semantic]

    def _from_panoptic(self, panoptic: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Masks ``(N, H, W)`` and classes ``(N,)`` of the non-crowd thing segments."""
        divisor = self.label_space.label_divisor
        ids = np.unique(panoptic)
        ids = ids[np.isin(ids // divisor, self.label_space.thing_ids) & (ids % divisor > 0)]
        masks = panoptic[None] == ids[:, None, None]
        return masks, (ids // divisor).astype(np.int64)

    def _from_annotations(
        self, annotations: list[dict], h: int, w: int, where: str
    ) -> tuple[np.ndarray, np.ndarray]:
        annos = [a for a in annotations if not a.get("iscrowd", 0)]
        masks = annotation_masks(annos, h, w, where)
        return masks, np.array([a["category_id"] for a in annos], dtype=np.int64)

    def __call__(self, dataset_dict: dict[str, Any]) -> dict[str, Any]:
        """Maps one standard dataset dict (not modified) to a model input."""
        dataset_dict = self._input(dataset_dict)
        image = read_image(dataset_dict, self.image_format)
        size = self._original_size(dataset_dict, image)
        if not self.is_train:
            return self._test_output(dataset_dict, image, size)
        h, w = image.shape[:2]
        panoptic = None
        has_pan = (
            "pan_seg_file_name" in dataset_dict or dataset_dict.get("panoptic_label") is not None
        )
        if has_pan:
            space = self.label_space
            panoptic = read_panoptic_label(
                dataset_dict,
                (h, w),
                label_divisor=space.label_divisor,
                ignore_label=space.ignore_label,
                thing_ids=space.thing_ids,
            )
        if "annotations" in dataset_dict:
            where = f"'{dataset_dict.get('file_name')}'{describe_record(dataset_dict)}"
            masks, classes = self._from_annotations(dataset_dict["annotations"], h, w, where)
        elif panoptic is not None:
            masks, classes = self._from_panoptic(panoptic)
        else:
            raise ValueError(
                f"'{dataset_dict.get('file_name')}' has neither 'annotations' nor a panoptic "
                "label: Panoptic FPN needs instances"
            )
        if "sem_seg_file_name" in dataset_dict or dataset_dict.get("sem_seg") is not None:
            stuff = read_sem_seg(dataset_dict, (h, w))
        elif panoptic is not None:
            stuff = self._stuff_map(panoptic, dataset_dict)
        else:
            raise ValueError(
                f"'{dataset_dict.get('file_name')}' has neither 'sem_seg_file_name' nor a "
                "panoptic label: Panoptic FPN needs a stuff map"
            )
        aug = AugInput(image, sem_seg=stuff, masks=masks, sem_seg_pad_value=PANOPTIC_FPN_IGNORE)
        aug.apply_augmentations(self.augmentations)
        keep = aug.masks.any(axis=(1, 2))
        masks = aug.masks[keep]
        out = self._output(dataset_dict, aug.image)
        out.update(size)
        out["sem_seg"] = torch.from_numpy(aug.sem_seg.astype(np.int64))
        gt_masks = torch.from_numpy(masks)
        out["instances"] = Instances(
            tuple(aug.image.shape[:2]),
            gt_boxes=Boxes(masks_to_boxes(gt_masks)),
            gt_classes=torch.from_numpy(classes[keep]),
            gt_masks=BitMasks(gt_masks),
        )
        return out
