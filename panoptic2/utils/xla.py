"""What the rest of the package needs to know about XLA devices, without importing torch_xla.

XLA devices (TPUs through ``torch_xla``; XLA:CPU in tests) trace a whole training step into
one graph, compile it once per distinct set of shapes and run it. Code paths whose shapes
depend on data (boolean-mask indexing, ``nonzero``, a Python ``if`` on a tensor) either
recompile every step or fall back to the host, so the layers and losses that have such a
path choose a static-shape variant when :func:`is_static_shape_device` says so. torch_xla is
imported only by :func:`xla_device` and by :mod:`panoptic2.engine.xla`, i.e. only when a run
asks for ``MODEL.DEVICE xla``.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util

import torch

__all__ = [
    "STATIC_SHAPE_DEVICE_TYPES",
    "is_static_shape_device",
    "is_xla_device_name",
    "xla_device",
    "xla_installed_version",
]

# Device types whose programs are compiled with static shapes. A native TPU device type
# (e.g. one registered by a torch TPU backend) joins this set when it is supported.
STATIC_SHAPE_DEVICE_TYPES = frozenset({"xla"})


def is_static_shape_device(device: torch.device | str) -> bool:
    """Whether ``device`` compiles whole graphs that need static shapes.

    Args:
        device: a device or its name (``"xla:0"``, ``"cpu"``).

    Returns:
        True for XLA devices.
    """
    return torch.device(device).type in STATIC_SHAPE_DEVICE_TYPES


def is_xla_device_name(name: str) -> bool:
    """Whether a ``MODEL.DEVICE`` value names an XLA device (``"xla"`` or ``"xla:N"``)."""
    return str(name).split(":")[0] == "xla"


def xla_installed_version() -> str | None:
    """The installed torch_xla version read from package metadata (nothing is imported),
    or None when torch_xla is not installed."""
    if importlib.util.find_spec("torch_xla") is None:
        return None
    for dist in ("torch_xla", "torch-xla"):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "unknown"


def xla_device() -> torch.device:
    """The XLA device of this process (the virtual device of the whole mesh under SPMD).

    Returns:
        ``torch_xla.device()``.

    Raises:
        ImportError: torch_xla is not installed (the message says how to install it).
    """
    try:
        import torch_xla
    except ImportError as e:
        raise ImportError(
            "MODEL.DEVICE xla needs torch_xla, which is not importable here "
            f"({type(e).__name__}: {e}). Install the XLA environment with "
            "`bash dev/install_xla.sh` (torch 2.9.0 + torch-xla 2.9.0 in a virtualenv)."
        ) from e
    return torch_xla.device()
