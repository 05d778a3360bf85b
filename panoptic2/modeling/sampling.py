"""Balanced sampling of positive and negative training examples (anchors, proposals)."""

from __future__ import annotations

import torch

__all__ = ["subsample_labels"]


def subsample_labels(
    labels: torch.Tensor,
    num_samples: int,
    positive_fraction: float,
    bg_label: int,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draws at most ``num_samples`` examples, at most ``positive_fraction`` of them positive.

    Detectron2 semantics: ``-1`` is ignored, ``bg_label`` is negative, any other value is
    positive. ``int(num_samples * positive_fraction)`` positives are drawn (all of them if
    fewer exist), and negatives fill the rest of ``num_samples`` (all of them if fewer
    exist). Draws are uniform without replacement, from ``generator`` (the global torch RNG
    when None), so a seed makes them reproducible.

    Args:
        labels: (N,) integer labels: -1 ignore, ``bg_label`` background, others foreground.
        num_samples: total number of examples wanted.
        positive_fraction: largest fraction of positives, in [0, 1].
        bg_label: the background label (0 for the RPN, the class count for ROI heads).
        generator: RNG of the draws.

    Returns:
        pos_idx: (P,) int64 indices into ``labels`` of the sampled positives.
        neg_idx: (Q,) int64 indices of the sampled negatives; ``P + Q <= num_samples``.
    """
    if labels.dim() != 1:
        raise ValueError(f"subsample_labels needs (N,) labels, got {tuple(labels.shape)}")
    if not 0.0 <= positive_fraction <= 1.0:
        raise ValueError(f"positive_fraction must be in [0, 1], got {positive_fraction}")
    positive = torch.nonzero((labels != -1) & (labels != bg_label), as_tuple=True)[0]
    negative = torch.nonzero(labels == bg_label, as_tuple=True)[0]

    num_pos = min(positive.numel(), int(num_samples * positive_fraction))
    num_neg = min(negative.numel(), num_samples - num_pos)

    # Draw on the generator's device (a CPU generator cannot drive a CUDA randperm).
    device = generator.device if generator is not None else labels.device
    perm_pos = torch.randperm(positive.numel(), generator=generator, device=device)[:num_pos]
    perm_neg = torch.randperm(negative.numel(), generator=generator, device=device)[:num_neg]
    return positive[perm_pos.to(labels.device)], negative[perm_neg.to(labels.device)]
