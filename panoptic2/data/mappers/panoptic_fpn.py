"""Mapper for Panoptic FPN: thing instances (boxes, classes, bitmasks) + a stuff semantic map.

Instances come from the dict's ``annotations`` (polygons or COCO RLE, decoded with
pycocotools; crowd annotations dropped, as Detectron2 does) or, when it has none, from its
panoptic map (non-crowd thing segments). The stuff map follows Detectron2's "separated"
convention: 0 = any thing, ``1..S`` = the stuff classes in contiguous-id order, 255 = ignore;
it is read from ``sem_seg_file_name`` (the stuff-only PNG of the separated datasets) or
derived from the panoptic map.

Until an ``Instances`` structure exists, ``instances`` is a plain dict::

    {"gt_boxes": (N, 4) float32 XYXY tensor (tight boxes of the augmented masks),
     "gt_classes": (N,) int64 tensor of contiguous thing ids,
     "gt_masks": (N, H, W) bool tensor}
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_util

from panoptic2.config import configurable
from panoptic2.data.build import DATA_MAPPER_REGISTRY
from panoptic2.data.transforms import AugInput, Augmentation

from .base import SegmentationMapperBase, train_metadata
from .reading import read_image, read_panoptic_label, read_sem_seg

__all__ = ["PanopticFPNMapper", "annotation_to_mask", "masks_to_boxes"]

# Ignore value of the separated stuff map (Detectron2's convention).
STUFF_IGNORE = 255


def annotation_to_mask(segmentation: Any, height: int, width: int) -> np.ndarray:
    """Polygons (list of flat ``[x0, y0, x1, y1, ...]``) or a COCO RLE dict to a bitmask.

    Args:
        segmentation: Polygons, a compressed RLE dict, or an uncompressed RLE (list counts).
        height: Image height.
        width: Image width.

    Returns:
        ``(height, width)`` bool mask.
    """
    if isinstance(segmentation, list):
        if not segmentation:
            return np.zeros((height, width), dtype=bool)
        rle = mask_util.merge(mask_util.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation, dict):
        rle = segmentation
        if isinstance(rle.get("counts"), list):
            rle = mask_util.frPyObjects(rle, height, width)
        if tuple(rle["size"]) != (height, width):
            raise ValueError(f"RLE of size {rle['size']} for an image of {(height, width)}")
    else:
        raise TypeError(f"Unknown segmentation format {type(segmentation).__name__}")
    return mask_util.decode(rle).astype(bool)


def masks_to_boxes(masks: np.ndarray) -> np.ndarray:
    """Tight XYXY boxes ``(N, 4)`` float32 of ``(N, H, W)`` non-empty bool masks.

    ``x1``/``y1`` are exclusive pixel edges (a one-pixel mask at (0, 0) is ``[0, 0, 1, 1]``).
    """
    boxes = np.zeros((len(masks), 4), dtype=np.float32)
    for i, m in enumerate(masks):
        ys = np.flatnonzero(m.any(axis=1))
        xs = np.flatnonzero(m.any(axis=0))
        boxes[i] = (xs[0], ys[0], xs[-1] + 1, ys[-1] + 1)
    return boxes


@DATA_MAPPER_REGISTRY.register()
class PanopticFPNMapper(SegmentationMapperBase):
    """Reads and augments an image, its thing instances and its stuff map (see module doc).

    Args:
        is_train: Read labels (else the image only).
        augmentations: Applied to the image, masks and stuff map.
        image_format: ``"RGB"`` or ``"BGR"``.
        thing_ids: Contiguous ids of thing classes.
        stuff_ids: Contiguous ids of stuff classes (mapped to 1..S in this order).
        ignore_label: Semantic void label of the panoptic map.
        label_divisor: Label divisor of the panoptic map.
    """

    @configurable
    def __init__(
        self,
        *,
        is_train: bool,
        augmentations: Sequence[Augmentation],
        image_format: str = "RGB",
        thing_ids: Iterable[int],
        stuff_ids: Iterable[int],
        ignore_label: int,
        label_divisor: int,
    ) -> None:
        super().__init__(is_train=is_train, augmentations=augmentations, image_format=image_format)
        self.thing_ids = sorted(int(t) for t in thing_ids)
        self.stuff_ids = sorted(int(s) for s in stuff_ids)
        self.ignore_label = int(ignore_label)
        self.label_divisor = int(label_divisor)

    @classmethod
    def from_config(cls, cfg: Any, is_train: bool = True) -> dict[str, Any]:
        meta = train_metadata(cfg, ("ignore_label", "label_divisor", "thing_ids", "num_classes"))
        things = set(meta.thing_ids)
        stuff = [c for c in range(meta.num_classes) if c not in things and c != meta.ignore_label]
        return {
            **cls._base_from_config(cfg, is_train, STUFF_IGNORE),
            "thing_ids": meta.thing_ids,
            "stuff_ids": stuff,
            "ignore_label": meta.ignore_label,
            "label_divisor": meta.label_divisor,
        }

    def _stuff_map(self, panoptic: np.ndarray) -> np.ndarray:
        """Panoptic map to the separated stuff map (0 things, 1..S stuff, 255 ignore)."""
        semantic = panoptic // self.label_divisor
        lut = np.full(int(semantic.max()) + 1, STUFF_IGNORE, dtype=np.int64)
        for i, s in enumerate(self.stuff_ids, start=1):
            if s < len(lut):
                lut[s] = i
        lut[[t for t in self.thing_ids if t < len(lut)]] = 0
        return lut[semantic]

    def _from_panoptic(self, panoptic: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Masks ``(N, H, W)`` and classes ``(N,)`` of the non-crowd thing segments."""
        ids = np.unique(panoptic)
        ids = ids[
            np.isin(ids // self.label_divisor, self.thing_ids) & (ids % self.label_divisor > 0)
        ]
        masks = panoptic[None] == ids[:, None, None]
        return masks, (ids // self.label_divisor).astype(np.int64)

    def _from_annotations(
        self, annotations: list[dict], h: int, w: int
    ) -> tuple[np.ndarray, np.ndarray]:
        annos = [a for a in annotations if not a.get("iscrowd", 0)]
        masks = np.zeros((len(annos), h, w), dtype=bool)
        for i, a in enumerate(annos):
            masks[i] = annotation_to_mask(a["segmentation"], h, w)
        return masks, np.array([a["category_id"] for a in annos], dtype=np.int64)

    def __call__(self, dataset_dict: dict[str, Any]) -> dict[str, Any]:
        """Maps one standard dataset dict (not modified) to a model input."""
        dataset_dict = self._input(dataset_dict)
        image = read_image(dataset_dict, self.image_format)
        size = self._original_size(dataset_dict, image)
        if not self.is_train:
            aug = AugInput(image)
            aug.apply_augmentations(self.augmentations)
            return {**self._output(dataset_dict, aug.image), **size}
        h, w = image.shape[:2]
        panoptic = None
        has_pan = (
            "pan_seg_file_name" in dataset_dict or dataset_dict.get("panoptic_label") is not None
        )
        if has_pan:
            panoptic = read_panoptic_label(
                dataset_dict,
                (h, w),
                label_divisor=self.label_divisor,
                ignore_label=self.ignore_label,
                thing_ids=self.thing_ids,
            )
        if "annotations" in dataset_dict:
            masks, classes = self._from_annotations(dataset_dict["annotations"], h, w)
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
            stuff = self._stuff_map(panoptic)
        else:
            raise ValueError(
                f"'{dataset_dict.get('file_name')}' has neither 'sem_seg_file_name' nor a "
                "panoptic label: Panoptic FPN needs a stuff map"
            )
        aug = AugInput(image, sem_seg=stuff, masks=masks, sem_seg_pad_value=STUFF_IGNORE)
        aug.apply_augmentations(self.augmentations)
        keep = aug.masks.reshape(len(aug.masks), -1).any(axis=1)
        masks = aug.masks[keep]
        out = self._output(dataset_dict, aug.image)
        out.update(size)
        out["sem_seg"] = torch.from_numpy(aug.sem_seg.astype(np.int64))
        out["instances"] = {
            "gt_boxes": torch.from_numpy(masks_to_boxes(masks)),
            "gt_classes": torch.from_numpy(classes[keep]),
            "gt_masks": torch.from_numpy(masks),
        }
        return out
