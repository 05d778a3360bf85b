"""Lazy access to the compiled extension ``panoptic2._C``.

The extension is optional: every op has a pure-PyTorch (or NumPy / OpenCV) fallback, so
importing panoptic2 never fails when ``_C`` is missing or was built against another torch. The
library is imported once, on first use (not at ``import panoptic2`` nor ``import
panoptic2.ops``), and its ops are reached through ``torch.ops.panoptic2.*``.

:func:`has_ops` is the one availability check: ``_C`` counts as usable only when it loads and
registers every op the Python side uses (:data:`REQUIRED_OPS`; a stale build lacking one is
unusable). The successful load also imports :mod:`panoptic2.ops._fake`, which registers the
fake kernels, so they exist whenever a kernel can be reached. Op wrappers (the modules of
:mod:`panoptic2.ops`) look the check up at call time, so patching ``extension.has_ops`` forces
the fallbacks::

    from panoptic2.ops import extension

    if extension.has_ops():  # logs one warning per process when _C is unavailable
        return torch.ops.panoptic2.some_op(x)
    return _some_op_fallback(x)

CUDA inputs additionally need :func:`has_cuda_kernels`. Callers that have no fallback call
:func:`require_ops` instead.
"""

from __future__ import annotations

import importlib
import logging
import threading
from dataclasses import dataclass

import torch

__all__ = [
    "compiler_version",
    "cuda_version",
    "extension_status",
    "format_cuda_version",
    "has_cuda_kernels",
    "has_ops",
    "parallel_cpu_kernels",
    "require_ops",
]

logger = logging.getLogger(__name__)

_MODULE = "panoptic2._C"
_FAKE_MODULE = "panoptic2.ops._fake"
# Every op the Python side calls; a ``_C`` that lacks one (a stale build) is unusable.
REQUIRED_OPS = (
    "cuda_version",
    "compiler_version",
    "has_cuda_kernels",
    "parallel_cpu_kernels",
    "group_pixels",
    "merge_semantic_and_instance",
    "panoptic_deeplab_postprocess",
)
REBUILD_HINT = (
    "build it against the installed torch with `python setup.py build_ext --inplace` "
    "(or reinstall with `bash dev/install.sh`)"
)


@dataclass(frozen=True)
class _LoadResult:
    """Outcome of the one attempt to load ``_C``.

    Attributes:
        path: File the extension was loaded from; None when loading failed.
        error: ``"<ExceptionType>: <message>"`` when loading failed, else None.
    """

    path: str | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.error is None


_lock = threading.Lock()
_result: _LoadResult | None = None
_warned = False


def _missing_ops() -> list[str]:
    """The names of :data:`REQUIRED_OPS` that ``torch.ops.panoptic2`` does not have."""
    missing = []
    for name in REQUIRED_OPS:
        try:
            getattr(torch.ops.panoptic2, name)
        except (AttributeError, RuntimeError):
            missing.append(name)
    return missing


def _import_extension() -> str:
    """Imports ``panoptic2._C`` (which registers its ops) and checks that every op is there.

    Returns:
        Path of the loaded shared library.

    Raises:
        ImportError: The library is missing, cannot be loaded (e.g. undefined symbols from a
            torch mismatch), or does not register all of :data:`REQUIRED_OPS` (a stale
            build; the message names the missing ops).
    """
    module = importlib.import_module(_MODULE)
    missing = _missing_ops()
    if missing:
        raise ImportError(
            f"{module.__file__} does not register torch.ops.panoptic2.{{{', '.join(missing)}}} "
            "(a stale build)"
        )
    return str(module.__file__)


def _describe(error: BaseException) -> str:
    """One line naming the failure, with a hint specific to the common causes."""
    text = " ".join(f"{type(error).__name__}: {error}".split())
    if isinstance(error, ModuleNotFoundError) and error.name == _MODULE:
        return f"{text} (the extension is not built)"
    if "undefined symbol" in text:
        return f"{text} (built against a different torch than the installed {torch.__version__})"
    return text


def _load() -> _LoadResult:
    """Loads ``_C`` once per process, thread-safely; later calls return the cached outcome.

    A successful load imports :mod:`panoptic2.ops._fake` (registering the fake kernels)
    before the outcome is published, so no caller reaches a kernel without its fake kernel.
    """
    global _result
    if _result is None:
        with _lock:
            if _result is None:
                try:
                    path = _import_extension()
                except (ImportError, OSError) as e:
                    _result = _LoadResult(path=None, error=_describe(e))
                else:
                    importlib.import_module(_FAKE_MODULE)
                    _result = _LoadResult(path=path, error=None)
    return _result


def has_ops() -> bool:
    """Whether the compiled ops are usable; call it where an op is about to be used.

    This is the one availability check: True only when ``_C`` loaded and registers every op
    of :data:`REQUIRED_OPS` (their fake kernels are then registered too).

    The first call that finds ``_C`` unavailable logs one warning per process, naming the
    error, so that a silently slower fallback never goes unnoticed.

    Returns:
        True when ``torch.ops.panoptic2.*`` can be called.
    """
    global _warned
    result = _load()
    if not result.ok and not _warned:
        _warned = True
        logger.warning(
            "%s not available (%s): using pure-PyTorch fallbacks. To %s.",
            _MODULE,
            result.error,
            REBUILD_HINT,
        )
    return result.ok


def require_ops() -> None:
    """Raises unless the compiled ops are usable; for callers that cannot fall back.

    Raises:
        RuntimeError: ``_C`` is unavailable; the message names the error and how to rebuild.
    """
    result = _load()
    if not result.ok:
        raise RuntimeError(
            f"{_MODULE} is required here but not available ({result.error}). Please {REBUILD_HINT}."
        )


def cuda_version() -> int | None:
    """CUDA runtime version the extension's CUDA kernels were compiled with.

    Returns:
        ``CUDART_VERSION`` (e.g. 13000 for CUDA 13.0), or None when ``_C`` is unavailable or
        was built without CUDA.
    """
    if not _load().ok:
        return None
    version = int(torch.ops.panoptic2.cuda_version())
    return version if version >= 0 else None


def compiler_version() -> str | None:
    """Host compiler that built the extension (e.g. ``"GCC 12.2"``), or None without ``_C``."""
    return str(torch.ops.panoptic2.compiler_version()) if _load().ok else None


def has_cuda_kernels() -> bool:
    """Whether ``_C`` is loaded and was built with its CUDA kernels (``csrc/cuda/*.cu``).

    The dispatch decision for CUDA inputs, on top of :func:`has_ops`.
    """
    return _load().ok and bool(torch.ops.panoptic2.has_cuda_kernels())


def parallel_cpu_kernels() -> bool:
    """Whether ``_C`` is loaded and its CPU kernels run on ``torch.get_num_threads()``
    threads (False for a build without OpenMP against an OpenMP torch: they then run on one)."""
    return _load().ok and bool(torch.ops.panoptic2.parallel_cpu_kernels())


def format_cuda_version(version: int) -> str:
    """Formats a ``CUDART_VERSION``-style integer: 13000 -> "13.0", 12060 -> "12.6"."""
    return f"{version // 1000}.{(version % 1000) // 10}"


def extension_status() -> str:
    """One-line human summary of the extension, for logs and the environment report.

    Returns:
        E.g. ``"OK (/path/_C.so; CUDA kernels: CUDA 13.0; CPU kernels: parallel; compiler:
        GCC 12.2)"`` or
        ``"not available: ImportError: ... undefined symbol ...; build it ..."``.
    """
    result = _load()
    if not result.ok:
        return f"not available: {result.error}; {REBUILD_HINT}"
    cuda = cuda_version()
    kernels = f"CUDA {format_cuda_version(cuda)}" if cuda is not None else "no (CPU-only build)"
    threads = "parallel" if parallel_cpu_kernels() else "one thread (built without OpenMP)"
    return (
        f"OK ({result.path}; CUDA kernels: {kernels}; CPU kernels: {threads}; "
        f"compiler: {compiler_version()})"
    )
