"""Mapper for Panoptic-DeepLab: image + semantic, centre, offset targets and their weights."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from panoptic2.config import configurable
from panoptic2.data.build import DATA_MAPPER_REGISTRY
from panoptic2.data.panoptic_label import read_panoptic_label
from panoptic2.data.reading import check_label_values, read_image
from panoptic2.data.transforms import AugInput, Augmentation

from .base import SegmentationMapperBase, mapper_label_space
from .panoptic_deeplab_targets import PanopticDeepLabTargetGenerator

__all__ = ["PanopticDeepLabMapper"]


@DATA_MAPPER_REGISTRY.register()
class PanopticDeepLabMapper(SegmentationMapperBase):
    """Reads and augments an image and its panoptic map, then builds Panoptic-DeepLab targets.

    Output (training): ``image`` (3, H, W) uint8, ``sem_seg`` (H, W) int64, ``center``
    (1, H, W) float32, ``offset`` (2, H, W) float32, ``sem_seg_weights``,
    ``center_weights``, ``offset_weights`` (H, W) float32 tensors (see
    :class:`PanopticDeepLabTargetGenerator`); ``height``/``width`` are the original size.
    Inference: the image only.

    Args:
        is_train: Read labels and build targets.
        augmentations: Applied to the image and panoptic map.
        image_format: ``"RGB"`` or ``"BGR"``.
        target_generator: Builds the targets; its ``ignore_label``, ``label_divisor`` and
            ``thing_ids`` also drive label reading.
        num_classes: Semantic classes must lie in ``0..num_classes - 1`` or be the ignore
            label (an error names the file otherwise); None: not checked.
    """

    @configurable
    def __init__(
        self,
        *,
        is_train: bool,
        augmentations: Sequence[Augmentation],
        image_format: str = "RGB",
        target_generator: PanopticDeepLabTargetGenerator,
        num_classes: int | None = None,
    ) -> None:
        super().__init__(is_train=is_train, augmentations=augmentations, image_format=image_format)
        self.target_generator = target_generator
        self.num_classes = num_classes

    @classmethod
    def from_config(
        cls, cfg: Any, is_train: bool = True, dataset_name: str | None = None
    ) -> dict[str, Any]:
        space = mapper_label_space(cfg, is_train, dataset_name)
        inp = cfg.INPUT
        generator = PanopticDeepLabTargetGenerator(
            ignore_label=space.ignore_label,
            thing_ids=space.thing_ids,
            label_divisor=space.label_divisor,
            sigma=inp.GAUSSIAN_SIGMA,
            ignore_stuff_in_offset=inp.IGNORE_STUFF_IN_OFFSET,
            small_instance_area=inp.SMALL_INSTANCE_AREA,
            small_instance_weight=inp.SMALL_INSTANCE_WEIGHT,
            ignore_crowd_in_semantic=inp.IGNORE_CROWD_IN_SEMANTIC,
        )
        return {
            **cls._base_from_config(cfg, is_train, space.ignore_label),
            "target_generator": generator,
            "num_classes": space.num_classes,
        }

    def __call__(self, dataset_dict: dict[str, Any]) -> dict[str, Any]:
        """Maps one standard dataset dict (not modified) to a model input."""
        dataset_dict = self._input(dataset_dict)
        gen = self.target_generator
        image = read_image(dataset_dict, self.image_format)
        size = self._original_size(dataset_dict, image)
        panoptic = None
        if self.is_train:
            panoptic = read_panoptic_label(
                dataset_dict,
                image.shape[:2],
                label_divisor=gen.label_divisor,
                ignore_label=gen.ignore_label,
                thing_ids=gen.thing_ids,
            )
        semantic = None if panoptic is None else panoptic // gen.label_divisor
        if semantic is not None and self.num_classes is not None:
            where = dataset_dict.get("pan_seg_file_name", "<decoded panoptic_label>")
            check_label_values(semantic, self.num_classes, gen.ignore_label, where, dataset_dict)
        aug = AugInput(
            image,
            # The semantic map lets a category-area crop see the classes.
            sem_seg=semantic,
            panoptic_seg=panoptic,
            sem_seg_pad_value=gen.ignore_label,
            panoptic_pad_value=gen.ignore_label * gen.label_divisor,
        )
        aug.apply_augmentations(self.augmentations)
        out = self._output(dataset_dict, aug.image)
        out.update(size)
        if panoptic is not None:
            out.update({k: torch.from_numpy(v) for k, v in gen(aug.panoptic_seg).items()})
        return out
