"""Straightforward reference implementations that tests and benchmarks compare with.

They compute what the library's fast code computes, written the plain way (one segment at a
time, full-image masks), and share no code with it.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

__all__ = ["panoptic_deeplab_targets_reference"]


def panoptic_deeplab_targets_reference(
    panoptic: np.ndarray,
    *,
    ignore_label: int,
    thing_ids: Iterable[int],
    label_divisor: int,
    sigma: float = 8,
    ignore_stuff_in_offset: bool = True,
    small_instance_area: int = 4096,
    small_instance_weight: float = 3,
    ignore_crowd_in_semantic: bool = False,
) -> dict[str, np.ndarray]:
    """Straightforward per-segment version of :class:`PanopticDeepLabTargetGenerator`.

    Loops over the segments of the map with full-image boolean masks, as Detectron2's
    generator does. Used to test the vectorised version and as the benchmark baseline.

    Args: as :class:`~panoptic2.data.mappers.PanopticDeepLabTargetGenerator`, plus
        ``panoptic`` ((H, W) non-negative integer map).

    Returns:
        The same dict as ``PanopticDeepLabTargetGenerator.__call__``.
    """
    panoptic = np.asarray(panoptic)
    thing_ids = set(int(t) for t in thing_ids)
    h, w = panoptic.shape
    sem_seg = np.zeros((h, w), dtype=np.int64)
    center = np.zeros((h, w), dtype=np.float32)
    offset = np.zeros((2, h, w), dtype=np.float32)
    sem_w = np.ones((h, w), dtype=np.float32)
    center_w = np.zeros((h, w), dtype=np.float32)
    offset_w = np.zeros((h, w), dtype=np.float32)
    r = int(np.round(3 * sigma + 1))  # the Gaussian window's radius
    y_coord, x_coord = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    for seg_id in np.unique(panoptic):
        mask = panoptic == seg_id
        sem, ins = divmod(int(seg_id), label_divisor)
        is_thing = sem in thing_ids
        crowd = is_thing and ins == 0
        sem_seg[mask] = ignore_label if crowd and ignore_crowd_in_semantic else sem
        if sem == ignore_label:
            continue
        if not crowd:
            center_w[mask] = 1
            if is_thing or not ignore_stuff_in_offset:
                offset_w[mask] = 1
        if not is_thing or crowd:
            continue
        mask_y, mask_x = np.nonzero(mask)
        cy, cx = np.mean(mask_y), np.mean(mask_x)
        if len(mask_y) < small_instance_area:
            sem_w[mask] = small_instance_weight
        offset[0][mask] = cy - y_coord[mask]
        offset[1][mask] = cx - x_coord[mask]
        y, x = int(np.round(cy)), int(np.round(cx))
        y0, y1, x0, x1 = max(0, y - r), min(h, y + r + 1), max(0, x - r), min(w, x + r + 1)
        dy = np.arange(y0, y1)[:, None] - y
        dx = np.arange(x0, x1)[None, :] - x
        gauss = np.exp(-(dx**2 + dy**2) / (2 * sigma**2))
        center[y0:y1, x0:x1] = np.maximum(center[y0:y1, x0:x1], gauss)
    sem_w[sem_seg == ignore_label] = 0
    return {
        "sem_seg": sem_seg,
        "center": center[None],
        "offset": offset,
        "sem_seg_weights": sem_w,
        "center_weights": center_w,
        "offset_weights": offset_w,
    }
