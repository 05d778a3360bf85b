"""Segment-map ops of data reading and evaluation, on NumPy arrays.

* :func:`count_segment_pairs` counts the pixels of each (ground truth, prediction) id pair
  for PQ: one C++ pass (``torch.ops.panoptic2.count_segment_pairs``) when ``_C`` is usable,
  a NumPy run-length encoding otherwise.
* :func:`png_unfilter_to_ids` undoes the row filters of an inflated PNG image and computes
  COCO panoptic segment ids (``torch.ops.panoptic2.png_unfilter_to_ids``); it has no
  fallback, so :mod:`panoptic2.data.panoptic_label` decodes with OpenCV when
  :func:`panoptic2.ops.extension.has_ops` is False.

The kernels are CPU only: they run where PNGs are read and statistics summed. Importing this
module never loads ``_C``; the dispatch decision is made at each call.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from . import extension

__all__ = ["count_segment_pairs", "png_unfilter_to_ids"]

# Above this fraction of runs per pixel, run-length encoding costs more than it saves.
_MAX_RUN_FRACTION = 0.25
# Pixels per chunk of the run search: the chunk's ids stay in the L2 cache between the
# comparisons and the gathers at the run starts.
_RUN_CHUNK = 1 << 16


def _as_kernel_ids(id_map: np.ndarray) -> torch.Tensor:
    """An int32 / int64 tensor view of ``id_map`` for ``count_segment_pairs``; uint32 maps
    (PNG ids) are reinterpreted as int32 (see :func:`_from_kernel_ids`)."""
    if id_map.dtype == np.uint32:
        id_map = id_map.view(np.int32)
    elif id_map.dtype not in (np.int32, np.int64):
        id_map = id_map.astype(np.int64)
    return torch.from_numpy(np.ascontiguousarray(id_map))


def _from_kernel_ids(values: torch.Tensor, dtype: np.dtype) -> np.ndarray:
    """Undoes :func:`_as_kernel_ids`'s reinterpretation on the (few) returned ids."""
    values = values.numpy()
    return values & 0xFFFFFFFF if dtype == np.uint32 else values


def _pixel_pairs(
    gt_ids: np.ndarray, pred_ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """NumPy fallback of :func:`count_segment_pairs`: a joint run-length encoding."""
    gt, pred = gt_ids.ravel(), pred_ids.ravel()
    n = gt.size
    if n == 0:
        return gt, pred, np.zeros(0, dtype=np.int64)
    change = np.empty(n, dtype=bool)
    change[0] = True
    pred_change = np.empty(min(n, _RUN_CHUNK), dtype=bool)
    max_runs = _MAX_RUN_FRACTION * n
    starts, gt_values, pred_values = [], [], []
    num_runs = 0
    for low in range(0, n, _RUN_CHUNK):
        high = min(low + _RUN_CHUNK, n)
        first = max(low, 1)  # pixel 0 always starts a run
        chunk = change[first:high]
        np.not_equal(gt[first:high], gt[first - 1 : high - 1], out=chunk)
        other = pred_change[: high - first]
        np.not_equal(pred[first:high], pred[first - 1 : high - 1], out=other)
        np.logical_or(chunk, other, out=chunk)
        chunk_starts = np.flatnonzero(change[low:high])
        chunk_starts += low
        num_runs += len(chunk_starts)
        if num_runs > max_runs:
            return gt, pred, None
        starts.append(chunk_starts)
        gt_values.append(np.take(gt, chunk_starts))
        pred_values.append(np.take(pred, chunk_starts))
    run_starts = np.concatenate(starts)
    counts = np.empty_like(run_starts)
    np.subtract(run_starts[1:], run_starts[:-1], out=counts[:-1])
    counts[-1] = n - run_starts[-1]
    return np.concatenate(gt_values), np.concatenate(pred_values), counts


def count_segment_pairs(
    gt_ids: np.ndarray, pred_ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Counts the pixels of each (ground truth, prediction) id pair.

    With ``_C``, one C++ pass (``torch.ops.panoptic2.count_segment_pairs``) returns every
    distinct pair once. Otherwise the maps are run-length encoded together in raster order
    with NumPy (runs may cross image rows: only the number of pixels per pair matters).

    Args:
        gt_ids: ``(H, W)`` integer ids.
        pred_ids: ``(H, W)`` integer ids.

    Returns:
        ``(gt_values, pred_values, counts)``: ``(R,)`` integer ids of each pair or run and
        ``(R,)`` int64 pixel counts; a pair may occur in several runs. When runs do not pay
        off (more than ``_MAX_RUN_FRACTION`` of the pixels), the flattened maps themselves
        and ``counts=None`` (one pixel each).
    """
    if not extension.has_ops():
        return _pixel_pairs(gt_ids, pred_ids)
    gt_values, pred_values, counts = torch.ops.panoptic2.count_segment_pairs(
        _as_kernel_ids(gt_ids), _as_kernel_ids(pred_ids)
    )
    return (
        _from_kernel_ids(gt_values, gt_ids.dtype),
        _from_kernel_ids(pred_values, pred_ids.dtype),
        counts.numpy(),
    )


def png_unfilter_to_ids(raw: bytes, height: int, width: int, channels: int) -> np.ndarray:
    """Undoes the row filters of an inflated PNG image and computes its segment ids.

    Args:
        raw: The inflated IDAT stream of an 8-bit, non-interlaced RGB or RGBA PNG,
            ``height * (1 + width * channels)`` bytes (each row: filter byte + pixels).
        height: Image height.
        width: Image width.
        channels: 3 (RGB) or 4 (RGBA; alpha is ignored).

    Returns:
        ``(H, W)`` uint32 segment ids ``R + 256 G + 256^2 B``.

    Raises:
        ValueError: The data is invalid (e.g. a bad filter byte); the message is the kernel's
            first line.
        RuntimeError: ``_C`` is unavailable; there is no fallback, so callers check
            :func:`panoptic2.ops.extension.has_ops` first.
    """
    extension.require_ops()
    with warnings.catch_warnings():
        # The kernel only reads the buffer; torch warns that bytes are not writable, and
        # copying the ~1 MB to silence it costs a quarter of the kernel's time.
        warnings.simplefilter("ignore", UserWarning)
        raw_tensor = torch.frombuffer(raw, dtype=torch.uint8)
    try:
        ids = torch.ops.panoptic2.png_unfilter_to_ids(raw_tensor, height, width, channels)
    except RuntimeError as e:  # an invalid filter byte
        raise ValueError(str(e).splitlines()[0]) from None
    return ids.numpy().view(np.uint32)
