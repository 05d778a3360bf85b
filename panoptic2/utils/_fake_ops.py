"""Fake (meta) kernels of the ``panoptic2._C`` segment-map ops, and the check that they exist.

``torch.ops.panoptic2.png_unfilter_to_ids`` (PNG decoding) and
``torch.ops.panoptic2.count_segment_pairs`` (PQ statistics) have CPU kernels only. Importing
this module loads ``_C`` and registers their fake kernels (for FakeTensor tracing and
``torch.library.opcheck``); the C++ schemas name this module through
``impl_abstract_pystub``. Callers use :func:`segment_ops_available`, which imports it.
"""

from __future__ import annotations

import torch

from panoptic2 import extension

__all__ = ["segment_ops_available"]


def _fake_png_unfilter_to_ids(
    raw: torch.Tensor, height: int, width: int, channels: int
) -> torch.Tensor:
    torch._check(raw.dim() == 1, lambda: "raw must be 1-D")
    torch._check(channels in (3, 4), lambda: "channels must be 3 or 4")
    return raw.new_empty((height, width), dtype=torch.int32)


def _fake_count_segment_pairs(
    gt_ids: torch.Tensor, pred_ids: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    torch._check(gt_ids.shape == pred_ids.shape, lambda: "gt_ids and pred_ids must match")
    num_pairs = torch.library.get_ctx().new_dynamic_size()
    return tuple(gt_ids.new_empty((num_pairs,), dtype=torch.int64) for _ in range(3))


# Decided once, on import: a stale _C (built before these ops existed) loads fine but lacks
# them, and extension.has_ops() logs once why _C itself is unusable.
_AVAILABLE = extension.has_ops() and hasattr(torch.ops.panoptic2, "count_segment_pairs")

if _AVAILABLE:
    torch.library.register_fake("panoptic2::png_unfilter_to_ids")(_fake_png_unfilter_to_ids)
    torch.library.register_fake("panoptic2::count_segment_pairs")(_fake_count_segment_pairs)


def segment_ops_available() -> bool:
    """Whether ``png_unfilter_to_ids`` and ``count_segment_pairs`` can be called.

    Returns:
        False when ``_C`` is missing or stale; the callers then fall back to OpenCV
        decoding and NumPy counting.
    """
    return _AVAILABLE
