"""URL schemes for weights and configs, downloaded once into a local cache.

Registered on :data:`panoptic2.utils.file_io.PathManager`, so ``MODEL.WEIGHTS``,
``--config-file`` and :class:`~panoptic2.checkpoint.Checkpointer` accept:

* ``http://``, ``https://``: fetched as is;
* ``detectron2://<path>``: ``https://dl.fbaipublicfiles.com/detectron2/<path>``, Detectron2's
  model zoo (e.g. ``detectron2://ImageNetPretrained/MSRA/R-50.pkl``);
* ``torchvision://<WeightsEnum>.<VALUE>`` (e.g. ``torchvision://ResNet50_Weights.IMAGENET1K_V1``):
  the ``.url`` of that torchvision weights entry; ``torchvision://<model>`` (e.g.
  ``torchvision://resnet50``) means the model's ``DEFAULT`` weights, which torchvision may
  point at a better entry in a later release, so configs that must reproduce name the entry.

A URL's file is cached at ``<cache dir>/<path part of the URL>`` (iopath's and hence
Detectron2's layout: ``https://dl.fbaipublicfiles.com/detectron2/ImageNetPretrained/MSRA/R-50.pkl``
-> ``<cache dir>/detectron2/ImageNetPretrained/MSRA/R-50.pkl``), so Detectron2's cache
(``~/.torch/iopath_cache``) can serve as ours. The cache directory is ``$PANOPTIC2_CACHE``,
else ``$XDG_CACHE_HOME/panoptic2``, else ``~/.cache/panoptic2``, read at each lookup. A file
already in the cache is used without any network access. Downloads go to a temp file in the
same directory, renamed onto the cache name only when complete, under a file lock so that
concurrent processes download once. A failed download raises :class:`DownloadError`, which
names the URL and the exact path to put the file at by hand.
"""

from __future__ import annotations

import difflib
import http.client
import logging
import os
from typing import IO, Any
from urllib import parse, request

from iopath.common.file_io import HTTPURLHandler, PathHandler, file_lock

__all__ = [
    "DETECTRON2_URL_PREFIX",
    "CachedHTTPURLHandler",
    "Detectron2Handler",
    "DownloadError",
    "TorchvisionHandler",
    "cached_file_path",
    "get_cache_dir",
    "resolve_url",
]

logger = logging.getLogger(__name__)

DETECTRON2_URL_PREFIX = "https://dl.fbaipublicfiles.com/detectron2/"
# A socket timeout per blocking operation (connect, each read), not for the whole download:
# large files on slow links still complete, and a dead route fails instead of hanging.
DEFAULT_TIMEOUT_S = 60.0
_CHUNK_BYTES = 1 << 20


class DownloadError(OSError):
    """A URL's file is not in the cache and could not be downloaded.

    Attributes:
        url: the URL as given (``detectron2://...`` etc.).
        download_url: the ``http(s)`` URL that was fetched.
        local_path: where the file is looked up; placing it there makes the URL work offline.
    """

    def __init__(self, url: str, download_url: str, local_path: str, reason: str) -> None:
        shown = url if url == download_url else f"{url} ({download_url})"
        super().__init__(
            f"Cannot download {shown}: {reason}.\n"
            f"To use it without a download (e.g. on a machine without network access), "
            f"fetch {download_url} elsewhere and put it at\n"
            f"  {local_path}\n"
            "(the cache directory is $PANOPTIC2_CACHE, else $XDG_CACHE_HOME/panoptic2, else "
            "~/.cache/panoptic2)."
        )
        self.url = url
        self.download_url = download_url
        self.local_path = local_path


def get_cache_dir() -> str:
    """The download cache directory: ``$PANOPTIC2_CACHE``, ``$XDG_CACHE_HOME/panoptic2`` or
    ``~/.cache/panoptic2`` (the first that is set)."""
    explicit = os.environ.get("PANOPTIC2_CACHE")
    if explicit:
        return os.path.expanduser(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return os.path.join(os.path.expanduser(base), "panoptic2")


def cached_file_path(download_url: str, cache_dir: str | None = None) -> str:
    """Where the file of an ``http(s)`` URL is cached: ``<cache dir>/<URL path>``.

    Args:
        download_url: an ``http://`` or ``https://`` URL naming a file.
        cache_dir: the cache directory; ``None`` for :func:`get_cache_dir`.

    Returns:
        The absolute local path (it need not exist).

    Raises:
        ValueError: the URL names no file, or its path climbs above its root (``..``).
    """
    url_path = parse.unquote(parse.urlparse(download_url).path)
    if not url_path or url_path.endswith("/"):
        raise ValueError(f"URL {download_url} names no file to download")
    parts: list[str] = []
    # "a/../b" (a config's relative _BASE_ joined to its URL) is "b"; nothing may climb
    # above the URL's root, which would leave the cache directory.
    for part in url_path.split("/"):
        if part == "..":
            if not parts:
                raise ValueError(f"URL {download_url}: its path climbs above its root ('..')")
            parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    return os.path.join(os.path.abspath(cache_dir or get_cache_dir()), *parts)


def _download(download_url: str, local_path: str, timeout_s: float) -> None:
    """Streams ``download_url`` into ``local_path`` atomically (temp file, then rename).

    Raises:
        OSError: network or HTTP failure, or fewer bytes than the server announced.
    """
    from tqdm import tqdm

    from .file_io import atomic_write  # file_io registers this module's handlers

    def write(f: IO[bytes]) -> None:
        req = request.Request(download_url, headers={"User-Agent": "panoptic2"})
        with request.urlopen(req, timeout=timeout_s) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            received = 0
            with tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                desc=os.path.basename(local_path),
                disable=None,  # no bar when stderr is not a terminal (logs, CI)
            ) as bar:
                while chunk := response.read(_CHUNK_BYTES):
                    f.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
        if total is not None and received != total:
            raise OSError(f"connection closed after {received} of {total} bytes")
        if received == 0:
            raise OSError("the server sent an empty file")

    os.makedirs(os.path.dirname(local_path), exist_ok=True)
    atomic_write(local_path, write)


class CachedHTTPURLHandler(HTTPURLHandler):
    """iopath's HTTP handler, with the project's cache, atomic downloads and clear errors.

    iopath's own download has no timeout (a dead route hangs) and its errors do not say
    where the file is expected, so only the fetching is replaced; opening and the cache
    layout stay iopath's.

    Attributes:
        timeout_s: socket timeout of each connect/read during a download, in seconds.
    """

    def __init__(self, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        super().__init__()
        self.timeout_s = timeout_s

    def fetch(
        self,
        download_url: str,
        *,
        shown_url: str | None = None,
        force: bool = False,
        cache_dir: str | None = None,
    ) -> str:
        """The local copy of ``download_url``, downloaded first when not cached.

        Args:
            download_url: the ``http(s)`` URL.
            shown_url: the URL the user gave (``detectron2://...``), for messages.
            force: download even when the file is cached.
            cache_dir: the cache directory; ``None`` for :func:`get_cache_dir`.

        Returns:
            The cached file's path.

        Raises:
            DownloadError: the file is not cached and the download failed.
        """
        shown_url = shown_url or download_url
        local_path = cached_file_path(download_url, cache_dir)
        if not force and os.path.isfile(local_path):
            return local_path
        try:
            with file_lock(local_path):
                # Another process may have downloaded it while this one waited.
                if force or not os.path.isfile(local_path):
                    logger.info("Downloading %s to %s ...", shown_url, local_path)
                    _download(download_url, local_path, self.timeout_s)
        except (OSError, ValueError, http.client.HTTPException) as e:  # timeouts: OSError
            raise DownloadError(shown_url, download_url, local_path, str(e)) from e
        logger.info("URL %s cached in %s", shown_url, local_path)
        return local_path

    def _get_local_path(
        self, path: str, force: bool = False, cache_dir: str | None = None, **kwargs: Any
    ) -> str:
        self._check_kwargs(kwargs)
        return self.fetch(path, force=force, cache_dir=cache_dir)


class _AliasHandler(PathHandler):
    """A URL scheme that names an ``http(s)`` URL, fetched through the HTTP handler."""

    PREFIX = ""

    def __init__(self, http: CachedHTTPURLHandler) -> None:
        super().__init__()
        self.http = http

    def _get_supported_prefixes(self) -> list[str]:
        return [self.PREFIX]

    @classmethod
    def to_download_url(cls, path: str) -> str:
        """The ``http(s)`` URL that ``path`` names."""
        raise NotImplementedError

    def _get_local_path(
        self, path: str, force: bool = False, cache_dir: str | None = None, **kwargs: Any
    ) -> str:
        self._check_kwargs(kwargs)
        return self.http.fetch(
            self.to_download_url(path), shown_url=path, force=force, cache_dir=cache_dir
        )

    def _open(self, path: str, mode: str = "r", buffering: int = -1, **kwargs: Any) -> IO[Any]:
        self._check_kwargs(kwargs)
        if mode not in ("r", "rb"):
            raise ValueError(f"{path}: URLs open read-only ('r' or 'rb'), not {mode!r}")
        return open(self._get_local_path(path), mode, buffering)


class Detectron2Handler(_AliasHandler):
    """``detectron2://<path>`` -> ``https://dl.fbaipublicfiles.com/detectron2/<path>``."""

    PREFIX = "detectron2://"

    @classmethod
    def to_download_url(cls, path: str) -> str:
        name = path[len(cls.PREFIX) :]
        if not name or name.endswith("/"):
            raise ValueError(f"{path} names no file (expected detectron2://<path/to/file>)")
        return DETECTRON2_URL_PREFIX + name


class TorchvisionHandler(_AliasHandler):
    """``torchvision://<WeightsEnum>.<VALUE>`` or ``torchvision://<model>`` (its DEFAULT
    weights) -> the URL torchvision publishes for those weights."""

    PREFIX = "torchvision://"

    @classmethod
    def to_download_url(cls, path: str) -> str:
        from torchvision import models

        name = path[len(cls.PREFIX) :]
        if "." in name:
            try:
                return models.get_weight(name).url
            except (ValueError, KeyError, AttributeError) as e:
                enum = name.split(".", 1)[0]
                raise ValueError(
                    f"{path}: torchvision has no weights {name!r} ({e}). Write "
                    "torchvision://<WeightsEnum>.<VALUE>, e.g. "
                    "torchvision://ResNet50_Weights.IMAGENET1K_V1; list an enum's values with "
                    f"`list(torchvision.models.{enum})`"
                ) from None
        available = models.list_models()
        if name not in available:
            close = difflib.get_close_matches(name, available, n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise ValueError(
                f"{path}: {name!r} is no torchvision model (see "
                f"torchvision.models.list_models()).{hint}"
            )
        default = models.get_model_weights(name).DEFAULT
        logger.info("%s means %s (torchvision's DEFAULT weights of %s)", path, default, name)
        return default.url


def resolve_url(path: str) -> str:
    """The ``http(s)`` URL that a ``detectron2://`` or ``torchvision://`` path names; any
    other path is returned as is."""
    for handler in (Detectron2Handler, TorchvisionHandler):
        if path.startswith(handler.PREFIX):
            return handler.to_download_url(path)
    return path
