"""Normalization layers: frozen BN, an all_reduce-based SyncBN, and the ``get_norm`` factory.

``norm`` strings are what configs use (``MODEL.*.NORM``): ``"BN"``, ``"SyncBN"``,
``"NaiveSyncBN"``, ``"FrozenBN"``, ``"GN"`` or ``""`` (no normalization).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import nn
from torchvision.ops import FrozenBatchNorm2d as _TVFrozenBatchNorm2d

from panoptic2.utils import comm

__all__ = ["FrozenBatchNorm2d", "NaiveSyncBatchNorm", "convert_frozen_batchnorm", "get_norm"]

logger = logging.getLogger(__name__)

# Group count of "GN", as in the Group Normalization paper.
_GN_NUM_GROUPS = 32
_VALID_NORMS = ("BN", "SyncBN", "NaiveSyncBN", "FrozenBN", "GN", "")
_warned_single_process_syncbn = False


class FrozenBatchNorm2d(_TVFrozenBatchNorm2d):
    """BatchNorm2d whose statistics and affine parameters are fixed buffers.

    torchvision's layer (``y = (x - running_mean) / sqrt(running_var + eps) * weight +
    bias`` for input of shape (N, C, H, W)), plus :meth:`convert_frozen_batchnorm`.

    Args:
        num_features: number of channels ``C``.
        eps: added to the variance for numerical stability.
    """

    @classmethod
    def convert_frozen_batchnorm(cls, module: nn.Module) -> nn.Module:
        """Replaces every BatchNorm2d / SyncBatchNorm in ``module`` by a frozen copy.

        Running statistics, affine parameters (ones/zeros when not affine) and ``eps``
        are copied, on the device of the original layer.

        Args:
            module: a module; converted in place when it contains BN children.

        Returns:
            the converted module: a new :class:`FrozenBatchNorm2d` when ``module``
            itself is a BN layer, else ``module``.

        Raises:
            ValueError: for a BN layer without running statistics.
        """
        if isinstance(module, (nn.BatchNorm2d, nn.SyncBatchNorm)):
            if module.running_mean is None or module.running_var is None:
                raise ValueError(
                    f"Cannot freeze {module}: it has no running statistics "
                    "(track_running_stats=False)."
                )
            frozen = cls(module.num_features, eps=module.eps)
            if module.affine:
                frozen.weight = module.weight.detach().clone()
                frozen.bias = module.bias.detach().clone()
            else:
                device = module.running_mean.device
                frozen.weight = frozen.weight.to(device)
                frozen.bias = frozen.bias.to(device)
            frozen.running_mean = module.running_mean.detach().clone()
            frozen.running_var = module.running_var.detach().clone()
            return frozen
        for name, child in module.named_children():
            new_child = cls.convert_frozen_batchnorm(child)
            if new_child is not child:
                setattr(module, name, new_child)
        return module


def convert_frozen_batchnorm(module: nn.Module) -> nn.Module:
    """Function form of :meth:`FrozenBatchNorm2d.convert_frozen_batchnorm`."""
    return FrozenBatchNorm2d.convert_frozen_batchnorm(module)


class _AllReduceSum(torch.autograd.Function):
    """Sum over all ranks whose backward also sums the gradients over all ranks.

    Every rank's output is the same sum, so the gradient of the global loss (sum of the
    ranks' losses) w.r.t. one rank's input is the sum of all ranks' output gradients.
    """

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        output = tensor.clone()
        dist.all_reduce(output)
        return output

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:
        grad = grad_output.contiguous().clone()
        dist.all_reduce(grad)
        return grad


class NaiveSyncBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are computed over the batches of all ranks.

    Uses plain ``all_reduce`` so it works with any backend (gloo on CPU, NCCL on GPU),
    unlike ``torch.nn.SyncBatchNorm`` which needs CUDA. Statistics are weighted by each
    rank's number of elements, so ranks with different (even empty) batches give the
    same result as BatchNorm2d on the concatenated batch: output, running statistics
    (unbiased variance, same momentum rule) and gradients. With one process or in eval
    mode it is exactly BatchNorm2d.

    In training with several ranks, every rank must call forward (and backward) on every
    such layer, as each does collectives. Same arguments as ``torch.nn.BatchNorm2d``.
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """Normalizes ``input``.

        Args:
            input: float tensor of shape (N, C, H, W); N may be 0 on some ranks.

        Returns:
            tensor of the same shape and dtype.

        Raises:
            ValueError: on a wrong shape, or when all ranks together hold at most one
                value per channel (the variance is then undefined).
        """
        if comm.get_world_size() == 1 or not self.training:
            return super().forward(input)
        if input.dim() != 4 or input.shape[1] != self.num_features:
            raise ValueError(
                f"NaiveSyncBatchNorm({self.num_features}) expects input of shape "
                f"(N, {self.num_features}, H, W), got {tuple(input.shape)}."
            )
        # Statistics in float32 at least, so fp16/bf16 inputs (AMP) do not overflow.
        x = input.float() if input.dtype in (torch.float16, torch.bfloat16) else input
        local_count = x.shape[0] * x.shape[2] * x.shape[3]
        # Two passes (mean, then centred squares) instead of E[x^2] - E[x]^2: one more
        # tiny all_reduce, but no catastrophic cancellation when |mean| >> std.
        first = torch.cat(
            [x.sum(dim=(0, 2, 3)), torch.full((1,), local_count, dtype=x.dtype, device=x.device)]
        )
        first = _AllReduceSum.apply(first)
        total = first[-1].detach()
        total_count = round(total.item())
        if total_count <= 1:
            raise ValueError(
                f"NaiveSyncBatchNorm needs more than 1 value per channel over all ranks in "
                f"training, got {total_count} (input {tuple(input.shape)} on this rank)."
            )
        mean = first[:-1] / total_count
        centered = x - mean.view(1, -1, 1, 1)
        var = _AllReduceSum.apply((centered * centered).sum(dim=(0, 2, 3))) / total_count

        if self.track_running_stats and self.running_mean is not None:
            self._update_running_stats(mean.detach(), var.detach(), total_count)

        invstd = torch.rsqrt(var + self.eps)
        scale = invstd if self.weight is None else invstd * self.weight
        output = centered * scale.view(1, -1, 1, 1)
        if self.bias is not None:
            output = output + self.bias.view(1, -1, 1, 1)
        return output.to(input.dtype)

    @torch.no_grad()
    def _update_running_stats(self, mean: torch.Tensor, var: torch.Tensor, count: int) -> None:
        # Same rule as BatchNorm2d: cumulative average when momentum is None, the
        # unbiased variance of the (global) batch in the running variance.
        self.num_batches_tracked.add_(1)
        if self.momentum is None:
            factor = 1.0 / float(self.num_batches_tracked)
        else:
            factor = self.momentum
        unbiased_var = var * (count / (count - 1))
        self.running_mean.mul_(1 - factor).add_(mean.to(self.running_mean.dtype), alpha=factor)
        self.running_var.mul_(1 - factor).add_(
            unbiased_var.to(self.running_var.dtype), alpha=factor
        )


def _sync_batch_norm(out_channels: int) -> nn.Module:
    global _warned_single_process_syncbn
    if comm.get_world_size() == 1:
        if not _warned_single_process_syncbn:
            logger.warning("SyncBN is used with a single process; using BatchNorm2d instead.")
            _warned_single_process_syncbn = True
        return nn.BatchNorm2d(out_channels)
    if torch.cuda.is_available() and dist.get_backend() == "nccl":
        return nn.SyncBatchNorm(out_channels)
    # torch's SyncBatchNorm only runs on CUDA tensors.
    return NaiveSyncBatchNorm(out_channels)


def get_norm(norm: str | Callable[[int], nn.Module] | None, out_channels: int) -> nn.Module | None:
    """Builds a normalization layer for ``out_channels`` channels of (N, C, H, W) input.

    Args:
        norm: ``"BN"`` (BatchNorm2d); ``"SyncBN"`` (torch's SyncBatchNorm under NCCL on
            CUDA, :class:`NaiveSyncBatchNorm` otherwise, BatchNorm2d with a one-time
            warning in a single process); ``"NaiveSyncBN"``; ``"FrozenBN"``; ``"GN"``
            (GroupNorm with 32 groups); ``""`` or None (no layer); or a callable taking
            the channel count and returning a module.
        out_channels: number of channels.

    Returns:
        the layer, or None for no normalization.

    Raises:
        ValueError: for an unknown name, or ``"GN"`` with channels not divisible by 32.
    """
    if norm is None or norm == "":
        return None
    if not isinstance(norm, str):
        if callable(norm):
            return norm(out_channels)
        raise TypeError(f"norm must be a str, a callable or None, got {type(norm).__name__}.")
    if norm == "BN":
        return nn.BatchNorm2d(out_channels)
    if norm == "SyncBN":
        return _sync_batch_norm(out_channels)
    if norm == "NaiveSyncBN":
        return NaiveSyncBatchNorm(out_channels)
    if norm == "FrozenBN":
        return FrozenBatchNorm2d(out_channels)
    if norm == "GN":
        if out_channels % _GN_NUM_GROUPS != 0:
            raise ValueError(
                f"norm='GN' uses {_GN_NUM_GROUPS} groups; out_channels={out_channels} is not "
                "divisible by it."
            )
        return nn.GroupNorm(_GN_NUM_GROUPS, out_channels)
    raise ValueError(f"Unknown norm {norm!r}; valid: {', '.join(repr(n) for n in _VALID_NORMS)}.")
