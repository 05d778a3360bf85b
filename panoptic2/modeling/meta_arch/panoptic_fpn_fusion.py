"""Panoptic FPN's fusion heuristic: instances first (by score), then stuff on what is left.

Kirillov et al., "Panoptic Feature Pyramid Networks" (2019), and Detectron2's
``combine_semantic_and_instance_outputs``. The output follows the project's ``panoptic_seg``
format: segment ids ``1..N`` in placement order, -1 for void, and ``segments_info`` with
contiguous dataset category ids, so the same evaluators as for Panoptic-DeepLab work.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from panoptic2.structures import Instances

__all__ = ["VOID_ID", "combine_semantic_and_instance_outputs"]

# Id of pixels no segment claims.
VOID_ID = -1


def combine_semantic_and_instance_outputs(
    instance_results: Instances,
    semantic_results: torch.Tensor,
    stuff_category_ids: Sequence[int],
    *,
    overlap_threshold: float = 0.5,
    stuff_area_thresh: int = 4096,
    instances_score_thresh: float = 0.5,
) -> tuple[torch.Tensor, list[dict[str, Any]]]:
    """Fuses instance masks and a semantic "separated" map into one panoptic segmentation.

    Instances are visited by decreasing score, stopping below ``instances_score_thresh``; an
    instance whose pixels already taken exceed ``overlap_threshold`` of its area is skipped,
    otherwise its not-yet-taken pixels become a new segment. Then each stuff label
    ``s`` (1..S; label 0 = "things" is never a segment) of ``semantic_results`` becomes a
    segment of its still-free pixels if they number at least ``stuff_area_thresh``.

    Args:
        instance_results: :class:`Instances` with ``pred_masks`` (N, H, W) bool, ``scores``
            (N,) float and ``pred_classes`` (N,) int64 contiguous ids.
        semantic_results: (H, W) int64 argmax of the semantic head: 0 things, 1..S stuff.
        stuff_category_ids: contiguous dataset id of stuff label ``s`` at index ``s - 1``.
        overlap_threshold: largest taken fraction of an instance that is still pasted.
        stuff_area_thresh: smallest area (pixels) of a stuff segment.
        instances_score_thresh: lowest score of a pasted instance.

    Returns:
        ``(id_map, segments_info)``: (H, W) int64 ids ``1..N`` in placement order, -1 void;
        one dict per segment: ``id``, ``category_id``, ``isthing``, ``area`` and, for
        things, ``score`` and ``instance_id`` (index into the instances).

    Raises:
        ValueError: the masks and the semantic map differ in size, or a stuff label has no
            category.
    """
    masks = instance_results.pred_masks
    if masks.shape[0] and masks.shape[-2:] != semantic_results.shape:
        raise ValueError(
            f"Instance masks {tuple(masks.shape[-2:])} and semantic map "
            f"{tuple(semantic_results.shape)} differ in size"
        )
    id_map = torch.full(semantic_results.shape, VOID_ID, dtype=torch.int64)
    id_map = id_map.to(semantic_results.device)
    taken = torch.zeros(semantic_results.shape, dtype=torch.bool, device=semantic_results.device)
    segments: list[dict[str, Any]] = []
    scores = instance_results.scores
    classes = instance_results.pred_classes
    for idx in torch.argsort(scores, descending=True, stable=True).tolist():
        score = float(scores[idx])
        if score < instances_score_thresh:
            break
        mask = masks[idx].to(torch.bool)
        area = int(mask.sum())
        if area == 0:
            continue
        overlap = int((mask & taken).sum())
        if overlap / area > overlap_threshold or overlap == area:
            continue
        mask = mask & ~taken
        segment_id = len(segments) + 1
        id_map[mask] = segment_id
        taken |= mask
        segments.append(
            {
                "id": segment_id,
                "category_id": int(classes[idx]),
                "isthing": True,
                "score": score,
                "instance_id": idx,
                "area": area - overlap,
            }
        )
    for label in torch.unique(semantic_results).tolist():
        if label == 0:
            continue
        if not 1 <= label <= len(stuff_category_ids):
            raise ValueError(
                f"Semantic label {label} is neither 0 (things) nor a stuff label 1.."
                f"{len(stuff_category_ids)}"
            )
        mask = (semantic_results == label) & ~taken
        area = int(mask.sum())
        if area == 0 or area < stuff_area_thresh:
            continue
        segment_id = len(segments) + 1
        id_map[mask] = segment_id
        taken |= mask
        segments.append(
            {
                "id": segment_id,
                "category_id": int(stuff_category_ids[label - 1]),
                "isthing": False,
                "area": area,
            }
        )
    return id_map, segments
