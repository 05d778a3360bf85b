"""The ops of the compiled extension ``panoptic2._C``, each with its fallback.

* :mod:`.extension`: loads ``_C`` once, on first use; :func:`extension.has_ops` is the one
  availability check, :func:`extension.has_cuda_kernels` the CUDA one.
* :mod:`.panoptic_deeplab`: :func:`group_pixels`, :func:`merge_semantic_and_instance`
  (Panoptic-DeepLab post-processing; CPU and CUDA kernels, PyTorch fallbacks) and
  :func:`uses_kernels`.
* :mod:`.segments`: :func:`count_segment_pairs` (PQ pixel pairs; NumPy fallback) and
  :func:`png_unfilter_to_ids` (PNG decoding; no fallback).
* :mod:`._fake`: the fake kernels of all ops, registered when ``_C`` is loaded.

Importing this package never loads ``_C`` and never fails when it is missing. Every wrapper
looks up ``extension.has_ops`` at call time, so patching it forces the fallbacks.
"""

from . import extension
from .panoptic_deeplab import group_pixels, merge_semantic_and_instance, uses_kernels
from .segments import count_segment_pairs, png_unfilter_to_ids

__all__ = [
    "count_segment_pairs",
    "extension",
    "group_pixels",
    "merge_semantic_and_instance",
    "png_unfilter_to_ids",
    "uses_kernels",
]
