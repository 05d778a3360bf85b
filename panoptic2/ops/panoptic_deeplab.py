"""Panoptic-DeepLab post-processing ops: grouping and merge, on validated maps.

Each op runs the ``panoptic2._C`` kernel for its inputs' device (CPU and meta when ``_C`` is
usable, CUDA when it was also built with its CUDA kernels) and otherwise the PyTorch
reference (:mod:`._reference`), with identical outputs. The inputs are not validated here:
:mod:`panoptic2.modeling.postprocessing` checks shapes, dtypes and devices first. Importing
this module never loads ``_C``; the dispatch decision is made at each call.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from . import extension
from ._reference import group_pixels_reference, merge_semantic_and_instance_reference

__all__ = ["group_pixels", "merge_semantic_and_instance", "uses_kernels"]


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
