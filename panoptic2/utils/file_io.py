"""The project's :class:`iopath.common.file_io.PathManager`: local paths plus URLs.

Use ``PathManager.open(path)``, ``PathManager.get_local_path(url)``,
``PathManager.exists(path)`` ... everywhere a path may be a URL (weights, configs), so
remote files are downloaded once and cached. The URL schemes (``http(s)://``,
``detectron2://``, ``torchvision://``) and the cache directory (``$PANOPTIC2_CACHE``, else
``$XDG_CACHE_HOME/panoptic2``, else ``~/.cache/panoptic2``, read when a file is fetched so a
test or user can change it at run time) are described in :mod:`panoptic2.utils.url_handlers`.
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from collections.abc import Callable
from typing import IO, Any

from iopath.common.file_io import OneDrivePathHandler
from iopath.common.file_io import PathManager as PathManagerBase

from .url_handlers import (
    CachedHTTPURLHandler,
    Detectron2Handler,
    TorchvisionHandler,
    get_cache_dir,
)

__all__ = ["PathManager", "atomic_write", "atomic_write_leftovers", "get_cache_dir"]

# The temp files of atomic_write: ".{name}.{12 hex digits}.tmp" next to the destination.
_TEMP_HEX_DIGITS = 12
_TEMP_NAME = re.compile(rf"^\.(?P<target>.+)\.[0-9a-f]{{{_TEMP_HEX_DIGITS}}}\.tmp$")


class _OneDrivePathHandler(OneDrivePathHandler):
    """iopath's OneDrive handler with the project's default cache directory."""

    def _get_local_path(self, path: str, force: bool = False, **kwargs: Any) -> str:
        kwargs["cache_dir"] = kwargs.get("cache_dir") or get_cache_dir()
        return super()._get_local_path(path, force=force, **kwargs)


PathManager = PathManagerBase()
_HTTP_HANDLER = CachedHTTPURLHandler()
PathManager.register_handler(_HTTP_HANDLER)
PathManager.register_handler(Detectron2Handler(_HTTP_HANDLER))
PathManager.register_handler(TorchvisionHandler(_HTTP_HANDLER))
PathManager.register_handler(_OneDrivePathHandler())


def _fsync_dir(dirname: str) -> None:
    """Makes a rename durable: fsyncs the directory entry (POSIX only; no-op elsewhere)."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(dirname, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError:  # some filesystems (network mounts) refuse fsync on directories
        pass
    finally:
        os.close(fd)


def atomic_write(path: str, write_fn: Callable[[IO[bytes]], None]) -> None:
    """Writes a local file so that readers see either the old or the complete new content.

    The data is written to ``.{name}.{random}.tmp`` in the same directory (same filesystem,
    so the rename is atomic), flushed and fsynced, then renamed over ``path`` with
    ``os.replace``. On any error the temp file is removed and the error re-raised.

    Args:
        path: the local destination path.
        write_fn: writes the content to the binary file object it is given.
    """
    dirname, basename = os.path.split(os.path.abspath(path))
    tmp = os.path.join(dirname, f".{basename}.{uuid.uuid4().hex[:_TEMP_HEX_DIGITS]}.tmp")
    try:
        # "xb": never clobber another writer's temp file; default permissions (umask).
        with open(tmp, "xb") as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
    _fsync_dir(dirname)


def atomic_write_leftovers(dirname: str) -> dict[str, str]:
    """Finds the temp files that :func:`atomic_write` left in a directory.

    A process killed between creating its temp file and the rename leaves the file behind;
    a writer still running has one too, so remove them only when no other process writes
    to ``dirname``.

    Args:
        dirname: a local directory; a missing one has no leftovers.

    Returns:
        ``{temp file path: name of the file it was to replace}``.
    """
    try:
        names = os.listdir(dirname)
    except FileNotFoundError:
        return {}
    found = {}
    for name in sorted(names):
        match = _TEMP_NAME.match(name)
        if match is not None and os.path.isfile(os.path.join(dirname, name)):
            found[os.path.join(dirname, name)] = match.group("target")
    return found
