"""The augmentations: resize, random scale, crops, flip, colour jitter, pad to divisibility.

Each samples an fvcore transform (see :mod:`panoptic2.data.transforms.augmentation`). Names
and semantics follow Detectron2 (``ResizeShortestEdge``, ``RandomCrop``,
``RandomCrop_CategoryAreaConstraint``, ``RandomFlip``, ``RandomBrightness`` ...), and the
DeepLab2 training pipeline (random scale in a range, then pad-and-crop to a fixed size with
the mean pixel and the ignore label).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import numpy as np
from fvcore.transforms.transform import (
    BlendTransform,
    CropTransform,
    HFlipTransform,
    NoOpTransform,
    Transform,
    TransformList,
    VFlipTransform,
)

from .augmentation import Augmentation
from .transform import PadTransform, ResizeTransform

__all__ = [
    "ColorJitter",
    "PadToDivisibility",
    "RandomBrightness",
    "RandomContrast",
    "RandomCrop",
    "RandomCrop_CategoryAreaConstraint",
    "RandomFlip",
    "RandomSaturation",
    "RandomScale",
    "ResizeShortestEdge",
]

PadValue = float | Sequence[float]


class ResizeShortestEdge(Augmentation):
    """Resize so the short edge is a sampled length, keeping the long edge <= ``max_size``.

    Args:
        short_edge_length: ``"choice"``: candidate lengths; ``"range"``: ``[min, max]``.
        max_size: Upper bound of the long edge after resizing.
        sample_style: ``"choice"`` or ``"range"`` (uniform integer in the closed range).
        interp: Image interpolation (labels are always nearest).
        rng: Generator to draw from; ``None`` uses numpy's global RNG.
    """

    def __init__(
        self,
        short_edge_length: int | Sequence[int],
        max_size: int = sys.maxsize,
        sample_style: str = "range",
        interp: str = "bilinear",
        rng: np.random.Generator | None = None,
    ) -> None:
        super().__init__(rng)
        if sample_style not in ("range", "choice"):
            raise ValueError(f"sample_style must be 'range' or 'choice', got {sample_style!r}")
        lengths = [short_edge_length] if isinstance(short_edge_length, int) else short_edge_length
        lengths = [int(v) for v in lengths]
        if sample_style == "range" and len(lengths) == 1:
            lengths = lengths * 2
        if sample_style == "range" and len(lengths) != 2:
            raise ValueError(f"sample_style 'range' needs [min, max], got {short_edge_length}")
        if not lengths or min(lengths) <= 0:
            raise ValueError(f"short_edge_length must be positive, got {short_edge_length}")
        self.short_edge_length = lengths
        self.max_size = int(max_size)
        self.sample_style = sample_style
        self.interp = interp

    @staticmethod
    def get_output_shape(h: int, w: int, short_edge: int, max_size: int) -> tuple[int, int]:
        """Output ``(new_h, new_w)`` for an ``(h, w)`` input, as Detectron2 computes it."""
        scale = short_edge / min(h, w)
        new_h, new_w = h * scale, w * scale
        if max(new_h, new_w) > max_size:
            scale = max_size / max(new_h, new_w)
            new_h, new_w = new_h * scale, new_w * scale
        return int(new_h + 0.5), int(new_w + 0.5)

    def get_transform(self, image: np.ndarray) -> Transform:
        h, w = image.shape[:2]
        if self.sample_style == "range":
            lo, hi = self.short_edge_length
            size = self._randint(lo, hi + 1)
        else:
            size = self.short_edge_length[self._randint(0, len(self.short_edge_length))]
        new_h, new_w = self.get_output_shape(h, w, size, self.max_size)
        return ResizeTransform(h, w, new_h, new_w, self.interp)


class RandomScale(Augmentation):
    """Resize by a random factor in ``[min_scale, max_scale]`` (DeepLab2's scale augmentation).

    Args:
        min_scale: Smallest factor.
        max_scale: Largest factor.
        step: When > 0, the factor is drawn from ``min_scale, min_scale + step, ...,
            max_scale`` (DeepLab2's ``scale_factor_step_size``); else uniformly.
        interp: Image interpolation (labels are always nearest).
        rng: Generator to draw from; ``None`` uses numpy's global RNG.
    """

    def __init__(
        self,
        min_scale: float,
        max_scale: float,
        step: float = 0.0,
        interp: str = "bilinear",
        rng: np.random.Generator | None = None,
    ) -> None:
        super().__init__(rng)
        if not 0 < min_scale <= max_scale:
            raise ValueError(f"Need 0 < min_scale <= max_scale, got {min_scale}, {max_scale}")
        self.min_scale, self.max_scale, self.step = float(min_scale), float(max_scale), step
        self.interp = interp

    def get_transform(self, image: np.ndarray) -> Transform:
        h, w = image.shape[:2]
        if self.step > 0:
            num = int(round((self.max_scale - self.min_scale) / self.step)) + 1
            scale = self.min_scale + self.step * self._randint(0, num)
        else:
            scale = self._uniform(self.min_scale, self.max_scale)
        new_h, new_w = max(1, int(h * scale + 0.5)), max(1, int(w * scale + 0.5))
        return ResizeTransform(h, w, new_h, new_w, self.interp)


def _pad_then_crop(
    h: int, w: int, crop_h: int, crop_w: int, pad_value: PadValue
) -> tuple[Transform | None, int, int]:
    """The bottom/right padding (or None) that lets a ``crop_h x crop_w`` window fit."""
    pad_h, pad_w = max(crop_h - h, 0), max(crop_w - w, 0)
    if pad_h == 0 and pad_w == 0:
        return None, h, w
    pad = PadTransform(0, 0, pad_w, pad_h, orig_w=w, orig_h=h, pad_value=pad_value)
    return pad, h + pad_h, w + pad_w


class RandomCrop(Augmentation):
    """Crop a fixed-size window at a random position; pad first if the image is smaller.

    As in DeepLab2, an image smaller than the crop is padded at the bottom/right (image with
    ``image_pad_value``, labels with their ignore value) before the window is drawn, so the
    output is always exactly ``crop_size``.

    Args:
        crop_size: ``(height, width)`` of the window.
        image_pad_value: Image fill: a scalar or one value per channel (the mean pixel).
        rng: Generator to draw from; ``None`` uses numpy's global RNG.
    """

    def __init__(
        self,
        crop_size: Sequence[int],
        image_pad_value: PadValue = 0,
        rng: np.random.Generator | None = None,
    ) -> None:
        super().__init__(rng)
        crop_h, crop_w = (int(v) for v in crop_size)
        if crop_h <= 0 or crop_w <= 0:
            raise ValueError(f"crop_size must be positive, got {crop_size}")
        self.crop_size = (crop_h, crop_w)
        self.image_pad_value = image_pad_value

    def _sample_window(self, h: int, w: int) -> tuple[int, int]:
        """Top-left ``(y0, x0)`` of a window inside an ``(h, w)`` (already padded) image."""
        crop_h, crop_w = self.crop_size
        return self._randint(0, h - crop_h + 1), self._randint(0, w - crop_w + 1)

    def _make(self, pad: Transform | None, y0: int, x0: int, h: int, w: int) -> Transform:
        crop = CropTransform(x0, y0, self.crop_size[1], self.crop_size[0], orig_w=w, orig_h=h)
        return crop if pad is None else TransformList([pad, crop])

    def get_transform(self, image: np.ndarray) -> Transform:
        h, w = image.shape[:2]
        pad, h, w = _pad_then_crop(h, w, *self.crop_size, self.image_pad_value)
        y0, x0 = self._sample_window(h, w)
        return self._make(pad, y0, x0, h, w)


class RandomCrop_CategoryAreaConstraint(RandomCrop):  # noqa: N801 (Detectron2's public name)
    """Random crop in which no single category covers more than a fraction of the labels.

    Up to ``max_tries`` windows are drawn; the first whose semantic labels (ignoring
    ``ignored_category`` and padding) hold more than one category, the largest covering at
    most ``single_category_max_area`` of them, is kept; else the last one drawn (as Detectron2).

    Args:
        crop_size: ``(height, width)`` of the window.
        single_category_max_area: Largest allowed fraction of one category; 1.0 disables.
        ignored_category: Semantic label not counted (the ignore label), or None.
        image_pad_value: Image fill: a scalar or one value per channel.
        max_tries: Windows drawn at most.
        rng: Generator to draw from; ``None`` uses numpy's global RNG.
    """

    input_args = ("image", "sem_seg")

    def __init__(
        self,
        crop_size: Sequence[int],
        single_category_max_area: float = 1.0,
        ignored_category: int | None = None,
        image_pad_value: PadValue = 0,
        max_tries: int = 10,
        rng: np.random.Generator | None = None,
    ) -> None:
        super().__init__(crop_size, image_pad_value, rng)
        self.single_category_max_area = float(single_category_max_area)
        self.ignored_category = ignored_category
        self.max_tries = int(max_tries)

    def _accept(self, window: np.ndarray) -> bool:
        labels, counts = np.unique(window, return_counts=True)
        if self.ignored_category is not None:
            counts = counts[labels != self.ignored_category]
        return len(counts) > 1 and counts.max() <= counts.sum() * self.single_category_max_area

    def get_transform(self, image: np.ndarray, sem_seg: np.ndarray | None) -> Transform:
        if self.single_category_max_area >= 1.0:
            return super().get_transform(image)
        if sem_seg is None:
            raise ValueError(
                "RandomCrop_CategoryAreaConstraint needs the sample's sem_seg (set "
                "AugInput.sem_seg) when single_category_max_area < 1"
            )
        h0, w0 = image.shape[:2]
        pad, h, w = _pad_then_crop(h0, w0, *self.crop_size, self.image_pad_value)
        crop_h, crop_w = self.crop_size
        for _ in range(self.max_tries):
            y0, x0 = self._sample_window(h, w)
            # Padded pixels would be ignore labels: counting the unpadded part is the same.
            if self._accept(sem_seg[y0 : y0 + crop_h, x0 : x0 + crop_w]):
                break
        return self._make(pad, y0, x0, h, w)


class RandomFlip(Augmentation):
    """Flip horizontally (or vertically) with probability ``prob``.

    Args:
        prob: Probability of flipping.
        horizontal: Flip left-right.
        vertical: Flip top-bottom (exactly one of the two must be set).
        rng: Generator to draw from; ``None`` uses numpy's global RNG.
    """

    def __init__(
        self,
        prob: float = 0.5,
        *,
        horizontal: bool = True,
        vertical: bool = False,
        rng: np.random.Generator | None = None,
    ) -> None:
        super().__init__(rng)
        if horizontal == vertical:
            raise ValueError("RandomFlip: set exactly one of horizontal and vertical")
        self.prob, self.horizontal, self.vertical = float(prob), horizontal, vertical

    def get_transform(self, image: np.ndarray) -> Transform:
        h, w = image.shape[:2]
        if self._rand() >= self.prob:
            return NoOpTransform()
        return HFlipTransform(w) if self.horizontal else VFlipTransform(h)


class _RandomBlend(Augmentation):
    """Blend the image with a reference image by a random weight ``a``: ``a*img + (1-a)*ref``."""

    def __init__(
        self, intensity_min: float, intensity_max: float, rng: np.random.Generator | None = None
    ) -> None:
        super().__init__(rng)
        if not 0 <= intensity_min <= intensity_max:
            raise ValueError(f"Need 0 <= min <= max, got {intensity_min}, {intensity_max}")
        self.intensity_min, self.intensity_max = float(intensity_min), float(intensity_max)

    def _reference(self, image: np.ndarray) -> np.ndarray | float:
        raise NotImplementedError

    def get_transform(self, image: np.ndarray) -> Transform:
        weight = self._uniform(self.intensity_min, self.intensity_max)
        return BlendTransform(self._reference(image), src_weight=1 - weight, dst_weight=weight)


class RandomBrightness(_RandomBlend):
    """Scale intensities by a random factor in ``[intensity_min, intensity_max]``."""

    def _reference(self, image: np.ndarray) -> float:
        return 0.0


class RandomContrast(_RandomBlend):
    """Blend with the image mean by a random factor in ``[intensity_min, intensity_max]``."""

    def _reference(self, image: np.ndarray) -> float:
        return float(image.mean())


class RandomSaturation(_RandomBlend):
    """Blend with the grayscale image by a random factor in ``[intensity_min, intensity_max]``.

    Args:
        intensity_min: Smallest factor (0 = grayscale).
        intensity_max: Largest factor.
        image_format: ``"RGB"`` or ``"BGR"``: the channel order, for the luma weights.
        rng: Generator to draw from; ``None`` uses numpy's global RNG.
    """

    def __init__(
        self,
        intensity_min: float,
        intensity_max: float,
        image_format: str = "RGB",
        rng: np.random.Generator | None = None,
    ) -> None:
        super().__init__(intensity_min, intensity_max, rng)
        if image_format not in ("RGB", "BGR"):
            raise ValueError(f"image_format must be 'RGB' or 'BGR', got {image_format!r}")
        self.image_format = image_format

    def _reference(self, image: np.ndarray) -> np.ndarray:
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"RandomSaturation needs an (H, W, 3) image, got {image.shape}")
        luma = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601, RGB order
        if self.image_format == "BGR":
            luma = luma[::-1]
        return (image.astype(np.float32) @ luma)[..., None]


class ColorJitter(Augmentation):
    """Brightness, contrast and saturation jitter (torchvision-style strengths).

    Each strength ``s`` draws a factor in ``[max(0, 1 - s), 1 + s]``; ``s = 0`` leaves that
    property unchanged. Applied in the order brightness, contrast, saturation.

    Args:
        brightness: Brightness strength.
        contrast: Contrast strength.
        saturation: Saturation strength.
        image_format: ``"RGB"`` or ``"BGR"``.
        rng: Generator to draw from; ``None`` uses numpy's global RNG.
    """

    def __init__(
        self,
        brightness: float = 0.0,
        contrast: float = 0.0,
        saturation: float = 0.0,
        image_format: str = "RGB",
        rng: np.random.Generator | None = None,
    ) -> None:
        super().__init__(rng)
        self.brightness, self.contrast, self.saturation = brightness, contrast, saturation
        self._augs: list[Augmentation] = []
        if brightness > 0:
            self._augs.append(RandomBrightness(max(0, 1 - brightness), 1 + brightness, rng))
        if contrast > 0:
            self._augs.append(RandomContrast(max(0, 1 - contrast), 1 + contrast, rng))
        if saturation > 0:
            self._augs.append(
                RandomSaturation(max(0, 1 - saturation), 1 + saturation, image_format, rng)
            )

    def get_transform(self, image: np.ndarray) -> Transform:
        # Each blend's reference depends on the image after the previous blend.
        tfms: list[Transform] = []
        for aug in self._augs:
            tfm = aug.get_transform(image)
            image = tfm.apply_image(image)
            tfms.append(tfm)
        return TransformList(tfms) if tfms else NoOpTransform()


class PadToDivisibility(Augmentation):
    """Pad at the bottom/right so both sides are multiples of ``size_divisibility``.

    Args:
        size_divisibility: The divisor (<= 0 disables).
        image_pad_value: Image fill: a scalar or one value per channel.
    """

    def __init__(self, size_divisibility: int, image_pad_value: PadValue = 0) -> None:
        super().__init__()
        self.size_divisibility = int(size_divisibility)
        self.image_pad_value = image_pad_value

    def get_transform(self, image: np.ndarray) -> Transform:
        d = self.size_divisibility
        h, w = image.shape[:2]
        if d <= 0:
            return NoOpTransform()
        pad_h, pad_w = (-h) % d, (-w) % d
        if pad_h == 0 and pad_w == 0:
            return NoOpTransform()
        return PadTransform(0, 0, pad_w, pad_h, orig_w=w, orig_h=h, pad_value=self.image_pad_value)
