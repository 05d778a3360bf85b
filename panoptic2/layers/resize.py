"""Bilinear resizing (``align_corners=False``) that also compiles natively on XLA devices.

Eager devices call ``F.interpolate`` unchanged. On XLA devices the same resize is written as
two products with interpolation matrices, ``Wh @ x @ Ww^T``, as JAX's ``image.resize`` does:
torch_xla lowers ``upsample_bilinear2d``'s backward only on TPU and runs it on the host
elsewhere, which splits every training step into several graphs. The matrices reproduce
PyTorch's source-index rule exactly (``src = (dst + 0.5) * in / out - 0.5`` clamped at 0,
neighbour ``min(i0 + 1, in - 1)``), so both paths agree to float rounding.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn import functional as F

from panoptic2.utils.xla import is_static_shape_device

__all__ = ["interpolation_matrix", "resize_bilinear"]


def interpolation_matrix(
    in_size: int,
    out_size: int,
    *,
    scale_factor: float | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """The ``(out_size, in_size)`` matrix of 1-D linear interpolation, ``align_corners=False``.

    Row ``o`` holds ``1 - l`` at ``i0`` and ``l`` at ``i1`` (their sum where they coincide at
    the border), with ``src = max((o + 0.5) * r - 0.5, 0)``, ``i0 = floor(src)``,
    ``i1 = min(i0 + 1, in_size - 1)``, ``l = src - i0`` and ``r = 1 / scale_factor`` when a
    scale factor is given (``F.interpolate``'s rule), else ``in_size / out_size``. Built
    from ``arange`` on ``device``, so on XLA it is part of the compiled graph.

    Args:
        in_size: input length (> 0).
        out_size: output length (> 0).
        scale_factor: the scale factor given to ``F.interpolate``, if any.
        dtype: floating dtype of the matrix.
        device: its device.

    Returns:
        ``(out_size, in_size)`` tensor of ``dtype``; every row sums to 1.
    """
    if in_size <= 0 or out_size <= 0:
        raise ValueError(f"interpolation_matrix: sizes must be positive, got {in_size}, {out_size}")
    ratio = 1.0 / scale_factor if scale_factor is not None else in_size / out_size
    # float32 arithmetic in PyTorch's order, so the weights equal the kernel's bit for bit.
    dst = torch.arange(out_size, device=device, dtype=torch.float32)
    src = ((dst + 0.5) * ratio - 0.5).clamp(min=0.0)
    i0 = src.to(torch.int64).clamp(max=in_size - 1)
    frac = src - i0.to(torch.float32)
    i1 = (i0 + 1).clamp(max=in_size - 1)
    cols = torch.arange(in_size, device=device, dtype=torch.int64)
    weights = (cols == i0[:, None]).to(torch.float32) * (1.0 - frac)[:, None] + (
        cols == i1[:, None]
    ).to(torch.float32) * frac[:, None]
    return weights.to(dtype)


def _pair(value: int | float | Sequence[int | float]) -> tuple:
    if isinstance(value, (int, float)):
        return (value, value)
    if len(value) != 2:
        raise ValueError(f"resize_bilinear: expected one value or two (h, w), got {value!r}")
    return tuple(value)


def resize_bilinear(
    x: torch.Tensor,
    size: int | Sequence[int] | None = None,
    *,
    scale_factor: float | Sequence[float] | None = None,
    use_matmul: bool | None = None,
) -> torch.Tensor:
    """``F.interpolate(x, size, scale_factor, mode="bilinear", align_corners=False)``.

    Args:
        x: (N, C, H, W) float.
        size: output ``(H', W')`` (or one int for both); exclusive with ``scale_factor``.
        scale_factor: factor (or ``(fh, fw)``); ``H' = floor(H * fh)``.
        use_matmul: resize with interpolation matrices; None decides by device (XLA: yes).

    Returns:
        (N, C, H', W') of ``x``'s dtype.
    """
    if (size is None) == (scale_factor is None):
        raise ValueError("resize_bilinear: give exactly one of size and scale_factor")
    if x.dim() != 4:
        raise ValueError(f"resize_bilinear: expected (N, C, H, W), got {tuple(x.shape)}")
    if use_matmul is None:
        use_matmul = is_static_shape_device(x.device)
    if not use_matmul:
        return F.interpolate(
            x, size=size, scale_factor=scale_factor, mode="bilinear", align_corners=False
        )
    in_h, in_w = x.shape[-2:]
    if size is not None:
        out_h, out_w = (int(v) for v in _pair(size))
        scale_h = scale_w = None
    else:
        scale_h, scale_w = (float(v) for v in _pair(scale_factor))
        out_h, out_w = int(in_h * scale_h), int(in_w * scale_w)
    if (out_h, out_w) == (in_h, in_w) and scale_h in (None, 1.0) and scale_w in (None, 1.0):
        return x
    dtype = x.dtype if x.is_floating_point() else torch.float32
    rows = interpolation_matrix(in_h, out_h, scale_factor=scale_h, dtype=dtype, device=x.device)
    cols = interpolation_matrix(in_w, out_w, scale_factor=scale_w, dtype=dtype, device=x.device)
    return torch.matmul(rows, torch.matmul(x, cols.t()))
