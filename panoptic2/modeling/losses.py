"""Losses of the DeepLab family: cross-entropy with hard pixel mining, center MSE, offset L1."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from panoptic2.utils.xla import is_static_shape_device

__all__ = ["DeepLabCE", "center_mse_loss", "deeplab_ce_loss", "offset_l1_loss"]


def deeplab_ce_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    ignore_label: int = -1,
    top_k_percent_pixels: float = 1.0,
    pixel_weights: torch.Tensor | None = None,
    class_weights: torch.Tensor | None = None,
    static_shapes: bool | None = None,
) -> torch.Tensor:
    """Cross-entropy with hard pixel mining (DeepLab's "top-k" loss), over a whole batch.

    Each valid pixel (label != ``ignore_label``) gets ``w_i * CE_i`` (``w_i`` its pixel
    weight, 1 without ``pixel_weights``). The loss is the mean of the ``k`` largest of these
    values, ``k = max(1, round(top_k_percent_pixels * num_valid))``; with
    ``top_k_percent_pixels == 1`` it is their mean over all valid pixels. Ignored pixels
    count neither toward ``k`` nor toward the mean (unlike Detectron2's ``DeepLabCE``, whose
    mean includes them as zeros). With no valid pixel the loss is 0 (still connected to
    ``logits`` so that backward works).

    Args:
        logits: (N, C, H, W) float class scores.
        labels: (N, H, W) int64 class ids (``ignore_label`` = not counted).
        ignore_label: label of ignored pixels.
        top_k_percent_pixels: fraction in (0, 1] of the valid pixels that are averaged.
        pixel_weights: optional (N, H, W) float per-pixel weights (e.g. Panoptic-DeepLab's
            small-instance weights).
        class_weights: optional (C,) float per-class weights, as ``F.cross_entropy``'s
            ``weight`` (a pixel's CE is multiplied by its class weight).
        static_shapes: compute without data-dependent shapes (see
            :func:`_masked_top_k_mean`); None decides by device (XLA: yes) and under
            ``torch.compile`` (yes: a data-dependent shape would break the graph).

    Returns:
        Scalar float tensor.
    """
    if not 0.0 < top_k_percent_pixels <= 1.0:
        raise ValueError(f"top_k_percent_pixels must be in (0, 1], got {top_k_percent_pixels}")
    if logits.dim() != 4 or labels.shape != (logits.shape[0], *logits.shape[2:]):
        raise ValueError(
            f"deeplab_ce_loss: logits must be (N, C, H, W) and labels (N, H, W), got "
            f"{tuple(logits.shape)} and {tuple(labels.shape)}"
        )
    if pixel_weights is not None and pixel_weights.shape != labels.shape:
        raise ValueError(
            f"deeplab_ce_loss: pixel_weights {tuple(pixel_weights.shape)} must match labels "
            f"{tuple(labels.shape)}"
        )
    pixel_losses = F.cross_entropy(
        logits, labels, weight=class_weights, ignore_index=ignore_label, reduction="none"
    )
    if pixel_weights is not None:
        pixel_losses = pixel_losses * pixel_weights
    valid = (labels != ignore_label).flatten()
    if static_shapes is None:
        static_shapes = is_static_shape_device(logits.device) or torch.compiler.is_compiling()
    if static_shapes:
        return _masked_top_k_mean(pixel_losses.flatten(), valid, top_k_percent_pixels)
    pixel_losses = pixel_losses.flatten()[valid]
    num_valid = pixel_losses.numel()
    if num_valid == 0:
        return logits.sum() * 0.0
    if top_k_percent_pixels < 1.0:
        k = max(1, round(top_k_percent_pixels * num_valid))
        pixel_losses = torch.topk(pixel_losses, k, sorted=False).values
    return pixel_losses.mean()


def _masked_top_k_mean(
    pixel_losses: torch.Tensor, valid: torch.Tensor, top_k_percent_pixels: float
) -> torch.Tensor:
    """:func:`deeplab_ce_loss`'s reduction with shapes that do not depend on the labels.

    Ignored pixels are masked instead of dropped, and the ``k`` hardest valid pixels are the
    first ``k`` of a fixed-size ``topk`` (ignored pixels sort last as ``-inf``), ``k`` being
    a tensor. Equal to the eager reduction up to float rounding; ``k`` is rounded in float32
    (the eager rule rounds in float64), which can only differ when ``top_k_percent_pixels *
    num_valid`` is within float32 precision of a half-integer.

    Args:
        pixel_losses: (P,) float per-pixel losses (ignored pixels: any finite value).
        valid: (P,) bool, False for ignored pixels.
        top_k_percent_pixels: fraction in (0, 1] of the valid pixels averaged.

    Returns:
        Scalar float tensor; 0 (connected to the graph) without valid pixels.
    """
    num_valid = valid.sum()
    if top_k_percent_pixels == 1.0:
        total = torch.where(valid, pixel_losses, torch.zeros_like(pixel_losses)).sum()
        return total / num_valid.clamp(min=1).to(total.dtype)
    k_max = max(1, round(top_k_percent_pixels * pixel_losses.numel()))
    masked = torch.where(valid, pixel_losses, torch.full_like(pixel_losses, float("-inf")))
    hardest = torch.topk(masked, k_max, sorted=True).values
    k = torch.round(num_valid.to(torch.float32) * top_k_percent_pixels).clamp(min=1.0)
    rank = torch.arange(k_max, device=pixel_losses.device, dtype=torch.float32)
    total = torch.where(rank < k, hardest, torch.zeros_like(hardest)).sum()
    mean = total / k.to(total.dtype)
    return torch.where(num_valid > 0, mean, pixel_losses.sum() * 0.0)


class DeepLabCE(nn.Module):
    """Module form of :func:`deeplab_ce_loss` (Detectron2's name and constructor).

    Args:
        ignore_label: label of ignored pixels.
        top_k_percent_pixels: fraction of the valid pixels with the largest loss averaged.
        weight: optional (C,) class weights.
    """

    def __init__(
        self,
        ignore_label: int = -1,
        top_k_percent_pixels: float = 1.0,
        weight: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        if not 0.0 < top_k_percent_pixels <= 1.0:
            raise ValueError(f"top_k_percent_pixels must be in (0, 1], got {top_k_percent_pixels}")
        self.ignore_label = ignore_label
        self.top_k_percent_pixels = top_k_percent_pixels
        self.register_buffer("weight", weight, persistent=False)

    def forward(
        self, logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Args:
            logits: (N, C, H, W) float.
            labels: (N, H, W) int64.
            weights: optional (N, H, W) float per-pixel weights.

        Returns:
            Scalar float tensor.
        """
        return deeplab_ce_loss(
            logits,
            labels,
            ignore_label=self.ignore_label,
            top_k_percent_pixels=self.top_k_percent_pixels,
            pixel_weights=weights,
            class_weights=self.weight,
        )


def _weighted_normalised(loss: torch.Tensor, weights: torch.Tensor, name: str) -> torch.Tensor:
    """``sum(loss * weights[:, None]) / sum(weights)``; 0 (with a graph) when the sum is 0."""
    if (
        weights.dim() != 3
        or loss.shape[0] != weights.shape[0]
        or loss.shape[2:] != weights.shape[1:]
    ):
        raise ValueError(
            f"{name}: weights must be (N, H, W) matching predictions {tuple(loss.shape)}, got "
            f"{tuple(weights.shape)}"
        )
    weighted = loss * weights[:, None]
    total = weights.sum()
    # Detectron2 divides by the weight sum only when it is positive: a batch without any
    # instance then contributes a zero loss (its weighted sum) instead of NaN. A select
    # instead of a Python `if` keeps the step free of a device sync (and static on XLA).
    divisor = torch.where(total > 0, total, torch.ones_like(total))
    return weighted.sum() / divisor


def center_mse_loss(
    pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """Center heatmap regression loss of Panoptic-DeepLab.

    ``sum_i w_i * (pred_i - target_i)^2 / sum_i w_i`` (0 when all weights are 0).

    Args:
        pred: (N, 1, H, W) float predicted heatmap.
        target: (N, 1, H, W) float target heatmap.
        weights: (N, H, W) float pixel weights (0 = ignored).

    Returns:
        Scalar float tensor.
    """
    if pred.shape != target.shape:
        raise ValueError(f"center_mse_loss: pred {pred.shape} and target {target.shape} differ")
    return _weighted_normalised(F.mse_loss(pred, target, reduction="none"), weights, "center")


def offset_l1_loss(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Center offset regression loss of Panoptic-DeepLab.

    ``sum_i w_i * (|dy_i - dy*_i| + |dx_i - dx*_i|) / sum_i w_i`` (0 when all weights are 0):
    the weight sum counts each pixel once, not once per channel, as in Detectron2.

    Args:
        pred: (N, 2, H, W) float predicted offsets (dy, dx).
        target: (N, 2, H, W) float target offsets.
        weights: (N, H, W) float pixel weights (0 = ignored).

    Returns:
        Scalar float tensor.
    """
    if pred.shape != target.shape:
        raise ValueError(f"offset_l1_loss: pred {pred.shape} and target {target.shape} differ")
    return _weighted_normalised(F.l1_loss(pred, target, reduction="none"), weights, "offset")
