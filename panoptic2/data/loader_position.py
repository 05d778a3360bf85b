"""Where a training loader's sample stream starts, handed to loaders that user code builds.

``DefaultTrainer`` builds its training loader through the overridable class method
``build_train_loader(cls, cfg)``, Detectron2's signature, which has no place for the
resumed iteration or the checkpointed data seed. The trainer therefore sets them with
:func:`train_loader_position` around that call, and :func:`panoptic2.data.build_train_loader`
takes from them the ``start_iter`` and ``seed`` its caller did not give. An override that
builds its loader with panoptic2's builder (directly, or through ``super()``) with its own
mapper, dataset or batch size thus resumes exactly without handling resumption itself.
A context variable rather than a global keeps concurrent threads from seeing each other's
position.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

__all__ = ["TrainLoaderPosition", "current_train_loader_position", "train_loader_position"]


@dataclass
class TrainLoaderPosition:
    """The start of a training stream.

    Attributes:
        start_iter: the first iteration the loader serves (skips ``start_iter`` batches).
        seed: the seed of the sample order and of per-sample augmentation.
        start_applied: set by the loader builder when it started at ``start_iter``; the
            trainer checks it to tell a user when an override could not resume exactly.
    """

    start_iter: int
    seed: int
    start_applied: bool = False


_CURRENT: contextvars.ContextVar[TrainLoaderPosition | None] = contextvars.ContextVar(
    "panoptic2_train_loader_position", default=None
)


@contextmanager
def train_loader_position(start_iter: int, seed: int) -> Iterator[TrainLoaderPosition]:
    """Makes training loaders built inside the ``with`` block start at this position.

    Args:
        start_iter: the first iteration (>= 0).
        seed: the data seed.

    Yields:
        The position; its ``start_applied`` says afterwards whether a loader used it.
    """
    if start_iter < 0:
        raise ValueError(f"start_iter must be >= 0, got {start_iter}")
    position = TrainLoaderPosition(int(start_iter), int(seed))
    token = _CURRENT.set(position)
    try:
        yield position
    finally:
        _CURRENT.reset(token)


def current_train_loader_position() -> TrainLoaderPosition | None:
    """The position set by the innermost active :func:`train_loader_position`, if any."""
    return _CURRENT.get()
