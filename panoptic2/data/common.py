"""Map-style dataset wrappers used by the loaders.

* :class:`DatasetFromList` stores a ``list[dict]`` as one serialized numpy buffer.
* :class:`MapDataset` applies a mapper (read, augment, build targets) to each item.
* :class:`PositionSeededDataset` seeds every RNG from ``(seed, stream position)`` before
  producing a training sample, which makes augmentations independent of worker count and
  reproducible after resume.
"""

from __future__ import annotations

import copy as copy_module
import logging
import pickle
import random
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils import data

__all__ = ["DatasetFromList", "MapDataset", "PositionSeededDataset", "derive_seed"]

logger = logging.getLogger(__name__)


def derive_seed(*entropy: int) -> int:
    """Derive a well-mixed 64-bit seed from several non-negative integers.

    Nearby inputs (``(s, 0)``, ``(s, 1)``) give unrelated seeds, unlike ``s + i``.

    Args:
        *entropy: Non-negative integers, e.g. ``(base_seed, epoch)``.

    Returns:
        An integer in ``[0, 2**64)``.
    """
    for e in entropy:
        if int(e) < 0:
            raise ValueError(f"derive_seed() needs non-negative integers, got {entropy}.")
    state = np.random.SeedSequence([int(e) for e in entropy]).generate_state(2, np.uint32)
    return int(state[0]) | (int(state[1]) << 32)


class DatasetFromList(data.Dataset):
    """A map-style dataset over a list, stored without per-item Python objects.

    With ``serialize=True`` every item is pickled into one contiguous ``np.uint8`` buffer
    indexed by an ``np.int64`` array of end offsets. DataLoader workers started with
    ``fork`` then share those pages with the parent: reading a Python list would touch each
    object's refcount, turning shared pages into private copies (the "copy-on-read" memory
    blow-up, N workers x dataset size). With ``spawn`` the two arrays are pickled once per
    worker, which is also far cheaper than pickling millions of small objects.

    Args:
        lst: The items, typically standard dataset dicts.
        copy: Without serialization, return a deep copy of each item so that a mapper
            mutating its input cannot corrupt the dataset. Serialized items are always
            fresh objects, so this has no effect when ``serialize=True``.
        serialize: Store items as described above.
    """

    def __init__(self, lst: Sequence[Any], copy: bool = True, serialize: bool = True) -> None:
        if isinstance(lst, (str, bytes)) or not isinstance(lst, Sequence):
            raise TypeError(f"DatasetFromList expects a list of items, got {type(lst).__name__}.")
        self._copy = copy
        self._serialize = serialize
        if serialize:
            buffers = [np.frombuffer(pickle.dumps(x, protocol=-1), dtype=np.uint8) for x in lst]
            self._ends = np.cumsum([len(b) for b in buffers], dtype=np.int64)
            self._buffer = np.concatenate(buffers) if buffers else np.zeros((0,), dtype=np.uint8)
            self._len = len(buffers)
            logger.debug(
                "Serialized %d items into %.2f MiB.", self._len, self._buffer.nbytes / 2**20
            )
        else:
            self._list = list(lst)
            self._len = len(self._list)

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, idx: int) -> Any:
        """Return item ``idx`` (negative indices count from the end)."""
        if not isinstance(idx, (int, np.integer)):
            raise TypeError(f"DatasetFromList index must be an int, got {type(idx).__name__}.")
        idx = int(idx)
        if not -self._len <= idx < self._len:
            raise IndexError(f"Index {idx} out of range for a dataset of {self._len} items.")
        idx %= self._len
        if self._serialize:
            start = 0 if idx == 0 else int(self._ends[idx - 1])
            end = int(self._ends[idx])
            return pickle.loads(memoryview(self._buffer[start:end]))
        item = self._list[idx]
        return copy_module.deepcopy(item) if self._copy else item


class MapDataset(data.Dataset):
    """Apply ``map_func`` to every item of a map-style dataset.

    A mapper returning ``None`` (e.g. an augmentation that cropped away every object) is an
    error by default, because silently dropping samples changes the epoch and batch content.
    With ``skip_none=True`` the next item (``idx + 1``, wrapping) is tried instead; the number
    of skips in this process is counted in :attr:`num_skipped` and logged. The retry order
    is a function of ``idx`` only, so results stay deterministic.

    Args:
        dataset: A map-style dataset (``__len__`` and ``__getitem__``).
        map_func: Callable taking an item and returning the mapped sample.
        skip_none: Replace items mapped to ``None`` as described above.
    """

    def __init__(
        self, dataset: data.Dataset, map_func: Callable[[Any], Any], skip_none: bool = False
    ) -> None:
        if not callable(map_func):
            raise TypeError(f"MapDataset: map_func must be callable, got {map_func!r}.")
        self._dataset = dataset
        self._map_func = map_func
        self._skip_none = skip_none
        self.num_skipped = 0

    def __len__(self) -> int:
        return len(self._dataset)

    def __getitem__(self, idx: int) -> Any:
        n = len(self._dataset)
        cur = idx
        for _ in range(n):
            out = self._map_func(self._dataset[cur])
            if out is not None:
                return out
            if not self._skip_none:
                raise ValueError(
                    f"Mapper {self._map_func!r} returned None for dataset item {cur}. Fix the "
                    "mapper, or pass skip_none=True to replace such items by the next one."
                )
            self.num_skipped += 1
            logger.warning(
                "Mapper returned None for dataset item %d; using item %d instead "
                "(%d items skipped so far in this process).",
                cur,
                (cur + 1) % n,
                self.num_skipped,
            )
            cur = (cur + 1) % n
        raise RuntimeError(f"Mapper {self._map_func!r} returned None for all {n} dataset items.")


def _seed_all(seed: int) -> None:
    """Seed python ``random``, numpy's global RNG and torch's CPU generator from ``seed``."""
    words = np.random.SeedSequence(seed).generate_state(4, np.uint32)
    random.seed(int(words[0]) | (int(words[1]) << 32))
    np.random.seed(words)
    # Only the CPU generator: torch.manual_seed would also reseed every CUDA device, which
    # would disturb the training process's CUDA RNG when mapping in the main process.
    torch.random.default_generator.manual_seed(int(words[2]) | (int(words[3]) << 32))


class PositionSeededDataset(data.Dataset):
    """Index a dataset with ``(position, index)`` keys, seeding all RNGs from the position.

    Training samplers in this package yield, for each element, its position in the global
    (all-rank) sample stream. Before producing ``dataset[index]`` this wrapper seeds python
    ``random``, numpy's global RNG and torch's CPU generator from
    ``derive_seed(seed, position)``. Any random augmentation of a sample is then a function of
    ``(seed, position)`` alone: it does not depend on which worker, how many workers or how
    many ranks produce it, and a resumed run reproduces it exactly.

    In a DataLoader worker the RNGs are simply reseeded. In the main process
    (``num_workers=0``) their states are saved before and restored after, so the training
    loop's random stream is not disturbed by data loading.

    Args:
        dataset: A map-style dataset, usually a :class:`MapDataset`.
        seed: Non-negative base seed shared by all ranks (the sampler's seed).
    """

    def __init__(self, dataset: data.Dataset, seed: int) -> None:
        if int(seed) < 0:
            raise ValueError(f"PositionSeededDataset needs a non-negative seed, got {seed}.")
        self._dataset = dataset
        self._seed = int(seed)

    def __len__(self) -> int:
        return len(self._dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        """Return ``dataset[index]`` produced under RNGs seeded from ``(seed, position)``.

        Args:
            key: ``(position, index)``: global stream position and dataset index.
        """
        try:
            position, index = key
        except (TypeError, ValueError):
            raise TypeError(
                f"PositionSeededDataset expects (position, index) keys, got {key!r}; use it "
                "with a sampler wrapped in PositionTaggedSampler."
            ) from None
        sample_seed = derive_seed(self._seed, int(position))
        if data.get_worker_info() is not None:
            _seed_all(sample_seed)
            return self._dataset[index]
        py_state = random.getstate()
        np_state = np.random.get_state()
        torch_state = torch.random.default_generator.get_state()
        try:
            _seed_all(sample_seed)
            return self._dataset[index]
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)
            torch.random.default_generator.set_state(torch_state)
