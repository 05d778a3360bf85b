"""A batch of images of different sizes, padded to one tensor (Detectron2's ``ImageList``)."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

__all__ = ["ImageList", "batch_layout"]

# What every batch built by ImageList.from_tensors passes through (see batch_layout).
_BATCH_LAYOUT: contextvars.ContextVar[Callable[[torch.Tensor], torch.Tensor] | None] = (
    contextvars.ContextVar("panoptic2_batch_layout", default=None)
)


@contextlib.contextmanager
def batch_layout(layout: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[None]:
    """Within the block, :meth:`ImageList.from_tensors` returns ``layout(batch)``.

    A runner uses it to place the batches a model builds from its per-image inputs
    (images and targets alike) without the model knowing: the XLA SPMD runner shards their
    first (batch) dimension over the devices of its mesh.

    Args:
        layout: ``f((N, ...) tensor) -> (N, ...) tensor`` with the same values.
    """
    token = _BATCH_LAYOUT.set(layout)
    try:
        yield
    finally:
        _BATCH_LAYOUT.reset(token)


class ImageList:
    """Images of different sizes stored as one padded tensor plus each image's real size.

    Models run on the padded ``tensor``; ``image_sizes`` lets them crop their outputs back
    (the padding sits at the bottom and right, so the top-left ``(h, w)`` is the image).

    Args:
        tensor: ``(N, C, H, W)`` or ``(N, H, W)`` padded batch, any dtype and device.
        image_sizes: ``N`` pairs ``(h, w)``: the unpadded size of each image.

    Raises:
        ValueError: ``tensor`` has fewer than 3 dims, or ``image_sizes`` does not have one
            entry per image.
    """

    def __init__(self, tensor: torch.Tensor, image_sizes: Sequence[tuple[int, int]]) -> None:
        if tensor.dim() < 3:
            raise ValueError(
                f"ImageList needs an (N, C, H, W) or (N, H, W) tensor, got shape "
                f"{tuple(tensor.shape)}"
            )
        if len(image_sizes) != tensor.shape[0]:
            raise ValueError(
                f"ImageList: {len(image_sizes)} image sizes for a batch of {tensor.shape[0]}"
            )
        self.tensor = tensor
        self.image_sizes: list[tuple[int, int]] = [(int(h), int(w)) for h, w in image_sizes]

    def __len__(self) -> int:
        return len(self.image_sizes)

    def __getitem__(self, idx: int) -> torch.Tensor:
        """The ``idx``-th image without its padding.

        Args:
            idx: image index.

        Returns:
            ``(C, h, w)`` (or ``(h, w)``) view of ``tensor``, ``(h, w) = image_sizes[idx]``.
        """
        h, w = self.image_sizes[idx]
        return self.tensor[idx, ..., :h, :w]

    def to(self, *args: Any, **kwargs: Any) -> ImageList:
        """A new ImageList whose tensor is ``tensor.to(*args, **kwargs)`` (device, dtype)."""
        return ImageList(self.tensor.to(*args, **kwargs), self.image_sizes)

    @property
    def device(self) -> torch.device:
        """The device of ``tensor``."""
        return self.tensor.device

    def __repr__(self) -> str:
        return f"ImageList(tensor_shape={tuple(self.tensor.shape)}, image_sizes={self.image_sizes})"

    @staticmethod
    def from_tensors(
        tensors: Sequence[torch.Tensor], size_divisibility: int = 0, pad_value: float = 0.0
    ) -> ImageList:
        """Pads tensors of different sizes at the bottom/right and stacks them.

        The padded size is the largest ``H_i`` and the largest ``W_i``, each rounded up to a
        multiple of ``size_divisibility`` when it is > 1 (backbones with stride ``s`` need
        inputs divisible by ``s`` to give aligned feature maps).

        Args:
            tensors: ``N`` tensors ``(..., H_i, W_i)`` with equal leading dims and dtype.
            size_divisibility: divisor of the padded ``H`` and ``W`` (0, 1 or negative: no
                rounding).
            pad_value: value of the padded elements (e.g. an ignore label for targets).

        Returns:
            An ImageList with ``tensor`` ``(N, ..., H, W)`` of the inputs' dtype, on the first
            input's device (laid out by the active :func:`batch_layout`, if any), and
            ``image_sizes`` the ``(H_i, W_i)``.

        Raises:
            ValueError: no tensors, a tensor with fewer than 2 dims, or tensors whose leading
                dims or dtypes differ.
            TypeError: an element is not a tensor.
        """
        tensors = list(tensors)
        if not tensors:
            raise ValueError("ImageList.from_tensors() needs at least one tensor")
        for t in tensors:
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"ImageList.from_tensors() takes tensors, got {type(t).__name__}")
        shapes = [tuple(t.shape) for t in tensors]
        if any(len(s) < 2 for s in shapes):
            raise ValueError(f"ImageList.from_tensors(): tensors need an (H, W) tail: {shapes}")
        leading = shapes[0][:-2]
        if any(s[:-2] != leading for s in shapes):
            raise ValueError(f"ImageList.from_tensors(): tensors differ in leading dims: {shapes}")
        dtypes = [t.dtype for t in tensors]
        if any(d != dtypes[0] for d in dtypes):
            # copy_ would cast silently; a mixed batch is almost always a bug upstream.
            raise ValueError(f"ImageList.from_tensors(): tensors differ in dtype: {dtypes}")

        image_sizes = [(s[-2], s[-1]) for s in shapes]
        height = max(h for h, _ in image_sizes)
        width = max(w for _, w in image_sizes)
        if size_divisibility > 1:
            # Ceiling division on Python ints: exact, no float rounding.
            height = -(-height // size_divisibility) * size_divisibility
            width = -(-width // size_divisibility) * size_divisibility
        batch = tensors[0].new_full((len(tensors), *leading, height, width), pad_value)
        for out, t in zip(batch, tensors):
            out[..., : t.shape[-2], : t.shape[-1]].copy_(t)
        layout = _BATCH_LAYOUT.get()
        if layout is not None:
            batch = layout(batch)
        return ImageList(batch, image_sizes)
