"""Instance predictions (mask, class, score) from a Panoptic-DeepLab panoptic map, for AP."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

__all__ = ["INSTANCE_SCORE_RULES", "get_instance_predictions"]

# Where the center heatmap is read for an instance's score; see get_instance_predictions.
INSTANCE_SCORE_RULES = ("center", "centroid")


def get_instance_predictions(
    panoptic: torch.Tensor,
    sem_probs: torch.Tensor,
    center_heatmap: torch.Tensor,
    centers: torch.Tensor,
    thing_ids: Iterable[int],
    label_divisor: int,
    score_rule: str = "center",
) -> list[dict[str, Any]]:
    """Lists the thing segments of a panoptic map with their class and confidence.

    The score is Panoptic-DeepLab's: the mean semantic probability of the segment's class
    over its mask, times the center heatmap at one point of the instance, chosen by
    ``score_rule``:

    * ``"center"``: the instance's center, i.e. the first center (in center order) lying
      inside the mask, which is the center the segment grew from whenever that center's
      own pixel was grouped to it; when no center lies inside the mask, the mask's centroid
      as below.
    * ``"centroid"`` (Detectron2): the mask's centroid, the float32 mean of the mask's row
      and of its column indices, each truncated to an integer.

    The two differ only in the scores (so in instance AP), never in the panoptic map.

    Args:
        panoptic: (1, H, W) or (H, W) int64 panoptic labels (class * label_divisor + id).
        sem_probs: (C, H, W) float semantic probabilities (softmax over classes).
        center_heatmap: (1, H, W) or (H, W) float center scores.
        centers: (1, K, 2) or (K, 2) int64 centers (y, x), as returned with ``panoptic``.
        thing_ids: Class ids of the thing classes.
        label_divisor: Divisor of the panoptic labels.
        score_rule: ``"center"`` or ``"centroid"`` (see above).

    Returns:
        One dict per thing segment (instance number > 0), in increasing label order:
        ``mask`` (H, W) bool, ``class`` int, ``score`` float.
    """
    func = "get_instance_predictions"
    if score_rule not in INSTANCE_SCORE_RULES:
        raise ValueError(
            f"{func}: score_rule must be one of {INSTANCE_SCORE_RULES}, got {score_rule!r}"
        )
    pan = panoptic[0] if panoptic.dim() == 3 else panoptic
    heat = center_heatmap[0] if center_heatmap.dim() == 3 else center_heatmap
    points = centers[0] if centers.dim() == 3 else centers
    if pan.dim() != 2 or heat.shape != pan.shape or sem_probs.dim() != 3:
        raise ValueError(
            f"{func}: expected panoptic (1, H, W), center_heatmap (1, H, W) and sem_probs "
            f"(C, H, W), got {tuple(panoptic.shape)}, {tuple(center_heatmap.shape)} and "
            f"{tuple(sem_probs.shape)}"
        )
    if sem_probs.shape[1:] != pan.shape:
        raise ValueError(f"{func}: sem_probs {tuple(sem_probs.shape)} does not match {pan.shape}")
    if points.dim() != 2 or points.shape[1] != 2:
        raise ValueError(f"{func}: centers must be (1, K, 2) or (K, 2), got {centers.shape}")
    things = set(thing_ids)
    predictions = []
    for label in torch.unique(pan).tolist():
        class_id, number = divmod(label, label_divisor)
        if label < 0 or number == 0 or class_id not in things:
            continue
        if class_id >= sem_probs.shape[0]:
            raise ValueError(
                f"{func}: segment {label} has class {class_id} but sem_probs has only "
                f"{sem_probs.shape[0]} classes"
            )
        mask = pan == label
        semantic_score = sem_probs[class_id][mask].mean()
        cy, cx = _centroid(mask) if score_rule == "centroid" else _own_center(mask, points)
        score = float(semantic_score * heat[cy, cx])
        predictions.append({"mask": mask, "class": class_id, "score": score})
    return predictions


def _own_center(mask: torch.Tensor, points: torch.Tensor) -> tuple[int, int]:
    """The first of the (K, 2) ``points`` inside the (H, W) ``mask``, else its centroid."""
    inside = torch.nonzero(mask[points[:, 0], points[:, 1]]).flatten()
    if inside.numel() > 0:
        cy, cx = points[inside[0]].tolist()
        return int(cy), int(cx)
    return _centroid(mask)


def _centroid(mask: torch.Tensor) -> tuple[int, int]:
    """(row, column) of a (H, W) bool mask's centroid, truncated.

    Each coordinate is the float32 mean of one column of the ``nonzero`` indices, reduced
    on its own: this is how Detectron2 computes it, and a float32 mean of large index sums
    depends on the reduction, so another order could land on the neighbouring pixel.
    """
    indices = torch.nonzero(mask).float()
    return int(torch.mean(indices[:, 0]).item()), int(torch.mean(indices[:, 1]).item())
