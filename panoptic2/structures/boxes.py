"""Axis-aligned boxes: the ``BoxMode`` conventions, the ``Boxes`` container and IoU.

Coordinates follow Detectron2's continuous convention: a box ``(x0, y0, x1, y1)`` covers
``x0 <= x < x1``, so its width is ``x1 - x0`` (no ``+ 1``) and a pixel ``(i, j)`` is the box
``(j, i, j + 1, i + 1)``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from enum import Enum
from typing import TypeVar

import numpy as np
import torch

__all__ = ["BoxMode", "Boxes", "pairwise_iou"]

_BoxLike = TypeVar("_BoxLike", list, tuple, np.ndarray, torch.Tensor)


class BoxMode(str, Enum):
    """How the 4 numbers of a box are laid out (absolute pixel coordinates).

    A ``str`` as well as an ``Enum``, so dataset dicts that store the plain name (e.g. read
    from JSON) compare equal to the member: ``"XYWH_ABS" == BoxMode.XYWH_ABS``.
    """

    XYXY_ABS = "XYXY_ABS"
    """``(x0, y0, x1, y1)``: top-left and bottom-right corners."""
    XYWH_ABS = "XYWH_ABS"
    """``(x0, y0, w, h)``: top-left corner and size (COCO's ``bbox``)."""

    def __str__(self) -> str:
        # The plain name, as ``StrEnum`` would give (f-strings, logs) on every Python version.
        return self.value

    @classmethod
    def parse(cls, mode: BoxMode | str | int) -> BoxMode:
        """The member for a BoxMode, its name (also ``"BoxMode.XYWH_ABS"``), or Detectron2's
        integer value of it (``XYXY_ABS`` 0, ``XYWH_ABS`` 1), as ported dataset code stores.

        Raises:
            ValueError: unknown name (lists the valid ones).
        """
        if isinstance(mode, int) and not isinstance(mode, bool) and not isinstance(mode, cls):
            mode = {0: "XYXY_ABS", 1: "XYWH_ABS"}.get(mode, str(mode))
        elif isinstance(mode, str) and not isinstance(mode, cls):
            mode = mode.rsplit(".", 1)[-1]
        try:
            return cls(mode)
        except ValueError:
            valid = ", ".join(m.value for m in cls)
            raise ValueError(f"unknown BoxMode {mode!r}; valid modes: {valid}") from None

    @staticmethod
    def convert(box: _BoxLike, from_mode: BoxMode | str, to_mode: BoxMode | str) -> _BoxLike:
        """Converts boxes between modes.

        Args:
            box: one box as a list/tuple of 4 numbers, or a numpy array / tensor ``(N, 4)``
                or ``(4,)``, any numeric dtype.
            from_mode: mode of ``box`` (member or name).
            to_mode: wanted mode (member or name).

        Returns:
            The converted box(es), of the same type (list, tuple, ndarray, tensor), shape and
            dtype as ``box``; a new object, ``box`` is not modified (unless the modes agree,
            then ``box`` itself is returned, as in Detectron2).

        Raises:
            ValueError: unknown mode name, or ``box`` is not 4 numbers / ``(..., 4)``.
        """
        from_mode, to_mode = BoxMode.parse(from_mode), BoxMode.parse(to_mode)
        if isinstance(box, (list, tuple)):
            if len(box) != 4:
                raise ValueError(f"BoxMode.convert(): a box has 4 numbers, got {box!r}")
            if from_mode == to_mode:
                return box
            # Python arithmetic keeps each number's type (int stays int) and full precision.
            x0, y0, a, b = box
            if to_mode == BoxMode.XYXY_ABS:
                out = [x0, y0, x0 + a, y0 + b]
            else:
                out = [x0, y0, a - x0, b - y0]
            return tuple(out) if isinstance(box, tuple) else out
        if not isinstance(box, (np.ndarray, torch.Tensor)):
            raise ValueError(f"BoxMode.convert(): unsupported box type {type(box).__name__}")
        if box.ndim not in (1, 2) or box.shape[-1] != 4:
            raise ValueError(
                f"BoxMode.convert(): boxes must be (N, 4) or (4,), got {tuple(box.shape)}"
            )
        if from_mode == to_mode:
            return box
        # The same indexing works on numpy and torch, so one code path serves both.
        out = box.copy() if isinstance(box, np.ndarray) else box.clone()
        if to_mode == BoxMode.XYXY_ABS:
            out[..., 2:] = box[..., :2] + box[..., 2:]
        else:
            out[..., 2:] = box[..., 2:] - box[..., :2]
        return out


class Boxes:
    """``N`` boxes as an ``(N, 4)`` float32 XYXY_ABS tensor (Detectron2's ``Boxes``).

    Args:
        tensor: ``(N, 4)`` boxes, anything ``torch.as_tensor`` takes; converted to float32
            (a float32 tensor is kept, not copied). An empty input becomes ``(0, 4)``.

    Raises:
        ValueError: a non-empty input that is not ``(N, 4)``.
    """

    def __init__(self, tensor: torch.Tensor | np.ndarray | Sequence) -> None:
        if isinstance(tensor, torch.Tensor):
            tensor = tensor.to(torch.float32)
        else:
            tensor = torch.as_tensor(tensor, dtype=torch.float32)
        if tensor.numel() == 0:
            # Empty inputs come in many shapes ((0,), [], (0, 5)); normalise so cat works.
            tensor = tensor.reshape(0, 4)
        if tensor.dim() != 2 or tensor.shape[-1] != 4:
            raise ValueError(f"Boxes needs an (N, 4) tensor, got shape {tuple(tensor.shape)}")
        self.tensor = tensor

    def clone(self) -> Boxes:
        """A copy that does not share memory."""
        return Boxes(self.tensor.clone())

    def to(self, device: torch.device | str) -> Boxes:
        """The boxes on ``device`` (a new Boxes)."""
        return Boxes(self.tensor.to(device=device))

    @property
    def device(self) -> torch.device:
        """The device of ``tensor``."""
        return self.tensor.device

    def area(self) -> torch.Tensor:
        """``(N,)`` float32 areas (negative for boxes with ``x1 < x0`` xor ``y1 < y0``)."""
        t = self.tensor
        return (t[:, 2] - t[:, 0]) * (t[:, 3] - t[:, 1])

    def clip(self, box_size: tuple[int, int]) -> None:
        """Clamps the boxes, in place, to the image ``[0, width] x [0, height]``.

        Args:
            box_size: ``(height, width)``.

        Raises:
            ValueError: a coordinate is inf or NaN (clamping would hide the problem).
        """
        if not torch.isfinite(self.tensor).all():
            raise ValueError("Boxes.clip(): the boxes contain inf or NaN")
        h, w = box_size
        self.tensor[:, 0::2].clamp_(min=0, max=w)
        self.tensor[:, 1::2].clamp_(min=0, max=h)

    def nonempty(self, threshold: float = 0.0) -> torch.Tensor:
        """``(N,)`` bool: width and height both ``> threshold``."""
        t = self.tensor
        return ((t[:, 2] - t[:, 0]) > threshold) & ((t[:, 3] - t[:, 1]) > threshold)

    def __getitem__(self, item: int | slice | torch.Tensor) -> Boxes:
        """Boxes selected by an int (one box, still ``(1, 4)``), slice, bool mask ``(N,)`` or
        int64 index tensor. May share memory with ``self`` (as tensor indexing does)."""
        if isinstance(item, (int, np.integer)):
            return Boxes(self.tensor[item].view(1, -1))
        selected = self.tensor[item]
        if selected.dim() != 2:
            raise ValueError(f"indexing Boxes with {item!r} gave shape {tuple(selected.shape)}")
        return Boxes(selected)

    def __len__(self) -> int:
        return self.tensor.shape[0]

    def __iter__(self) -> Iterator[torch.Tensor]:
        """Yields each box as a ``(4,)`` tensor."""
        yield from self.tensor

    def __repr__(self) -> str:
        return f"Boxes({self.tensor})"

    def inside_box(self, box_size: tuple[int, int], boundary_threshold: int = 0) -> torch.Tensor:
        """``(N,)`` bool: the box lies inside the image, allowing ``boundary_threshold`` pixels.

        Args:
            box_size: ``(height, width)``.
            boundary_threshold: how far a box may reach past the image border.
        """
        h, w = box_size
        t, b = self.tensor, boundary_threshold
        return (t[:, 0] >= -b) & (t[:, 1] >= -b) & (t[:, 2] < w + b) & (t[:, 3] < h + b)

    def get_centers(self) -> torch.Tensor:
        """``(N, 2)`` float32 box centres ``(x, y)``."""
        return (self.tensor[:, :2] + self.tensor[:, 2:]) / 2

    def scale(self, scale_x: float, scale_y: float) -> None:
        """Multiplies x coordinates by ``scale_x`` and y by ``scale_y``, in place."""
        self.tensor[:, 0::2] *= scale_x
        self.tensor[:, 1::2] *= scale_y

    @classmethod
    def cat(cls, boxes_list: Sequence[Boxes]) -> Boxes:
        """Concatenates Boxes; an empty list gives empty Boxes (on the CPU).

        Raises:
            TypeError: an element is not a Boxes.
        """
        if not all(isinstance(b, Boxes) for b in boxes_list):
            raise TypeError("Boxes.cat() takes a list of Boxes")
        if len(boxes_list) == 0:
            return cls(torch.empty(0, 4))
        return cls(torch.cat([b.tensor for b in boxes_list], dim=0))


def _pairwise_intersection(boxes1: Boxes, boxes2: Boxes) -> torch.Tensor:
    """``(N, M)`` intersection areas."""
    a, b = boxes1.tensor, boxes2.tensor
    wh = torch.min(a[:, None, 2:], b[None, :, 2:]) - torch.max(a[:, None, :2], b[None, :, :2])
    return wh.clamp(min=0).prod(dim=2)


def pairwise_iou(boxes1: Boxes, boxes2: Boxes) -> torch.Tensor:
    """Intersection over union of every pair of boxes.

    Pairs that do not overlap get 0, also when both boxes have zero area (where
    ``torchvision.ops.box_iou`` gives NaN from 0 / 0), as in Detectron2.

    Args:
        boxes1: ``N`` boxes.
        boxes2: ``M`` boxes on the same device.

    Returns:
        ``(N, M)`` float32 IoU.
    """
    inter = _pairwise_intersection(boxes1, boxes2)
    union = boxes1.area()[:, None] + boxes2.area()[None, :] - inter
    return torch.where(inter > 0, inter / union, 0.0)
