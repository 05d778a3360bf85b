"""Assigns each prediction (anchor, proposal) to a ground-truth element by match quality."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

__all__ = ["Matcher"]


class Matcher:
    """Matches predictions to ground truth by a quality matrix (usually IoU), Detectron2-style.

    Each prediction gets the ground-truth element of highest quality, and a label from the
    interval its quality falls in: with ``thresholds=[0.3, 0.7]`` and
    ``labels=[0, -1, 1]``, quality in ``[0, 0.3)`` is negative (0), ``[0.3, 0.7)`` ignored
    (-1) and ``[0.7, inf)`` positive (1).

    Args:
        thresholds: increasing interval edges, the first positive.
        labels: one label per interval (``len(thresholds) + 1``), each in {-1, 0, 1}.
        allow_low_quality_matches: also label positive, for each ground-truth element, the
            predictions of highest quality with it (ties included), so that no ground truth
            is left without a positive prediction (Faster R-CNN's RPN rule).
    """

    def __init__(
        self,
        thresholds: Sequence[float],
        labels: Sequence[int],
        allow_low_quality_matches: bool = False,
    ) -> None:
        thresholds = [float(t) for t in thresholds]
        if not thresholds or thresholds[0] <= 0:
            raise ValueError(f"Matcher thresholds must be non-empty, the first > 0: {thresholds}")
        self.thresholds = [-math.inf, *thresholds, math.inf]
        if any(lo > hi for lo, hi in zip(self.thresholds[:-1], self.thresholds[1:])):
            raise ValueError(f"Matcher thresholds must be increasing: {thresholds}")
        if len(labels) != len(self.thresholds) - 1:
            raise ValueError(
                f"Matcher needs len(thresholds) + 1 = {len(self.thresholds) - 1} labels, "
                f"got {list(labels)}"
            )
        if any(label not in (-1, 0, 1) for label in labels):
            raise ValueError(f"Matcher labels must be -1, 0 or 1, got {list(labels)}")
        self.labels = [int(label) for label in labels]
        self.allow_low_quality_matches = allow_low_quality_matches

    def __call__(self, match_quality_matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Matches the predictions (columns) to the ground truth (rows).

        Args:
            match_quality_matrix: (M, N) float, quality of ground truth m with prediction n
                (non-negative, e.g. IoU).

        Returns:
            matches: (N,) int64 index in [0, M) of the matched ground truth (0 when M == 0;
                meaningless for labels 0 and -1).
            match_labels: (N,) int8 label of each prediction (1, 0 or -1).
        """
        if match_quality_matrix.dim() != 2:
            raise ValueError(
                f"match_quality_matrix must be (M, N), got {tuple(match_quality_matrix.shape)}"
            )
        num_gt, num_pred = match_quality_matrix.shape
        device = match_quality_matrix.device
        if num_gt == 0 or num_pred == 0:
            # No ground truth: every prediction is labelled as the lowest interval says
            # (background for the RPN and ROI heads).
            matches = torch.zeros(num_pred, dtype=torch.int64, device=device)
            match_labels = torch.full((num_pred,), self.labels[0], dtype=torch.int8, device=device)
            return matches, match_labels
        if bool((match_quality_matrix < 0).any()):
            raise ValueError("match_quality_matrix must be non-negative")

        matched_vals, matches = match_quality_matrix.max(dim=0)
        match_labels = torch.ones(num_pred, dtype=torch.int8, device=device)
        for label, low, high in zip(self.labels, self.thresholds[:-1], self.thresholds[1:]):
            in_interval = (matched_vals >= low) & (matched_vals < high)
            match_labels[in_interval] = label
        if self.allow_low_quality_matches:
            self._set_low_quality_matches_(match_labels, match_quality_matrix)
        return matches, match_labels

    @staticmethod
    def _set_low_quality_matches_(
        match_labels: torch.Tensor, match_quality_matrix: torch.Tensor
    ) -> None:
        """Labels positive, for each ground truth, its highest-quality predictions (in place).

        The prediction keeps the ground truth of its own highest quality in ``matches`` (as in
        Detectron2): a prediction made positive by gt A but overlapping gt B more stays
        matched to B. Unlike Detectron2, a ground truth whose best quality is 0 (a degenerate
        or far-away box) makes nothing positive, instead of every prediction it does not touch.
        """
        best_per_gt, _ = match_quality_matrix.max(dim=1)
        is_best = (match_quality_matrix == best_per_gt[:, None]) & (best_per_gt[:, None] > 0)
        _, pred_inds = torch.nonzero(is_best, as_tuple=True)
        match_labels[pred_inds] = 1
