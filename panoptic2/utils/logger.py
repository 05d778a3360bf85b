"""Logging set-up for training processes: console on rank 0, one file per rank.

Modules log through ``logging.getLogger(__name__)``; their records propagate to the
``panoptic2`` logger configured once by :func:`setup_logger`.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import sys
from collections import Counter
from typing import IO, Any

from .file_io import PathManager

__all__ = ["log_every_n", "log_first_n", "setup_logger"]

# ANSI colour per level name; only used when the console is a terminal.
_LEVEL_COLORS = {
    "DEBUG": "\033[36m",  # cyan
    "INFO": "\033[32m",  # green
    "WARNING": "\033[33m",  # yellow
    "ERROR": "\033[31m",  # red
    "CRITICAL": "\033[1;31m",  # bold red
}
_RESET = "\033[0m"
_DATE_FORMAT = "%m/%d %H:%M:%S"


class _ConsoleFormatter(logging.Formatter):
    """Shortens the root logger name and, optionally, colours the level name."""

    def __init__(self, *args: Any, root_name: str, abbrev_name: str, color: bool, **kwargs):
        super().__init__(*args, **kwargs)
        self._root_name = root_name + "."
        self._abbrev_name = abbrev_name + "." if abbrev_name else ""
        self._color = color

    def format(self, record: logging.LogRecord) -> str:
        # Work on a copy: the same record also reaches the file handler, which must not
        # receive escape codes or the shortened name.
        record = logging.makeLogRecord(record.__dict__)
        if record.name.startswith(self._root_name):
            record.name = self._abbrev_name + record.name[len(self._root_name) :]
        if self._color and record.levelname in _LEVEL_COLORS:
            record.levelname = f"{_LEVEL_COLORS[record.levelname]}{record.levelname}{_RESET}"
        return super().format(record)


@functools.cache
def _cached_log_stream(filename: str) -> IO[str]:
    # One stream per file for the whole process, so several loggers (or repeated set-up
    # calls) writing to the same file do not interleave half-written buffers.
    # Line buffering: a crash must not lose the last lines of the log.
    stream = PathManager.open(filename, "a", buffering=1)
    atexit.register(stream.close)
    return stream


@functools.cache  # same arguments -> same logger, no duplicate handlers
def setup_logger(
    output: str | None = None,
    distributed_rank: int = 0,
    *,
    color: bool = True,
    name: str = "panoptic2",
    abbrev_name: str | None = None,
) -> logging.Logger:
    """Configures the logger ``name``: console on rank 0, a file on every rank.

    Args:
        output: a file name ending in ``.txt`` or ``.log``, or a directory (the log goes
            to ``<output>/log.txt``). Rank ``r > 0`` appends ``.rank{r}`` to the file
            name. None: no file.
        distributed_rank: global rank of this process.
        color: colour the level names on the console when it is a terminal.
        name: the logger to configure (its children propagate to it).
        abbrev_name: short name shown on the console in place of ``name``; default
            ``"p2"`` for ``"panoptic2"``, else ``name``.

    Returns:
        the configured logger (level DEBUG, not propagating to the root logger).
    """
    logger = logging.getLogger(name)
    logger.setLevel(logging.DEBUG)
    # Records stop here so a root handler set by a library does not print them twice.
    logger.propagate = False
    if abbrev_name is None:
        abbrev_name = "p2" if name == "panoptic2" else name

    if distributed_rank == 0:
        handler = logging.StreamHandler(stream=sys.stdout)
        handler.setLevel(logging.DEBUG)
        use_color = color and hasattr(sys.stdout, "isatty") and sys.stdout.isatty()
        handler.setFormatter(
            _ConsoleFormatter(
                "[%(asctime)s %(name)s %(levelname)s]: %(message)s",
                datefmt=_DATE_FORMAT,
                root_name=name,
                abbrev_name=abbrev_name,
                color=use_color,
            )
        )
        logger.addHandler(handler)

    if output is not None:
        if output.endswith((".txt", ".log")):
            filename = output
        else:
            filename = os.path.join(output, "log.txt")
        if distributed_rank > 0:
            filename = f"{filename}.rank{distributed_rank}"
        dirname = os.path.dirname(filename)
        if dirname:
            PathManager.mkdirs(dirname)
        handler = logging.StreamHandler(_cached_log_stream(filename))
        handler.setLevel(logging.DEBUG)
        handler.setFormatter(
            logging.Formatter(
                "[%(asctime)s] %(name)s %(levelname)s: %(message)s", datefmt=_DATE_FORMAT
            )
        )
        logger.addHandler(handler)
    return logger


def _find_caller() -> tuple[str, tuple[str, int, str]]:
    """Returns the module name and (file, line, function) of the first frame outside here."""
    frame = sys._getframe(1)
    this_file = os.path.normcase(__file__)
    while frame is not None:
        code = frame.f_code
        if os.path.normcase(code.co_filename) != this_file:
            module = frame.f_globals.get("__name__", "panoptic2")
            if module == "__main__":
                module = "panoptic2"
            return module, (code.co_filename, frame.f_lineno, code.co_name)
        frame = frame.f_back
    return "panoptic2", ("", 0, "")


_LOG_COUNTER: Counter = Counter()


def log_first_n(
    lvl: int, msg: str, n: int = 1, *, name: str | None = None, key: str | tuple = "caller"
) -> None:
    """Logs ``msg`` only the first ``n`` times it is reached.

    Args:
        lvl: logging level, e.g. ``logging.WARNING``.
        msg: the message.
        n: how many times to log it.
        name: logger name; default: the calling module's ``__name__``.
        key: what counts as "the same" log: ``"caller"`` (the call site),
            ``"message"``, or a tuple of both.
    """
    keys = (key,) if isinstance(key, str) else tuple(key)
    unknown = set(keys) - {"caller", "message"}
    if not keys or unknown:
        raise ValueError(f"log_first_n(key=...) takes 'caller' and/or 'message', got {key!r}.")
    caller_module, caller_key = _find_caller()
    hash_key: tuple = ()
    if "caller" in keys:
        hash_key += caller_key
    if "message" in keys:
        hash_key += (msg,)
    _LOG_COUNTER[hash_key] += 1
    if _LOG_COUNTER[hash_key] <= n:
        logging.getLogger(name or caller_module).log(lvl, msg)


def log_every_n(lvl: int, msg: str, n: int = 1, *, name: str | None = None) -> None:
    """Logs ``msg`` on the 1st, (n+1)-th, (2n+1)-th ... time its call site is reached.

    Args:
        lvl: logging level.
        msg: the message.
        n: period.
        name: logger name; default: the calling module's ``__name__``.
    """
    caller_module, caller_key = _find_caller()
    _LOG_COUNTER[caller_key] += 1
    if n == 1 or _LOG_COUNTER[caller_key] % n == 1:
        logging.getLogger(name or caller_module).log(lvl, msg)
