"""Panoptic-DeepLab post-processing ops: grouping and merge, on validated maps.

Each op runs the ``panoptic2._C`` kernel for its inputs' device (CPU and meta when ``_C`` is
usable, CUDA when it was also built with its CUDA kernels) and otherwise the PyTorch
reference (:mod:`._reference`), with identical outputs. :func:`panoptic_deeplab_postprocess`
does centers, grouping and merge of one image in a single CPU kernel (one pass over the
maps instead of several); it has no fallback of its own: callers check
:func:`uses_fused_kernel` and otherwise compose the steps. The inputs are not validated here:
:mod:`panoptic2.modeling.postprocessing` checks shapes, dtypes and devices first. Importing
this module never loads ``_C``; the dispatch decision is made at each call.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from . import extension
from ._reference import group_pixels_reference, merge_semantic_and_instance_reference

__all__ = [
    "group_pixels",
    "merge_semantic_and_instance",
    "panoptic_deeplab_postprocess",
    "uses_fused_kernel",
    "uses_kernels",
]


def uses_kernels(device: torch.device) -> bool:
    """Whether the compiled kernels serve tensors on ``device``.

    Args:
        device: Device of the inputs.

    Returns:
        True on CPU (and meta) when ``_C`` is usable, on CUDA when it was also built with its
        CUDA kernels; False otherwise (the PyTorch reference is used).
    """
    if device.type not in ("cpu", "cuda", "meta") or not extension.has_ops():
        return False
    return device.type != "cuda" or extension.has_cuda_kernels()


def uses_fused_kernel(device: torch.device) -> bool:
    """Whether :func:`panoptic_deeplab_postprocess` serves tensors on ``device``.

    Args:
        device: Device of the inputs.

    Returns:
        True on CPU (and meta) when ``_C`` is usable; False otherwise (the fused kernel is
        CPU-only: CUDA runs the grouping and merge kernels).
    """
    return device.type in ("cpu", "meta") and extension.has_ops()


def panoptic_deeplab_postprocess(
    sem_seg: torch.Tensor,
    center_heatmap: torch.Tensor,
    offsets: torch.Tensor,
    thing_mask: torch.Tensor | None,
    is_thing_class: torch.Tensor,
    threshold: float,
    nms_kernel: int,
    top_k: int | None,
    label_divisor: int,
    stuff_area: int,
    void_label: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Centers, grouping and merge of one image in the fused CPU kernel.

    Same outputs as :func:`panoptic2.modeling.postprocessing.find_instance_center` followed
    by :func:`group_pixels` and :func:`merge_semantic_and_instance`. Requires
    :func:`uses_fused_kernel` for the inputs' device.

    Args:
        sem_seg: (H, W) int64 class ids in [0, C).
        center_heatmap: (H, W) float32 center scores.
        offsets: (2, H, W) float32 offsets (dy, dx).
        thing_mask: (H, W) bool, or None for the pixels of thing classes.
        is_thing_class: (C,) bool, True for thing classes.
        threshold, nms_kernel, top_k: Center rule, as in ``find_instance_center``.
        label_divisor, stuff_area, void_label: Merge rule, as in
            :func:`merge_semantic_and_instance`.

    Returns:
        ``(panoptic, centers)``: (H, W) int64 labels and (K, 2) int64 centers (y, x).
    """
    if not uses_fused_kernel(sem_seg.device):
        raise RuntimeError(
            "panoptic_deeplab_postprocess: no fused kernel for tensors on "
            f"{sem_seg.device} (it needs panoptic2._C and CPU tensors)"
        )
    return torch.ops.panoptic2.panoptic_deeplab_postprocess(
        sem_seg,
        center_heatmap,
        offsets,
        thing_mask,
        is_thing_class,
        threshold,
        nms_kernel,
        top_k,
        label_divisor,
        stuff_area,
        void_label,
    )


def group_pixels(
    centers: torch.Tensor, offsets: torch.Tensor, thing_mask: torch.Tensor
) -> torch.Tensor:
    """Groups thing pixels to centers with the kernel for the inputs' device.

    Args:
        centers: (K, 2) int64 (y, x).
        offsets: (2, H, W) float32 (dy, dx).
        thing_mask: (H, W) bool.

    Returns:
        (H, W) int64: 1 + the nearest center's index on thing pixels, 0 elsewhere.
    """
    if uses_kernels(offsets.device):
        return torch.ops.panoptic2.group_pixels(centers, offsets, thing_mask)
    return group_pixels_reference(centers, offsets, thing_mask)


def merge_semantic_and_instance(
    sem_seg: torch.Tensor,
    ins_seg: torch.Tensor,
    thing_mask: torch.Tensor,
    is_thing_class: torch.Tensor,
    num_instances: int,
    label_divisor: int,
    stuff_area: int,
    void_label: int,
) -> torch.Tensor:
    """Merges validated maps with the kernel for the inputs' device.

    Args:
        sem_seg: (H, W) int64 class ids in [0, C).
        ins_seg: (H, W) int64 instance ids in [0, num_instances].
        thing_mask: (H, W) bool.
        is_thing_class: (C,) bool, True for thing classes.
        num_instances: Number of centers K.
        label_divisor: Panoptic label = class * label_divisor + instance number.
        stuff_area: Smallest area of a kept stuff class.
        void_label: Label of void pixels.

    Returns:
        (H, W) int64 panoptic labels.
    """
    if uses_kernels(sem_seg.device):
        return torch.ops.panoptic2.merge_semantic_and_instance(
            sem_seg,
            ins_seg,
            thing_mask,
            is_thing_class,
            num_instances,
            label_divisor,
            stuff_area,
            void_label,
        )
    thing_ids: Iterable[int] = torch.nonzero(is_thing_class).flatten().tolist()
    return merge_semantic_and_instance_reference(
        sem_seg, ins_seg, thing_mask, thing_ids, label_divisor, stuff_area, void_label
    )
