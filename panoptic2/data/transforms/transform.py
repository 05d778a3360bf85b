"""Transforms fvcore lacks, and the rule that applies any transform to a label map.

fvcore's :class:`~fvcore.transforms.transform.Transform` objects are deterministic: they hold
the parameters an :class:`~panoptic2.data.transforms.Augmentation` sampled, so the same
transform can be applied to the image, its label maps, its boxes and its masks. Two things
are added here:

* :class:`ResizeTransform`: fvcore's ``ScaleTransform`` resizes labels through a float
  tensor; ours resizes labels by pure index arithmetic, so a label value can never be
  altered and int32 panoptic ids of any size survive exactly.
* :func:`apply_label`: applies a transform to a label map with a pad value that belongs to
  the *label* (semantic ignore, ``ignore_label * label_divisor`` for a panoptic map, 0 for a
  binary mask) rather than the single ``seg_pad_value`` a ``PadTransform`` stores.
"""

from __future__ import annotations

import cv2
import numpy as np
from fvcore.transforms.transform import PadTransform as _FvPadTransform
from fvcore.transforms.transform import Transform, TransformList

__all__ = ["PadTransform", "ResizeTransform", "apply_label", "nearest_resize"]

_CV2_INTERP = {
    "nearest": cv2.INTER_NEAREST,
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
}


def nearest_resize(label: np.ndarray, new_h: int, new_w: int) -> np.ndarray:
    """Nearest-neighbour resize by index arithmetic (pixel-centre aligned).

    Output pixel ``(i, j)`` takes input pixel ``(floor((i + 0.5) * h / new_h),
    floor((j + 0.5) * w / new_w))``, as PIL's and OpenCV's ``INTER_NEAREST_EXACT`` do. Values
    are copied, never computed, so any dtype and any value range is preserved exactly.

    Args:
        label: ``(H, W)`` or ``(H, W, C)`` array of any dtype.
        new_h: Output height.
        new_w: Output width.

    Returns:
        ``(new_h, new_w[, C])`` array of the same dtype.
    """
    h, w = label.shape[:2]
    rows = np.minimum(((np.arange(new_h) + 0.5) * (h / new_h)).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(new_w) + 0.5) * (w / new_w)).astype(np.int64), w - 1)
    return label[rows[:, None], cols[None, :]]


class ResizeTransform(Transform):
    """Resize an image to ``(new_h, new_w)``; labels always by exact nearest neighbour.

    Args:
        h: Input height.
        w: Input width.
        new_h: Output height.
        new_w: Output width.
        interp: Image interpolation: ``"bilinear"`` (default), ``"nearest"``, ``"bicubic"``
            or ``"area"``.
    """

    def __init__(self, h: int, w: int, new_h: int, new_w: int, interp: str = "bilinear"):
        super().__init__()
        if interp not in _CV2_INTERP:
            raise ValueError(f"Unknown interpolation {interp!r}; valid: {sorted(_CV2_INTERP)}")
        self._set_attributes(locals())

    def _check(self, img: np.ndarray) -> None:
        if img.shape[:2] != (self.h, self.w):
            raise ValueError(
                f"ResizeTransform built for an input of {(self.h, self.w)} got an array of "
                f"shape {img.shape}"
            )

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        """Resize an ``(H, W)`` or ``(H, W, C)`` uint8/float image."""
        self._check(img)
        if (self.h, self.w) == (self.new_h, self.new_w):
            return img
        if self.interp == "nearest":
            return nearest_resize(img, self.new_h, self.new_w)
        out = cv2.resize(img, (self.new_w, self.new_h), interpolation=_CV2_INTERP[self.interp])
        # cv2 drops a trailing channel axis of size 1; keep the input's rank.
        return out.reshape(self.new_h, self.new_w, *img.shape[2:])

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        """Resize an ``(H, W[, C])`` label map of any dtype by exact nearest neighbour."""
        self._check(segmentation)
        return nearest_resize(segmentation, self.new_h, self.new_w)

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        """Scale ``(N, 2)`` float ``(x, y)`` coordinates."""
        coords[:, 0] = coords[:, 0] * (self.new_w / self.w)
        coords[:, 1] = coords[:, 1] * (self.new_h / self.h)
        return coords

    def inverse(self) -> Transform:
        return ResizeTransform(self.new_h, self.new_w, self.h, self.w, self.interp)


class PadTransform(_FvPadTransform):
    """fvcore's ``PadTransform`` whose image fill may be one value per channel.

    DeepLab2 pads images with the mean pixel, which differs per channel; fvcore's
    ``np.pad`` fill is a single scalar. Labels are padded by :func:`apply_label`.

    Args:
        x0: Pixels added on the left.
        y0: Pixels added on the top.
        x1: Pixels added on the right.
        y1: Pixels added on the bottom.
        orig_w: Input width (to invert).
        orig_h: Input height (to invert).
        pad_value: Image fill: a scalar or one value per channel.
        seg_pad_value: Fill used by a bare ``apply_segmentation`` call.
    """

    def __init__(
        self,
        x0: int,
        y0: int,
        x1: int,
        y1: int,
        orig_w: int | None = None,
        orig_h: int | None = None,
        pad_value: float | tuple[float, ...] = 0,
        seg_pad_value: int = 0,
    ):
        if not np.isscalar(pad_value):
            pad_value = tuple(float(v) for v in pad_value)
        super().__init__(x0, y0, x1, y1, orig_w, orig_h, pad_value, seg_pad_value)

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        """Pad an ``(H, W)`` or ``(H, W, C)`` image."""
        h, w = img.shape[:2]
        out = np.empty((h + self.y0 + self.y1, w + self.x0 + self.x1, *img.shape[2:]), img.dtype)
        fill = np.asarray(self.pad_value, dtype=np.float64)
        if fill.ndim and (img.ndim != 3 or fill.shape[0] != img.shape[2]):
            raise ValueError(
                f"PadTransform: {fill.shape[0]} pad values for an image of shape {img.shape}"
            )
        out[...] = np.clip(fill, 0, 255) if img.dtype == np.uint8 else fill
        out[self.y0 : self.y0 + h, self.x0 : self.x0 + w] = img
        return out


def _flatten(tfm: Transform) -> list[Transform]:
    if isinstance(tfm, TransformList):
        return [t for sub in tfm.transforms for t in _flatten(sub)]
    return [tfm]


def apply_label(tfm: Transform, label: np.ndarray, pad_value: int | float) -> np.ndarray:
    """Apply a transform to a label map, padding with the label's own pad value.

    Every transform uses its ``apply_segmentation`` (nearest neighbour, never interpolating),
    except a ``PadTransform`` (fvcore's or ours), which pads with ``pad_value`` instead of its single
    ``seg_pad_value``: a semantic map, a panoptic map and binary masks of one sample each
    need a different fill (ignore id, ``ignore * label_divisor``, 0).

    Args:
        tfm: A transform or a ``TransformList``.
        label: ``(H, W)`` or ``(H, W, C)`` array of any dtype.
        pad_value: Value of pixels added by padding.

    Returns:
        The transformed label, same dtype.
    """
    for t in _flatten(tfm):
        if isinstance(t, _FvPadTransform):
            pad = [(t.y0, t.y1), (t.x0, t.x1)] + [(0, 0)] * (label.ndim - 2)
            label = np.pad(label, pad, mode="constant", constant_values=pad_value)
        else:
            label = t.apply_segmentation(label)
    return label
