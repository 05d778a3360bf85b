"""Plain-PyTorch reference of Panoptic-DeepLab post-processing (grouping and merge).

This module defines the semantics that the C++ and CUDA kernels reproduce bit for bit; it is
also the fallback of :mod:`panoptic2.ops.panoptic_deeplab` when the kernels are unavailable.
It favours obvious correctness over speed, but never builds a K x (H*W) distance matrix: it
loops over centers keeping a running minimum over the thing pixels.

Float rules shared by all implementations: the offsets are float32; a pixel (y, x) votes
for the location ``(y + dy, x + dx)`` (one float32 addition each); its squared distance to
a center (cy, cx) is ``(cy - py) ** 2 + (cx - px) ** 2``, each subtraction, product and the
sum rounded to float32 on their own, in this order; the nearest center wins, ties (and
pixels whose distances are all inf or NaN) going to the first center.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

__all__ = ["group_pixels_reference", "merge_semantic_and_instance_reference"]


def group_pixels_reference(
    centers: torch.Tensor, offsets: torch.Tensor, thing_mask: torch.Tensor
) -> torch.Tensor:
    """Assigns each thing pixel to the center nearest to where its offset points.

    Args:
        centers: (K, 2) int64 center coordinates (y, x), in center order.
        offsets: (2, H, W) float32 offsets (dy, dx) from each pixel to its center.
        thing_mask: (H, W) bool, the pixels to group.

    Returns:
        (H, W) int64: 1 + the index of the nearest center on thing pixels, 0 elsewhere (and
        everywhere when K == 0).
    """
    height, width = offsets.shape[-2:]
    ins_seg = torch.zeros((height, width), dtype=torch.int64, device=offsets.device)
    if centers.shape[0] == 0:
        return ins_seg
    ys, xs = torch.nonzero(thing_mask, as_tuple=True)
    py = ys.to(torch.float32) + offsets[0][ys, xs]
    px = xs.to(torch.float32) + offsets[1][ys, xs]
    best = torch.full_like(py, float("inf"))
    best_index = torch.zeros_like(ys)
    for k, (cy, cx) in enumerate(centers.to(torch.float32)):
        ey = cy - py
        ex = cx - px
        distance = ey * ey + ex * ex
        closer = distance < best  # strict: an equal later center never wins a tie
        best = torch.where(closer, distance, best)
        best_index = torch.where(closer, k, best_index)
    ins_seg[ys, xs] = best_index + 1
    return ins_seg


def merge_semantic_and_instance_reference(
    sem_seg: torch.Tensor,
    ins_seg: torch.Tensor,
    thing_mask: torch.Tensor,
    thing_ids: Iterable[int],
    label_divisor: int,
    stuff_area: int,
    void_label: int,
) -> torch.Tensor:
    """Merges semantic and instance maps into a panoptic map.

    A thing pixel is one with ``ins_seg > 0`` and ``thing_mask``. Each instance takes the
    majority class of its thing pixels (ties to the smaller class id); instances are visited
    in id (center) order and each class numbers its instances 1, 2, ...; an instance with no
    thing pixels takes no number. Every other pixel keeps its stuff class when that class is
    not a thing class and has at least ``stuff_area`` such pixels, and is ``void_label``
    otherwise.

    Args:
        sem_seg: (H, W) int64 class ids, >= 0.
        ins_seg: (H, W) int64 instance ids, 0 for none.
        thing_mask: (H, W) bool, the pixels that may belong to an instance.
        thing_ids: Class ids of the thing classes.
        label_divisor: Panoptic label = class * label_divisor + instance number.
        stuff_area: Smallest area (pixels) for a stuff class to be kept.
        void_label: Label of pixels that are neither a kept stuff class nor an instance.

    Returns:
        (H, W) int64 panoptic labels.
    """
    panoptic = torch.full_like(sem_seg, void_label)
    is_thing = (ins_seg > 0) & thing_mask
    numbers: dict[int, int] = {}
    for instance_id in torch.unique(ins_seg[is_thing]).tolist():
        instance_mask = is_thing & (ins_seg == instance_id)
        classes, counts = torch.unique(sem_seg[instance_mask], return_counts=True)
        class_id = int(classes[torch.argmax(counts)])  # first maximum: the smaller class
        numbers[class_id] = numbers.get(class_id, 0) + 1
        panoptic[instance_mask] = class_id * label_divisor + numbers[class_id]
    things = set(thing_ids)
    for class_id in torch.unique(sem_seg[~is_thing]).tolist():
        stuff_mask = ~is_thing & (sem_seg == class_id)
        if class_id not in things and int(stuff_mask.sum()) >= stuff_area:
            panoptic[stuff_mask] = class_id * label_divisor
    return panoptic
