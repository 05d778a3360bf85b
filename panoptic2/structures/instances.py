"""Per-image instance annotations or predictions (Detectron2's ``Instances``)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any, NoReturn

import numpy as np
import torch

__all__ = ["Instances"]


class Instances:
    """The instances of one image: named fields of equal length (one entry per instance).

    Fields are read and written as attributes (``inst.scores``) or with ``get``/``set``.
    Any value with ``len()`` can be a field: tensors, lists, :class:`Boxes`,
    :class:`BitMasks`... Typical fields: ``gt_boxes`` / ``pred_boxes`` (Boxes),
    ``gt_classes`` / ``pred_classes`` ``(N,)`` int64, ``scores`` ``(N,)`` float32,
    ``pred_masks`` ``(N, H, W)`` bool.

    Args:
        image_size: ``(height, width)`` of the image.
        **fields: initial fields, set in order with :meth:`set`.
    """

    def __init__(self, image_size: tuple[int, int], **fields: Any) -> None:
        self._image_size = (int(image_size[0]), int(image_size[1]))
        self._fields: dict[str, Any] = {}
        for name, value in fields.items():
            self.set(name, value)

    @property
    def image_size(self) -> tuple[int, int]:
        """``(height, width)``."""
        return self._image_size

    def __setattr__(self, name: str, value: Any) -> None:
        # Private attributes live on the object; every public attribute is a field.
        if name.startswith("_"):
            super().__setattr__(name, value)
        else:
            self.set(name, value)

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails. Private / dunder names must fail fast: pickle
        # and copy probe (``__setstate__``...) on objects whose ``_fields`` is not set yet,
        # and reading ``self._fields`` then would recurse.
        if name.startswith("_") or name not in self._fields:
            fields = list(self.__dict__.get("_fields", {}))
            raise AttributeError(f"Instances has no field {name!r}; its fields are {fields}")
        return self._fields[name]

    def set(self, name: str, value: Any) -> None:
        """Adds or replaces a field.

        Raises:
            ValueError: ``len(value)`` differs from the other fields' length, or ``name`` is
                private (``_...``) or the name of an Instances attribute (``image_size``...).
        """
        if name.startswith("_") or hasattr(type(self), name):
            # Such a field could never be read back as an attribute.
            raise ValueError(f"{name!r} cannot be an Instances field name")
        length = len(value)
        if self._fields and length != len(self):
            raise ValueError(
                f"field {name!r} has length {length} but this Instances has {len(self)} instances"
            )
        self._fields[name] = value

    def has(self, name: str) -> bool:
        """Whether the field exists."""
        return name in self._fields

    def remove(self, name: str) -> None:
        """Deletes a field (KeyError if absent)."""
        del self._fields[name]

    def get(self, name: str) -> Any:
        """The field's value (KeyError if absent)."""
        return self._fields[name]

    def get_fields(self) -> dict[str, Any]:
        """The fields by name, in insertion order (the internal dict: do not modify it)."""
        return self._fields

    def to(self, *args: Any, **kwargs: Any) -> Instances:
        """A new Instances with ``field.to(*args, **kwargs)`` of every field that has ``to``
        (others, e.g. lists, are shared)."""
        ret = Instances(self._image_size)
        for name, value in self._fields.items():
            ret.set(name, value.to(*args, **kwargs) if hasattr(value, "to") else value)
        return ret

    def __getitem__(self, item: int | slice | torch.Tensor) -> Instances:
        """The instances selected by ``item``, applied to every field.

        Args:
            item: an int (gives a length-1 Instances, as in Detectron2), a slice, an ``(N,)``
                bool mask or an int64 index tensor (lists and numpy arrays are converted to
                a tensor first). List fields are indexed element by element.

        Returns:
            A new Instances (tensor fields may share memory with ``self``).

        Raises:
            IndexError: an int out of range, or a bool mask of the wrong length.
        """
        if not isinstance(item, (int, np.integer, slice)):
            item = torch.as_tensor(item)
            if item.numel() == 0 and item.dtype != torch.bool:
                item = item.long()  # torch.as_tensor([]) is float32, not an index
            elif item.dim() == 0 and item.dtype != torch.bool:
                item = int(item)  # a 0-dim index tensor is an int (keeps the length-1 dim)
        if isinstance(item, (int, np.integer)):
            n = len(self)
            if not -n <= item < n:
                raise IndexError(f"Instances index {item} out of range for {n} instances")
            # A slice keeps a length-1 dim in every field type (a tensor, a list, Boxes).
            item = slice(int(item), None, n)
        elif (
            isinstance(item, torch.Tensor)
            and item.dtype == torch.bool
            and item.shape != (len(self),)
        ):
            # Checked here because list fields, zipped with the mask, would not notice.
            raise IndexError(f"bool mask of shape {tuple(item.shape)} for {len(self)} instances")
        ret = Instances(self._image_size)
        for name, value in self._fields.items():
            ret.set(name, _index(value, item))
        return ret

    def __len__(self) -> int:
        for value in self._fields.values():
            return len(value)
        # As in Detectron2: with no fields the number of instances is unknown, not 0.
        raise NotImplementedError("an Instances without fields has no length")

    def __iter__(self) -> NoReturn:
        # Without this, Python would iterate through __getitem__ with ints; Detectron2
        # forbids iterating (it is almost always a mistake for iterating over a field).
        raise NotImplementedError("Instances is not iterable; iterate over a field instead")

    @classmethod
    def cat(cls, instance_lists: Sequence[Instances]) -> Instances:
        """Concatenates Instances of one image with the same fields.

        Tensors go through ``torch.cat``, lists are chained, other types through their
        ``cat`` classmethod (e.g. ``Boxes.cat``).

        Raises:
            ValueError: an empty list, differing image sizes or field names, or a field type
                that cannot be concatenated.
            TypeError: an element is not an Instances.
        """
        if len(instance_lists) == 0:
            raise ValueError("Instances.cat() needs at least one Instances")
        if not all(isinstance(i, Instances) for i in instance_lists):
            raise TypeError("Instances.cat() takes a list of Instances")
        first = instance_lists[0]
        for other in instance_lists[1:]:
            if other.image_size != first.image_size:
                raise ValueError(
                    f"Instances.cat(): image sizes differ: {first.image_size} and "
                    f"{other.image_size}"
                )
            if set(other._fields) != set(first._fields):
                raise ValueError(
                    f"Instances.cat(): fields differ: {list(first._fields)} and "
                    f"{list(other._fields)}"
                )
        ret = cls(first.image_size)
        for name, value in first._fields.items():
            values = [i._fields[name] for i in instance_lists]
            if isinstance(value, torch.Tensor):
                joined = torch.cat(values, dim=0)
            elif isinstance(value, list):
                joined = list(itertools.chain.from_iterable(values))
            elif hasattr(type(value), "cat"):
                joined = type(value).cat(values)
            else:
                raise ValueError(
                    f"Instances.cat(): cannot concatenate field {name!r} of type "
                    f"{type(value).__name__}"
                )
            ret.set(name, joined)
        return ret

    def __repr__(self) -> str:
        n = len(self) if self._fields else 0
        h, w = self._image_size
        return (
            f"Instances(num_instances={n}, image_height={h}, image_width={w}, "
            f"fields={list(self._fields)})"
        )


def _index(value: Any, item: slice | torch.Tensor) -> Any:
    """``value[item]``, element by element for lists and tuples (they take no tensors)."""
    if isinstance(item, slice) or not isinstance(value, (list, tuple)):
        if isinstance(value, np.ndarray) and isinstance(item, torch.Tensor):
            return value[item.cpu().numpy()]
        return value[item]
    if item.dtype == torch.bool:
        picked = [v for v, keep in zip(value, item.tolist()) if keep]
    else:
        picked = [value[i] for i in item.tolist()]
    return type(value)(picked)
