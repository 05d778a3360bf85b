"""Panoptic-DeepLab training targets from a panoptic label map (vectorised).

Input is the framework's internal panoptic map ``semantic * label_divisor + instance``:
instance 0 marks stuff and crowd regions (a thing class with instance 0 is crowd), and void
pixels hold ``ignore_label * label_divisor``. Targets follow Detectron2's
``PanopticDeepLabTargetGenerator`` / DeepLab2's sample generator:

* ``sem_seg``: the semantic class (crowd -> ignore when ``ignore_crowd_in_semantic``).
* ``center``: a Gaussian (``sigma``) at the rounded mass centre (mean pixel coordinate) of
  every non-crowd thing instance, truncated to a ``(6 sigma + 3)`` square window; overlapping
  Gaussians take the max.
* ``offset``: ``(dy, dx) = centre - pixel`` (unrounded centre) on thing instance pixels.
* ``sem_seg_weights``: 1, ``small_instance_weight`` on instances smaller than
  ``small_instance_area`` pixels, 0 on pixels whose semantic target is ignored.
* ``center_weights``: 1 except on void and crowd pixels. ``offset_weights``: the same, and
  also 0 on stuff when ``ignore_stuff_in_offset`` (as in Detectron2 and DeepLab2, the centre
  loss keeps stuff pixels: there the target "no centre here" is meaningful).

Crowd regions of a class share instance 0, so they get no centre of their own (DeepLab2).
:func:`panoptic2.testing.references.panoptic_deeplab_targets_reference` computes the same
targets instance by instance; both agree exactly (areas and coordinate sums are integers,
exact in float64).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

__all__ = ["PanopticDeepLabTargetGenerator"]

# Id ranges up to this many times the pixel count are indexed directly (bincount / lookup
# tables); sparser ids are compacted with np.unique first.
_MAX_DIRECT_ID_RATIO = 4


def _gaussian_radius(sigma: float) -> int:
    return int(np.round(3 * sigma + 1))


def _gaussian_kernel(sigma: float) -> np.ndarray:
    """``(2r + 1, 2r + 1)`` float64 Gaussian, peak 1 at the centre, ``r = round(3 sigma + 1)``."""
    r = _gaussian_radius(sigma)
    d = np.arange(-r, r + 1)
    return np.exp(-(d[None, :] ** 2 + d[:, None] ** 2) / (2 * sigma**2))


class PanopticDeepLabTargetGenerator:
    """Builds Panoptic-DeepLab targets from an internal panoptic map, without per-pixel loops.

    Args:
        ignore_label: Semantic void/ignore label.
        thing_ids: Contiguous semantic ids of thing classes.
        label_divisor: ``panoptic = semantic * label_divisor + instance``.
        sigma: Standard deviation (pixels) of the centre Gaussian.
        ignore_stuff_in_offset: Zero offset weights on stuff pixels.
        small_instance_area: Instances with fewer pixels get ``small_instance_weight``.
        small_instance_weight: Semantic-loss weight of small-instance pixels.
        ignore_crowd_in_semantic: Semantic target of crowd pixels is ``ignore_label``.
    """

    def __init__(
        self,
        ignore_label: int,
        thing_ids: Iterable[int],
        label_divisor: int,
        sigma: float = 8,
        ignore_stuff_in_offset: bool = True,
        small_instance_area: int = 4096,
        small_instance_weight: float = 3,
        ignore_crowd_in_semantic: bool = False,
    ) -> None:
        if label_divisor <= 0:
            raise ValueError(f"label_divisor must be positive, got {label_divisor}")
        if sigma <= 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        self.ignore_label = int(ignore_label)
        self.thing_ids = sorted(int(t) for t in thing_ids)
        self.label_divisor = int(label_divisor)
        self.sigma = float(sigma)
        self.ignore_stuff_in_offset = ignore_stuff_in_offset
        self.small_instance_area = small_instance_area
        self.small_instance_weight = float(small_instance_weight)
        self.ignore_crowd_in_semantic = ignore_crowd_in_semantic
        self._kernel = _gaussian_kernel(self.sigma)

    def _segment_ids(self, panoptic: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, inverse)``: candidate segment ids and each pixel's index into them."""
        flat = panoptic.ravel()
        max_id = int(flat.max())
        if max_id <= _MAX_DIRECT_ID_RATIO * flat.size + 1024:
            return np.arange(max_id + 1), flat.astype(np.intp, copy=False)
        ids, inverse = np.unique(flat, return_inverse=True)
        return ids, inverse.ravel()

    def __call__(self, panoptic: np.ndarray) -> dict[str, np.ndarray]:
        """Computes the targets.

        Args:
            panoptic: ``(H, W)`` int32/int64 internal panoptic map (non-negative).

        Returns:
            ``sem_seg`` (H, W) int64; ``center`` (1, H, W) float32; ``offset`` (2, H, W)
            float32 (dy, dx); ``sem_seg_weights``, ``center_weights``, ``offset_weights``
            (H, W) float32.
        """
        panoptic = _check_panoptic(panoptic)
        h, w = panoptic.shape
        div = self.label_divisor
        ids, inverse = self._segment_ids(panoptic)
        sem_of_id = ids // div
        is_thing_class = np.isin(sem_of_id, self.thing_ids)
        is_void = sem_of_id == self.ignore_label
        is_instance = is_thing_class & (ids % div != 0)
        is_crowd = is_thing_class & (ids % div == 0)

        # Per-id pixel counts and coordinate sums: one pass each over the image.
        area = np.bincount(inverse, minlength=len(ids))
        rows, cols = np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64)
        sum_y = np.bincount(inverse, weights=np.repeat(rows, w), minlength=len(ids))
        sum_x = np.bincount(inverse, weights=np.tile(cols, h), minlength=len(ids))
        present = is_instance & (area > 0)
        inst = np.flatnonzero(present)
        cy = sum_y[inst] / area[inst]
        cx = sum_x[inst] / area[inst]

        # Per-id lookup tables, then one gather per target.
        sem_lut = sem_of_id.astype(np.int64)
        if self.ignore_crowd_in_semantic:
            sem_lut[is_crowd] = self.ignore_label
        sem_w_lut = np.ones(len(ids), dtype=np.float32)
        sem_w_lut[present & (area < self.small_instance_area)] = self.small_instance_weight
        sem_w_lut[sem_lut == self.ignore_label] = 0
        center_w_lut = (~(is_void | is_crowd)).astype(np.float32)
        offset_w_lut = center_w_lut.copy()
        if self.ignore_stuff_in_offset:
            offset_w_lut[~is_thing_class] = 0
        cy_lut = np.zeros(len(ids), dtype=np.float64)
        cx_lut = np.zeros(len(ids), dtype=np.float64)
        cy_lut[inst], cx_lut[inst] = cy, cx

        sem_seg = sem_lut[inverse].reshape(h, w)
        on_inst = present[inverse].reshape(h, w)
        # Differences in float64 (as the reference computes them), then one cast.
        offset = np.stack(
            [
                np.where(on_inst, cy_lut[inverse].reshape(h, w) - rows[:, None], 0),
                np.where(on_inst, cx_lut[inverse].reshape(h, w) - cols[None, :], 0),
            ]
        ).astype(np.float32)

        center = np.zeros((h, w), dtype=np.float32)
        for y, x in zip(np.round(cy).astype(int), np.round(cx).astype(int), strict=True):
            _stamp(center, self._kernel, y, x)
        return {
            "sem_seg": sem_seg,
            "center": center[None],
            "offset": offset,
            "sem_seg_weights": sem_w_lut[inverse].reshape(h, w),
            "center_weights": center_w_lut[inverse].reshape(h, w),
            "offset_weights": offset_w_lut[inverse].reshape(h, w),
        }


def _check_panoptic(panoptic: np.ndarray) -> np.ndarray:
    panoptic = np.asarray(panoptic)
    if panoptic.ndim != 2 or not np.issubdtype(panoptic.dtype, np.integer):
        raise ValueError(
            f"The panoptic map must be an (H, W) integer array, got {panoptic.dtype} "
            f"{panoptic.shape}"
        )
    if panoptic.size and panoptic.min() < 0:
        raise ValueError(f"The panoptic map has negative ids (min {panoptic.min()})")
    return panoptic


def _stamp(center: np.ndarray, kernel: np.ndarray, y: int, x: int) -> None:
    """Max-merges ``kernel`` centred at ``(y, x)`` into ``center``, clipped to the image."""
    r = kernel.shape[0] // 2
    h, w = center.shape
    y0, y1 = max(0, y - r), min(h, y + r + 1)
    x0, x1 = max(0, x - r), min(w, x + r + 1)
    if y0 >= y1 or x0 >= x1:
        return
    patch = kernel[y0 - (y - r) : y1 - (y - r), x0 - (x - r) : x1 - (x - r)]
    np.maximum(center[y0:y1, x0:x1], patch, out=center[y0:y1, x0:x1])
