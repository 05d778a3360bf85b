"""Segment-id maps: their distinct ids, and ids to row indices through a lookup table.

Segment-id maps (COCO panoptic PNG ids, ``semantic * label_divisor + instance`` labels) are
piecewise constant with tens of distinct ids among 10^5-10^6 pixels, so both operations
avoid sorting every pixel, as ``np.unique`` does.
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["SegmentLookup", "default_lookup", "unique_ids"]

_MAX_PNG_ID = 1 << 24  # ids of an RGB PNG are R + 256 G + 256^2 B < 2^24


class SegmentLookup:
    """Turns segment-id maps into row indices with a reusable lookup table.

    The table covers ids ``[-1, 2^24)`` (every RGB PNG id, and -1, the void of model
    outputs; -1 indexes the table's last slot). It holds -1 ("unknown") everywhere except
    during a call, so each call costs O(segments) set-up plus one gather over the pixels.
    Ids outside that range fall back to ``np.searchsorted``. Not thread-safe: use one per
    thread or process.
    """

    def __init__(self) -> None:
        self._table: np.ndarray | None = None

    def __call__(
        self, id_map: np.ndarray, segment_ids: np.ndarray, void_id: int, scale: int = 1
    ) -> np.ndarray:
        """Maps ``id_map`` to rows: ``void_id`` -> 0, ``segment_ids[k]`` -> (k + 1) * scale,
        other ids -> -1.

        Args:
            id_map: ``(H, W)`` integer segment ids.
            segment_ids: ``(N,)`` int64 distinct ids, none equal to ``void_id``.
            void_id: the id of void pixels.
            scale: multiplies the rows (saves a pass when building joint codes).

        Returns:
            ``(H, W)`` int16 (when the scaled rows fit) or int64 rows.
        """
        known = np.append(segment_ids, void_id)
        rows = np.append(np.arange(1, len(segment_ids) + 1), 0) * scale
        low, high = int(id_map.min()), int(id_map.max())
        in_table = low >= -1 and high < _MAX_PNG_ID and known.min() >= -1
        if in_table and known.max() < _MAX_PNG_ID and rows.max() < np.iinfo(np.int16).max:
            if self._table is None:
                self._table = np.full(_MAX_PNG_ID + 1, -1, dtype=np.int16)
            self._table[known] = rows
            try:
                return self._table[id_map]
            finally:
                self._table[known] = -1
        order = np.argsort(known)
        sorted_ids = known[order]
        pos = np.minimum(np.searchsorted(sorted_ids, id_map), len(known) - 1)
        return np.where(sorted_ids[pos] == id_map, rows[order][pos], -1)


@functools.cache
def default_lookup() -> SegmentLookup:
    """The process's shared :class:`SegmentLookup` (its table is allocated on first use)."""
    return SegmentLookup()


def unique_ids(id_map: np.ndarray) -> np.ndarray:
    """Sorted distinct values of a segment-id map, like ``np.unique(id_map)``.

    Only the values at the starts of raster-order runs are sorted, which is several times
    faster than sorting every pixel for piecewise-constant maps (model outputs).

    Args:
        id_map: ``(H, W)`` integer ids.

    Returns:
        ``(N,)`` sorted distinct ids, dtype of ``id_map``.
    """
    flat = id_map.ravel()
    if flat.size == 0:
        return flat.copy()
    starts = np.flatnonzero(flat[1:] != flat[:-1])
    starts += 1
    return np.unique(np.concatenate([flat[:1], np.take(flat, starts)]))
