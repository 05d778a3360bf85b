"""Reading weight files without running code from them, and telling corrupt files apart.

Both kinds of weight file are pickles, and unpickling can call any function the file names.
So neither is unpickled with :func:`pickle.load`:

* ``.pth`` files go through ``torch.load(weights_only=True)``, which only rebuilds tensors
  and plain containers. A file it refuses because it names other Python objects gets a
  message that says so (and what opting out would mean); a file that is no checkpoint at
  all, or is truncated, gets ``'<file>' is not a checkpoint or is corrupt (<reason>)``.
* ``.pkl`` files (Detectron/Detectron2/Caffe2 model zoos) go through
  :class:`_WeightsUnpickler`, which resolves only the globals such files contain: numpy
  array, dtype and scalar reconstruction (``numpy.core`` and ``numpy._core`` spellings,
  protocol 5's ``_frombuffer`` included), ``collections.OrderedDict``, and
  ``_codecs.encode`` limited to latin1 (protocol-2 pickles encode array bytes with it).
  Dicts, lists, tuples, strings and numbers need no global. Anything else is refused
  before it is called, with the file and the refused ``module.name`` in the message.
"""

from __future__ import annotations

import _codecs
import importlib
import os
import pickle
from typing import Any

import numpy as np
import torch

__all__ = [
    "CorruptCheckpointError",
    "UnsafeCheckpointError",
    "read_torch_checkpoint",
    "read_weights_pickle",
]

# Substrings of torch's weights-only errors raised for a well-formed pickle that names
# objects outside its allowlist, as opposed to bytes that are no pickle at all.
_DISALLOWED_MARKERS = (
    "Unsupported global",
    "unsupported GLOBAL",
    "Can only create new object",
    "Trying to call reduce for unrecognized function",
    "Can only build",
)


class CorruptCheckpointError(ValueError):
    """A weight file is not a checkpoint at all, or is truncated or damaged.

    Attributes:
        path: the file.
        reason: why it could not be read, in a few words.
    """

    def __init__(self, path: str, reason: str, message: str | None = None) -> None:
        self.path = path
        self.reason = reason
        super().__init__(message or f"'{path}' is not a checkpoint or is corrupt ({reason})")


class UnsafeCheckpointError(RuntimeError):
    """A weight file pickles objects whose unpickling could run code; it was not loaded."""


# Where numpy keeps its pickling helpers in the installed version.
_NUMPY_CORE = "numpy._core" if int(np.__version__.split(".")[0]) >= 2 else "numpy.core"


def _allowed_globals() -> dict[tuple[str, str], tuple[str, str]]:
    """``(module, name)`` a weight pickle may name -> where that object lives here."""
    allowed = {
        ("collections", "OrderedDict"): ("collections", "OrderedDict"),
        ("numpy", "ndarray"): ("numpy", "ndarray"),
        ("numpy", "dtype"): ("numpy", "dtype"),
    }
    # Files written under numpy 1 name numpy.core, under numpy 2 numpy._core; either loads
    # under either numpy. _frombuffer is how protocol 5 pickles contiguous arrays.
    for core in ("numpy.core", "numpy._core"):
        for module, name in (("multiarray", "_reconstruct"), ("multiarray", "scalar")):
            allowed[(f"{core}.{module}", name)] = (f"{_NUMPY_CORE}.{module}", name)
        allowed[(f"{core}.numeric", "_frombuffer")] = (f"{_NUMPY_CORE}.numeric", "_frombuffer")
    return allowed


_ALLOWED_GLOBALS = _allowed_globals()
# Python 3 pickles of bytes with protocol 2 (numpy array data) call _codecs.encode(text,
# "latin1"); it resolves to _WeightsUnpickler.latin1_encode, which allows that codec only.
_CODECS_ENCODE = ("_codecs", "encode")


class _WeightsUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals of numpy-array weight files."""

    def __init__(self, file: Any, path: str) -> None:
        # latin1 decodes the byte strings of numpy arrays pickled by Python 2 (Caffe2 era).
        super().__init__(file, encoding="latin1")
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == _CODECS_ENCODE:
            return self.latin1_encode
        target = _ALLOWED_GLOBALS.get((module, name))
        if target is None:
            raise UnsafeCheckpointError(
                f"Refusing to load {self._path}: it pickles {module}.{name}, which could run "
                "code; only dicts, lists, numbers, strings and numpy arrays are allowed in "
                ".pkl weights"
            )
        return getattr(importlib.import_module(target[0]), target[1])

    def latin1_encode(self, text: str, encoding: str = "utf-8") -> bytes:
        """``_codecs.encode`` restricted to latin1, so a pickle reaches no other codec."""
        if encoding not in ("latin1", "latin-1"):
            raise UnsafeCheckpointError(
                f"Refusing to load {self._path}: it calls _codecs.encode with codec "
                f"{encoding!r}; .pkl weights only use it with 'latin1'"
            )
        return _codecs.encode(text, encoding)


def read_weights_pickle(path: str) -> Any:
    """Unpickles a ``.pkl`` weight file without running code from it.

    Args:
        path: a local file path.

    Returns:
        The unpickled object (dicts, lists, tuples, strings, numbers, numpy arrays).

    Raises:
        UnsafeCheckpointError: the file names any other global; nothing it names was called.
        CorruptCheckpointError: the file is no pickle, or is truncated.
    """
    with open(path, "rb") as f:
        try:
            return _WeightsUnpickler(f, path).load()
        except UnsafeCheckpointError:
            raise
        except Exception as e:  # any malformed byte stream, whatever the unpickler raised
            raise CorruptCheckpointError(path, _short_reason(e, path)) from e


def _file_head(path: str, size: int = 8) -> bytes:
    with open(path, "rb") as f:
        return f.read(size)


def _short_reason(error: BaseException, path: str) -> str:
    """A few words on why ``path`` did not load: the first sentence of the error."""
    head = _file_head(path)
    if not head:
        return "the file is empty"
    # torch checkpoints are zip archives (b"PK") or, in the legacy format, pickles (b"\x80").
    if not head.startswith((b"PK", b"\x80")):
        return f"it starts with {head!r}, not with the header of a zip archive or a pickle"
    text = str(error)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    first = lines[0].split(". ")[0].rstrip(".") if lines else ""
    if not first:
        return f"{type(error).__name__}: the file ends early or is malformed"
    return first if len(first) <= 200 else first[:197] + "..."


def read_torch_checkpoint(path: str, *, weights_only: bool = True) -> Any:
    """Reads a ``.pth`` file with ``torch.load`` onto the CPU, with clear errors.

    Args:
        path: a local file path.
        weights_only: use ``torch.load(weights_only=True)``; ``False`` unpickles anything
            and so lets the file run arbitrary code.

    Returns:
        What ``torch.load`` returns.

    Raises:
        UnsafeCheckpointError: a well-formed file names Python objects that weights-only
            loading does not rebuild.
        CorruptCheckpointError: the file is no checkpoint, or is truncated or damaged.
    """
    if os.path.getsize(path) == 0:
        raise CorruptCheckpointError(path, "the file is empty")
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only)
    except pickle.UnpicklingError as e:
        text = str(e)
        if weights_only and any(marker in text for marker in _DISALLOWED_MARKERS):
            detail = _short_reason(e, path)
            raise UnsafeCheckpointError(
                f"Refusing to load {path}: it pickles Python objects other than tensors and "
                f"plain containers ({detail}), and unpickling those could run arbitrary code. "
                "Only if you trust this file and whoever wrote it, load it with "
                "Checkpointer(..., weights_only=False), which lets the file run arbitrary "
                "code while it loads."
            ) from e
        raise CorruptCheckpointError(path, _short_reason(e, path)) from e
    except Exception as e:  # torch raises many types for damaged archives and pickles
        raise CorruptCheckpointError(path, _short_reason(e, path)) from e
