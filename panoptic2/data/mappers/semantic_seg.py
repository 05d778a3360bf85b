"""Mapper for semantic segmentation (DeepLabV3/V3+): image + ``sem_seg`` target."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from panoptic2.config import configurable
from panoptic2.data.build import DATA_MAPPER_REGISTRY
from panoptic2.data.reading import check_label_values, read_image, read_sem_seg
from panoptic2.data.transforms import AugInput, Augmentation

from .base import SegmentationMapperBase, mapper_label_space

__all__ = ["SemanticSegmentationMapper"]


@DATA_MAPPER_REGISTRY.register()
class SemanticSegmentationMapper(SegmentationMapperBase):
    """Reads, augments and tensorises an image and its semantic map.

    Output: ``image`` (3, H, W) uint8 tensor, ``sem_seg`` (H, W) int64 tensor (training only),
    ``height``/``width`` (original size), and the input dict's other keys.

    Args:
        is_train: Read and augment the label (else the image only, with test resizing).
        augmentations: Applied to image and label.
        image_format: ``"RGB"`` or ``"BGR"``.
        ignore_label: Fill of padded label pixels (and the one allowed value besides the
            classes).
        num_classes: Labels must lie in ``0..num_classes - 1`` or be ``ignore_label`` (an
            error names the file otherwise); None: not checked.
    """

    @configurable
    def __init__(
        self,
        *,
        is_train: bool,
        augmentations: Sequence[Augmentation],
        image_format: str = "RGB",
        ignore_label: int = 255,
        num_classes: int | None = None,
    ) -> None:
        super().__init__(is_train=is_train, augmentations=augmentations, image_format=image_format)
        self.ignore_label = ignore_label
        self.num_classes = num_classes

    @classmethod
    def from_config(
        cls, cfg: Any, is_train: bool = True, dataset_name: str | None = None
    ) -> dict[str, Any]:
        space = mapper_label_space(cfg, is_train, dataset_name)
        return {
            **cls._base_from_config(cfg, is_train, space.ignore_label),
            "ignore_label": space.ignore_label,
            "num_classes": space.num_classes,
        }

    def __call__(self, dataset_dict: dict[str, Any]) -> dict[str, Any]:
        """Maps one standard dataset dict (not modified) to a model input."""
        dataset_dict = self._input(dataset_dict)
        image = read_image(dataset_dict, self.image_format)
        size = self._original_size(dataset_dict, image)
        sem_seg = read_sem_seg(dataset_dict, image.shape[:2]) if self.is_train else None
        if sem_seg is not None and self.num_classes is not None:
            check_label_values(
                sem_seg,
                self.num_classes,
                self.ignore_label,
                dataset_dict.get("sem_seg_file_name", "<decoded sem_seg>"),
                dataset_dict,
            )
        aug = AugInput(image, sem_seg=sem_seg, sem_seg_pad_value=self.ignore_label)
        aug.apply_augmentations(self.augmentations)
        out = self._output(dataset_dict, aug.image)
        out.update(size)
        if sem_seg is not None:
            out["sem_seg"] = torch.from_numpy(aug.sem_seg.astype("int64"))
        return out
