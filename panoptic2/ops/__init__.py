"""The compiled ops of panoptic2, each with its fallback.

* :mod:`.extension`: loads the torch extension ``_C`` once, on first use;
  :func:`extension.has_ops` is its one availability check, :func:`extension.has_cuda_kernels`
  the CUDA one.
* :mod:`.panoptic_deeplab`: :func:`group_pixels`, :func:`merge_semantic_and_instance`
  (Panoptic-DeepLab post-processing; CPU and CUDA kernels in ``_C``, PyTorch fallbacks),
  :func:`panoptic_deeplab_postprocess` (centers, grouping and merge in one CPU kernel) and
  :func:`uses_kernels`, :func:`uses_fused_kernel`.
* :mod:`.segments`: :func:`count_segment_pairs` (PQ pixel pairs; NumPy fallback) and
  :func:`png_unfilter_to_ids` (PNG decoding; no fallback), kernels of the torch-free module
  ``_segment_maps`` (:func:`segments.has_kernels`).
* :mod:`._fake`: the fake kernels of the ``_C`` ops, registered when ``_C`` is loaded.

Importing this package imports nothing: each name is imported on first access, so
``panoptic2.ops.segments`` stays free of torch. It never loads a compiled module and never
fails when one is missing. Every wrapper looks its availability check up at call time, so
patching it forces the fallbacks.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> the submodule that defines it
_NAMES = {
    "extension": None,
    "segments": None,
    "group_pixels": "panoptic_deeplab",
    "merge_semantic_and_instance": "panoptic_deeplab",
    "panoptic_deeplab_postprocess": "panoptic_deeplab",
    "uses_fused_kernel": "panoptic_deeplab",
    "uses_kernels": "panoptic_deeplab",
    "count_segment_pairs": "segments",
    "png_unfilter_to_ids": "segments",
}

__all__ = [
    "count_segment_pairs",
    "extension",
    "group_pixels",
    "merge_semantic_and_instance",
    "panoptic_deeplab_postprocess",
    "png_unfilter_to_ids",
    "segments",
    "uses_fused_kernel",
    "uses_kernels",
]


def __getattr__(name: str) -> Any:
    if name not in _NAMES:
        raise AttributeError(f"module 'panoptic2.ops' has no attribute {name!r}")
    module = _NAMES[name]
    if module is None:
        return importlib.import_module(f"{__name__}.{name}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
