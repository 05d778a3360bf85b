"""Segment-map ops of data reading and evaluation, on NumPy arrays, without torch.

* :func:`count_segment_pairs` counts the pixels of each (ground truth, prediction) id pair
  for PQ: one C++ pass when the compiled module is usable, a NumPy run-length encoding
  otherwise.
* :func:`png_unfilter_to_ids` undoes the row filters of an inflated PNG image and computes
  COCO panoptic segment ids; it has no fallback, so :mod:`panoptic2.utils.panoptic_png`
  decodes with OpenCV when :func:`has_kernels` is False.

Their kernels live in ``panoptic2._segment_maps`` (``csrc/segment_maps/``), a plain CPython
module that links neither torch nor NumPy: these are CPU loops over NumPy buffers, with no
autograd, device or tracing to dispatch, so they are not torch ops. Neither importing this
module nor calling its functions imports torch, which keeps the PQ tool
(``tools/evaluate_panoptic.py``) and :mod:`panoptic2.evaluation.panoptic_quality` light.
The module is loaded on first use; :func:`has_kernels` is its one availability check and is
looked up at call time, so patching it forces the fallbacks.
"""

from __future__ import annotations

import importlib
import logging
import threading
from types import ModuleType

import numpy as np

__all__ = ["count_segment_pairs", "has_kernels", "kernels_status", "png_unfilter_to_ids"]

logger = logging.getLogger(__name__)

_MODULE = "panoptic2._segment_maps"
_BUILD_HINT = (
    "build it with `python setup.py build_ext --inplace` (or reinstall with `bash dev/install.sh`)"
)
# Element type codes of the compiled module's id buffers.
_ID_TYPES = {np.dtype(np.int32): 0, np.dtype(np.uint32): 1, np.dtype(np.int64): 2}

# Above this fraction of runs per pixel, run-length encoding costs more than it saves.
_MAX_RUN_FRACTION = 0.25
# Pixels per chunk of the run search: the chunk's ids stay in the L2 cache between the
# comparisons and the gathers at the run starts.
_RUN_CHUNK = 1 << 16

_lock = threading.Lock()
_loaded: tuple[ModuleType | None, str | None] | None = None  # (module, error)
_warned = False


def _load() -> tuple[ModuleType | None, str | None]:
    """Imports the compiled module once per process; later calls return the outcome."""
    global _loaded
    if _loaded is None:
        with _lock:
            if _loaded is None:
                try:
                    _loaded = (importlib.import_module(_MODULE), None)
                except ImportError as e:
                    _loaded = (None, " ".join(f"{type(e).__name__}: {e}".split()))
    return _loaded


def has_kernels() -> bool:
    """Whether ``panoptic2._segment_maps`` is usable; call it where a kernel is about to run.

    The first call that finds it unavailable logs one warning per process, naming the error,
    so that a slower fallback never goes unnoticed.
    """
    global _warned
    module, error = _load()
    if module is None and not _warned:
        _warned = True
        logger.warning(
            "%s not available (%s): using NumPy / OpenCV fallbacks. To %s.",
            _MODULE,
            error,
            _BUILD_HINT,
        )
    return module is not None


def kernels_status() -> str:
    """One line for logs and the environment report: ``"OK (path)"`` or why not."""
    module, error = _load()
    if module is None:
        return f"not available: {error}; {_BUILD_HINT}"
    return f"OK ({module.__file__})"


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


def _kernel_ids(id_map: np.ndarray) -> tuple[np.ndarray, int]:
    """A C-contiguous int32 / uint32 / int64 copy or view of ``id_map`` and its type code."""
    if id_map.dtype not in _ID_TYPES:
        id_map = id_map.astype(np.int64)
    id_map = np.ascontiguousarray(id_map)
    return id_map, _ID_TYPES[id_map.dtype]


def count_segment_pairs(
    gt_ids: np.ndarray, pred_ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Counts the pixels of each (ground truth, prediction) id pair.

    With the compiled module, one C++ pass returns every distinct pair once. Otherwise the
    maps are run-length encoded together in raster order with NumPy (runs may cross image
    rows: only the number of pixels per pair matters).

    Args:
        gt_ids: ``(H, W)`` integer ids.
        pred_ids: ``(H, W)`` integer ids.

    Returns:
        ``(gt_values, pred_values, counts)``: ``(R,)`` integer ids of each pair or run and
        ``(R,)`` int64 pixel counts; a pair may occur in several runs. When runs do not pay
        off (more than ``_MAX_RUN_FRACTION`` of the pixels), the flattened maps themselves
        and ``counts=None`` (one pixel each). The kernel returns int64 ids.

    Raises:
        ValueError: the maps differ in shape.
    """
    if gt_ids.shape != pred_ids.shape:
        raise ValueError(
            f"count_segment_pairs(): the maps differ in shape: {gt_ids.shape} and {pred_ids.shape}"
        )
    if not has_kernels():
        return _pixel_pairs(gt_ids, pred_ids)
    gt, gt_type = _kernel_ids(gt_ids)
    pred, pred_type = _kernel_ids(pred_ids)
    gt_values, pred_values, counts = _load()[0].count_segment_pairs(
        gt, gt_type, pred, pred_type, gt.size
    )
    return (
        np.frombuffer(gt_values, dtype=np.int64),
        np.frombuffer(pred_values, dtype=np.int64),
        np.frombuffer(counts, dtype=np.int64),
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
        ValueError: The data is invalid (a bad filter byte, a wrong size).
        RuntimeError: the compiled module is unavailable; there is no fallback, so callers
            check :func:`has_kernels` first.
    """
    module, error = _load()
    if module is None:
        raise RuntimeError(
            f"{_MODULE} is required here but not available ({error}). Please {_BUILD_HINT}."
        )
    ids = np.empty((height, width), dtype=np.uint32)
    module.png_unfilter_to_ids(raw, height, width, channels, ids)
    return ids
