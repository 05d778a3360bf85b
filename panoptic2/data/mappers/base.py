"""What every segmentation mapper shares: settings from the config, image reading, output."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from panoptic2.data.label_space import LabelSpace, label_space_of_datasets
from panoptic2.data.records import load_record_dict
from panoptic2.data.transforms import AugInput, Augmentation, build_augmentation

__all__ = ["SegmentationMapperBase", "mapper_label_space"]

# Keys holding decoded pixel arrays (from the record reader); replaced by the mapper.
DECODED_KEYS = ("image", "sem_seg", "panoptic_label")


def mapper_label_space(cfg: Any, is_train: bool, dataset_name: str | None = None) -> LabelSpace:
    """The label space a mapper built from ``cfg`` works in.

    Args:
        cfg: The config.
        is_train: Whether the mapper is a training one.
        dataset_name: The dataset the mapper will map; None: every dataset of
            ``DATASETS.TRAIN`` for a training mapper, ``DATASETS.TEST[0]`` otherwise.

    Returns:
        The datasets' label space.

    Raises:
        ValueError: no dataset is named, or the datasets' label spaces differ or are
            incomplete (the message names the dataset).
    """
    if dataset_name:
        names = [dataset_name]
    else:
        names = list(cfg.DATASETS.TRAIN) if is_train else list(cfg.DATASETS.TEST[:1])
    if not names:
        which = "DATASETS.TRAIN" if is_train else "DATASETS.TEST"
        raise ValueError(
            f"The mapper takes its label space from the dataset it maps, but none was given "
            f"and {which} is empty"
        )
    return label_space_of_datasets(names)


class SegmentationMapperBase:
    """Shared state and helpers of the semantic / panoptic mappers.

    Args:
        is_train: Whether to read labels and build targets (else the image only).
        augmentations: Applied in order to the image and labels.
        image_format: ``"RGB"`` or ``"BGR"``: channel order of the output image.
    """

    def __init__(
        self, *, is_train: bool, augmentations: Sequence[Augmentation], image_format: str = "RGB"
    ) -> None:
        self.is_train = is_train
        self.augmentations = list(augmentations)
        self.image_format = image_format

    @classmethod
    def _base_from_config(cls, cfg: Any, is_train: bool, ignore_label: int) -> dict[str, Any]:
        return {
            "is_train": is_train,
            "augmentations": build_augmentation(cfg, is_train, ignore_label),
            "image_format": cfg.INPUT.FORMAT,
        }

    @staticmethod
    def _input(dataset_dict: dict[str, Any]) -> dict[str, Any]:
        """A shallow copy of ``dataset_dict`` to work on; a dict that points into sharded
        records (``record_file``/``record_offset``) comes back with its decoded ``image`` and
        ``panoptic_label``/``sem_seg`` arrays, which the readers use instead of files."""
        if "record_file" in dataset_dict:
            return load_record_dict(dataset_dict)
        return copy.copy(dataset_dict)

    @staticmethod
    def _output(dataset_dict: dict[str, Any], image: np.ndarray) -> dict[str, Any]:
        """The output dict: the input's keys (decoded arrays removed) plus the image tensor.

        Args:
            dataset_dict: The (unmodified) input dict.
            image: ``(H, W, 3)`` uint8 augmented image.

        Returns:
            A new dict with ``image`` ((3, H, W) uint8 tensor); ``height``/``width`` keep the
            original image size (outputs are resized back to it at inference).
        """
        out = {k: v for k, v in dataset_dict.items() if k not in DECODED_KEYS}
        out["image"] = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
        return out

    @staticmethod
    def _original_size(dataset_dict: dict[str, Any], image: np.ndarray) -> dict[str, int]:
        h, w = image.shape[:2]
        return {"height": dataset_dict.get("height", h), "width": dataset_dict.get("width", w)}

    def _test_output(
        self, dataset_dict: dict[str, Any], image: np.ndarray, size: dict[str, int]
    ) -> dict[str, Any]:
        """The model input at test time: the image through the test augmentations, no
        targets, with the original ``size``."""
        aug = AugInput(image)
        aug.apply_augmentations(self.augmentations)
        return {**self._output(dataset_dict, aug.image), **size}

    def __repr__(self) -> str:
        augs = ", ".join(repr(a) for a in self.augmentations)
        return f"{type(self).__name__}(is_train={self.is_train}, augmentations=[{augs}])"
