"""Per-instance binary masks (Detectron2's ``BitMasks``) and their tight bounding boxes."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeVar

import numpy as np
import torch

from .boxes import Boxes, BoxMode

__all__ = ["BitMasks", "mask_to_xywh", "masks_to_boxes"]

_Array = TypeVar("_Array", np.ndarray, torch.Tensor)


def masks_to_boxes(masks: _Array) -> _Array:
    """Tight XYXY_ABS boxes of binary masks (Detectron2's ``BitMasks.get_bounding_boxes``).

    ``x1``/``y1`` are exclusive, one past the last pixel: a one-pixel mask at row 0, column 0
    gives ``[0, 0, 1, 1]``. ``BoxMode.convert(box, XYXY_ABS, XYWH_ABS)`` of that box is the
    COCO ``bbox`` with inclusive pixel extents (width ``last - first + 1``).

    Args:
        masks: ``(N, H, W)`` bool or integer tensor or numpy array; nonzero is inside.

    Returns:
        ``(N, 4)`` float32 ``(x0, y0, x1, y1)``: a tensor on ``masks``' device for a tensor,
        a numpy array for a numpy array. An empty mask gives ``[0, 0, 0, 0]``.

    Raises:
        ValueError: ``masks`` is not 3-dimensional.
        TypeError: ``masks`` is not a tensor / array, or has a floating dtype (threshold
            soft masks first: "nonzero" of a probability is rarely what is meant).
    """
    if isinstance(masks, np.ndarray):
        # One implementation: numpy callers go through torch (zero-copy for contiguous input).
        return _masks_to_boxes(torch.from_numpy(np.ascontiguousarray(masks))).numpy()
    if not isinstance(masks, torch.Tensor):
        raise TypeError(f"masks_to_boxes() takes a tensor or numpy array, got {type(masks)}")
    return _masks_to_boxes(masks)


def mask_to_xywh(mask: np.ndarray | torch.Tensor) -> list[int]:
    """The COCO ``bbox`` of one mask: ``[x, y, w, h]`` ints with inclusive pixel extents.

    Args:
        mask: ``(H, W)`` bool or integer mask.

    Returns:
        ``[x0, y0, w, h]`` (all zeros for an empty mask), from :func:`masks_to_boxes`.
    """
    box = masks_to_boxes(mask[None])[0].tolist()
    return [int(v) for v in BoxMode.convert(box, BoxMode.XYXY_ABS, BoxMode.XYWH_ABS)]


def _masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    if masks.dim() != 3:
        raise ValueError(f"masks_to_boxes() needs (N, H, W) masks, got {tuple(masks.shape)}")
    if masks.is_floating_point() or masks.is_complex():
        raise TypeError(f"masks_to_boxes() needs bool or integer masks, got {masks.dtype}")
    n, h, w = masks.shape
    if n == 0 or h == 0 or w == 0:
        return torch.zeros(n, 4, dtype=torch.float32, device=masks.device)
    inside = masks if masks.dtype == torch.bool else masks != 0
    rows = inside.any(dim=2)  # (N, H): rows holding at least one pixel
    cols = inside.any(dim=1)  # (N, W)
    ys = torch.arange(h, device=masks.device)
    xs = torch.arange(w, device=masks.device)
    # Masked min / max without a loop: absent rows/columns get a value that never wins.
    x0 = torch.where(cols, xs, w).amin(dim=1)
    y0 = torch.where(rows, ys, h).amin(dim=1)
    x1 = torch.where(cols, xs, -1).amax(dim=1) + 1
    y1 = torch.where(rows, ys, -1).amax(dim=1) + 1
    boxes = torch.stack([x0, y0, x1, y1], dim=1).to(torch.float32)
    # Empty masks would otherwise give (W, H, 0, 0); Detectron2 gives all zeros.
    return torch.where(cols.any(dim=1, keepdim=True), boxes, 0.0)


class BitMasks:
    """``N`` binary masks of one image as an ``(N, H, W)`` bool tensor.

    Args:
        tensor: ``(N, H, W)`` masks, a tensor or anything ``torch.as_tensor`` takes;
            converted to bool (nonzero is inside; a bool tensor is kept, not copied).

    Raises:
        ValueError: the input is not 3-dimensional.
    """

    def __init__(self, tensor: torch.Tensor | np.ndarray) -> None:
        if isinstance(tensor, torch.Tensor):
            tensor = tensor.to(torch.bool)
        else:
            tensor = torch.as_tensor(tensor, dtype=torch.bool)
        if tensor.dim() != 3:
            raise ValueError(f"BitMasks needs (N, H, W) masks, got shape {tuple(tensor.shape)}")
        self.tensor = tensor
        self.image_size: tuple[int, int] = (int(tensor.shape[1]), int(tensor.shape[2]))

    def to(self, device: torch.device | str) -> BitMasks:
        """The masks on ``device`` (a new BitMasks)."""
        return BitMasks(self.tensor.to(device=device))

    @property
    def device(self) -> torch.device:
        """The device of ``tensor``."""
        return self.tensor.device

    def __getitem__(self, item: int | slice | torch.Tensor) -> BitMasks:
        """Masks selected by an int (one mask, still ``(1, H, W)``), slice, bool mask ``(N,)``
        or int64 index tensor. May share memory with ``self``."""
        if isinstance(item, (int, np.integer)):
            return BitMasks(self.tensor[item].unsqueeze(0))
        selected = self.tensor[item]
        if selected.dim() != 3:
            raise ValueError(f"indexing BitMasks with {item!r} gave shape {tuple(selected.shape)}")
        return BitMasks(selected)

    def __len__(self) -> int:
        return self.tensor.shape[0]

    def __iter__(self) -> Iterator[torch.Tensor]:
        """Yields each mask as an ``(H, W)`` bool tensor."""
        yield from self.tensor

    def __repr__(self) -> str:
        return f"BitMasks(num_instances={len(self)}, image_size={self.image_size})"

    def nonempty(self) -> torch.Tensor:
        """``(N,)`` bool: the mask has at least one pixel."""
        return self.tensor.flatten(1).any(dim=1)

    def area(self) -> torch.Tensor:
        """``(N,)`` int64 pixel counts."""
        return self.tensor.flatten(1).sum(dim=1)

    def get_bounding_boxes(self) -> Boxes:
        """Tight boxes, see :func:`masks_to_boxes` (empty masks give zero boxes)."""
        return Boxes(masks_to_boxes(self.tensor))

    @classmethod
    def cat(cls, bitmasks_list: Sequence[BitMasks]) -> BitMasks:
        """Concatenates BitMasks of one image size.

        Raises:
            ValueError: an empty list (the image size would be unknown), or image sizes
                that differ.
            TypeError: an element is not a BitMasks.
        """
        if len(bitmasks_list) == 0:
            raise ValueError("BitMasks.cat() needs at least one BitMasks")
        if not all(isinstance(m, BitMasks) for m in bitmasks_list):
            raise TypeError("BitMasks.cat() takes a list of BitMasks")
        sizes = [m.image_size for m in bitmasks_list]
        if any(s != sizes[0] for s in sizes):
            raise ValueError(f"BitMasks.cat(): image sizes differ: {sizes}")
        return cls(torch.cat([m.tensor for m in bitmasks_list], dim=0))
