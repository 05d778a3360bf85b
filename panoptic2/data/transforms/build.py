"""Build the training / inference augmentation lists from a config."""

from __future__ import annotations

from typing import Any

from .augmentation import Augmentation
from .augmentation_impl import (
    ColorJitter,
    PadToDivisibility,
    RandomCrop_CategoryAreaConstraint,
    RandomFlip,
    RandomScale,
    ResizeShortestEdge,
)

__all__ = ["build_augmentation"]


def build_augmentation(cfg: Any, is_train: bool, ignore_label: int = 255) -> list[Augmentation]:
    """The augmentations a mapper applies, in order, from the ``INPUT`` keys.

    Training: ``ResizeShortestEdge(MIN_SIZE_TRAIN, MAX_SIZE_TRAIN, MIN_SIZE_TRAIN_SAMPLING)``
    (left out when ``MIN_SIZE_TRAIN`` is empty or ``[0]``), ``RandomScale(*RANDOM_SCALE,
    RANDOM_SCALE_STEP)`` unless the range is ``[1, 1]``,
    ``RandomCrop_CategoryAreaConstraint(CROP.SIZE, CROP.SINGLE_CATEGORY_MAX_AREA)`` when
    ``CROP.ENABLED`` (padding with ``MODEL.PIXEL_MEAN``), ``ColorJitter(*COLOR_JITTER)``,
    ``RandomFlip`` when ``RANDOM_FLIP`` is ``"horizontal"``/``"vertical"``, and
    ``PadToDivisibility(SIZE_DIVISIBILITY)``. Inference: ``ResizeShortestEdge(MIN_SIZE_TEST,
    MAX_SIZE_TEST)`` (left out when ``MIN_SIZE_TEST`` is 0).

    Args:
        cfg: The config.
        is_train: Training or inference augmentations.
        ignore_label: Semantic label the category-area crop does not count.

    Returns:
        The augmentations.
    """
    inp = cfg.INPUT
    if not is_train:
        if inp.MIN_SIZE_TEST <= 0:
            return []
        return [ResizeShortestEdge(inp.MIN_SIZE_TEST, inp.MAX_SIZE_TEST, "choice")]
    mean = tuple(cfg.MODEL.PIXEL_MEAN)
    augs: list[Augmentation] = []
    min_sizes = [s for s in inp.MIN_SIZE_TRAIN if s > 0]
    if min_sizes:
        augs.append(ResizeShortestEdge(min_sizes, inp.MAX_SIZE_TRAIN, inp.MIN_SIZE_TRAIN_SAMPLING))
    lo, hi = inp.RANDOM_SCALE
    if (lo, hi) != (1.0, 1.0):
        augs.append(RandomScale(lo, hi, inp.RANDOM_SCALE_STEP))
    if inp.CROP.ENABLED:
        augs.append(
            RandomCrop_CategoryAreaConstraint(
                inp.CROP.SIZE,
                inp.CROP.SINGLE_CATEGORY_MAX_AREA,
                ignored_category=ignore_label,
                image_pad_value=mean,
            )
        )
    jitter = inp.COLOR_JITTER
    if max(jitter) > 0:
        augs.append(ColorJitter(*jitter, image_format=inp.FORMAT))
    if inp.RANDOM_FLIP in ("horizontal", "vertical"):
        augs.append(
            RandomFlip(
                horizontal=inp.RANDOM_FLIP == "horizontal",
                vertical=inp.RANDOM_FLIP == "vertical",
            )
        )
    elif inp.RANDOM_FLIP != "none":
        raise ValueError(
            f"INPUT.RANDOM_FLIP must be 'horizontal', 'vertical' or 'none', got {inp.RANDOM_FLIP!r}"
        )
    if inp.SIZE_DIVISIBILITY > 0:
        augs.append(PadToDivisibility(inp.SIZE_DIVISIBILITY, mean))
    return augs
