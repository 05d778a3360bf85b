"""Augmentation framework: sample a deterministic Transform from the data, apply it to all.

The design mirrors Detectron2's: an :class:`Augmentation` looks at the current data (the
image, and the semantic map for label-aware crops) and *samples* an fvcore ``Transform``; an
:class:`AugInput` holds one sample's image, semantic map, panoptic map, boxes and masks and
applies that transform to every one of them consistently; :func:`apply_augmentations` runs a
list of augmentations in order and returns the combined ``TransformList``.

Randomness: each augmentation draws from an explicit ``numpy.random.Generator`` when given
one, else from numpy's global RNG, which the training loader reseeds per sample position
(:class:`~panoptic2.data.common.PositionSeededDataset`), so results depend only on the seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from fvcore.transforms.transform import NoOpTransform, Transform, TransformList

from .transform import apply_label

__all__ = ["AugInput", "Augmentation", "AugmentationList", "apply_augmentations"]


class Augmentation:
    """Samples a :class:`Transform` from the data it will be applied to.

    Subclasses implement :meth:`get_transform`, whose parameter names say which
    :class:`AugInput` attributes they need (``image``, ``sem_seg``, ...); ``input_args``
    lists them (default ``("image",)``).

    Args:
        rng: Generator to draw from; ``None`` uses numpy's global RNG.
    """

    input_args: tuple[str, ...] = ("image",)

    def __init__(self, rng: np.random.Generator | None = None) -> None:
        self.rng = rng

    def get_transform(self, *args: Any) -> Transform:
        """Returns the transform to apply, sampled from the given data."""
        raise NotImplementedError

    def __call__(self, aug_input: AugInput) -> Transform:
        """Samples a transform from ``aug_input``, applies it in place and returns it."""
        args = [getattr(aug_input, name) for name in self.input_args]
        tfm = self.get_transform(*args)
        if not isinstance(tfm, Transform):
            raise TypeError(
                f"{type(self).__name__}.get_transform() must return an fvcore Transform, got "
                f"{type(tfm).__name__}"
            )
        aug_input.transform(tfm)
        return tfm

    # Uniform draws from the configured source; all sampling goes through these two.
    def _rand(self) -> float:
        """A float in ``[0, 1)``."""
        if self.rng is not None:
            return float(self.rng.random())
        return float(np.random.random_sample())

    def _uniform(self, low: float, high: float) -> float:
        return low + (high - low) * self._rand()

    def _randint(self, low: int, high: int) -> int:
        """An int in ``[low, high)`` (``low`` when the range is empty)."""
        if high <= low:
            return low
        return min(low + int(self._rand() * (high - low)), high - 1)

    def __repr__(self) -> str:
        fields = {k: v for k, v in vars(self).items() if k != "rng" and not k.startswith("_")}
        args = ", ".join(f"{k}={v!r}" for k, v in fields.items())
        return f"{type(self).__name__}({args})"


class AugmentationList(Augmentation):
    """Applies augmentations in order; returns the combined ``TransformList``.

    Args:
        augs: The augmentations.
    """

    def __init__(self, augs: Sequence[Augmentation]) -> None:
        super().__init__()
        self.augs = list(augs)

    def __call__(self, aug_input: AugInput) -> Transform:
        return TransformList([aug(aug_input) for aug in self.augs])

    def __repr__(self) -> str:
        return f"AugmentationList({', '.join(repr(a) for a in self.augs)})"


class AugInput:
    """One sample's image and annotations, transformed together.

    Every attribute but ``image`` is optional. Label maps are only ever moved, flipped, resized
    by nearest neighbour or padded (with their own pad value, see
    :func:`~panoptic2.data.transforms.transform.apply_label`): their values never change.

    Args:
        image: ``(H, W, C)`` uint8 (or float) image.
        sem_seg: ``(H, W)`` integer semantic map.
        panoptic_seg: ``(H, W)`` int32/int64 panoptic map ``semantic * divisor + instance``.
        boxes: ``(N, 4)`` float XYXY absolute boxes.
        masks: ``(N, H, W)`` bool instance masks.
        sem_seg_pad_value: Fill of padded ``sem_seg`` pixels (the ignore label).
        panoptic_pad_value: Fill of padded ``panoptic_seg`` pixels (``ignore * divisor``).
    """

    def __init__(
        self,
        image: np.ndarray,
        *,
        sem_seg: np.ndarray | None = None,
        panoptic_seg: np.ndarray | None = None,
        boxes: np.ndarray | None = None,
        masks: np.ndarray | None = None,
        sem_seg_pad_value: int = 255,
        panoptic_pad_value: int = 255 * 256,
    ) -> None:
        if image.ndim not in (2, 3):
            raise ValueError(f"AugInput: image must be (H, W[, C]), got shape {image.shape}")
        size = image.shape[:2]
        for name, arr, first_axis in (
            ("sem_seg", sem_seg, 0),
            ("panoptic_seg", panoptic_seg, 0),
            ("masks", masks, 1),
        ):
            if arr is not None and tuple(arr.shape[first_axis : first_axis + 2]) != size:
                raise ValueError(
                    f"AugInput: {name} of shape {arr.shape} does not match the image size {size}"
                )
        self.image = image
        self.sem_seg = sem_seg
        self.panoptic_seg = panoptic_seg
        self.boxes = boxes
        self.masks = masks
        self.sem_seg_pad_value = sem_seg_pad_value
        self.panoptic_pad_value = panoptic_pad_value

    def transform(self, tfm: Transform) -> None:
        """Applies ``tfm`` in place to every attribute that is set.

        Args:
            tfm: The transform (usually sampled by an :class:`Augmentation`).
        """
        self.image = tfm.apply_image(self.image)
        if self.sem_seg is not None:
            self.sem_seg = apply_label(tfm, self.sem_seg, self.sem_seg_pad_value)
        if self.panoptic_seg is not None:
            self.panoptic_seg = apply_label(tfm, self.panoptic_seg, self.panoptic_pad_value)
        if self.boxes is not None:
            self.boxes = tfm.apply_box(np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4))
        if self.masks is not None:
            # Transformed as one (H, W, N) label so that each mask moves with the image.
            stacked = np.ascontiguousarray(self.masks.astype(np.uint8).transpose(1, 2, 0))
            self.masks = apply_label(tfm, stacked, 0).transpose(2, 0, 1).astype(bool)

    def apply_augmentations(self, augmentations: Sequence[Augmentation]) -> TransformList:
        """Applies augmentations in order, in place; returns the combined transform."""
        return AugmentationList(augmentations)(self)


def apply_augmentations(
    augmentations: Sequence[Augmentation | Transform], aug_input: AugInput | np.ndarray
) -> tuple[AugInput | np.ndarray, TransformList]:
    """Applies augmentations (or fixed transforms) to an input, as Detectron2's function does.

    Args:
        augmentations: Augmentations and/or already sampled transforms, in order.
        aug_input: An :class:`AugInput` (transformed in place) or a bare image.

    Returns:
        ``(aug_input, transforms)``: the transformed input (a new array when a bare image was
        given) and the ``TransformList`` applied, to replay on other data.
    """
    bare = isinstance(aug_input, np.ndarray)
    inp = AugInput(aug_input) if bare else aug_input
    tfms: list[Transform] = []
    for aug in augmentations:
        if isinstance(aug, Transform):
            inp.transform(aug)
            tfms.append(aug)
        else:
            tfms.append(aug(inp))
    tfm = TransformList(tfms) if tfms else TransformList([NoOpTransform()])
    return (inp.image if bare else inp), tfm
