"""Ending a worker process together with the process that started it.

Worker processes spawned by :func:`panoptic2.engine.launch.launch` would otherwise outlive a
launcher killed with SIGKILL and keep training, writing into ``OUTPUT_DIR`` while a later
``--resume`` reads it. :func:`end_with_parent` ties a worker's life to its launcher.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import threading
import time

__all__ = ["end_with_parent"]

logger = logging.getLogger(__name__)

# From <linux/prctl.h>.
_PR_SET_PDEATHSIG = 1


def _end_now(parent_pid: int) -> None:
    """Ends this process at once: the parent it depends on is gone."""
    logger.warning("Process %d: its launcher (pid %d) is gone; ending it.", os.getpid(), parent_pid)
    # os._exit, not sys.exit: this may run in a watchdog thread, and nothing of a worker
    # whose launcher is gone should run any more (no atexit, no finally blocks).
    os._exit(1)


def _set_parent_death_signal() -> bool:
    """Asks Linux to SIGKILL this process when its parent thread exits.

    Returns:
        True when the kernel accepted the request.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent_pid: int, poll_interval_s: float) -> None:
    while os.getppid() == parent_pid:
        time.sleep(poll_interval_s)
    _end_now(parent_pid)


def end_with_parent(
    parent_pid: int, *, use_prctl: bool = True, poll_interval_s: float = 1.0
) -> str:
    """Makes this process end when its parent process ``parent_pid`` dies.

    On Linux the kernel kills this process (SIGKILL) when the parent dies
    (``prctl(PR_SET_PDEATHSIG)``); nothing can delay it. Elsewhere, or when prctl is not
    available, a daemon thread checks every ``poll_interval_s`` whether the parent is
    still there and ends the process when it is not. Either way, a parent that died
    before this call is caught by comparing ``os.getppid()`` with ``parent_pid``, since an
    orphan is re-parented to another process.

    Linux sends the signal when the *thread* that started this process exits, so the
    parent must keep that thread alive while this process runs (``launch()`` does: it
    waits for its workers in the thread that spawned them).

    Args:
        parent_pid: pid of the process that started this one (``os.getpid()`` in the
            parent, passed to the child).
        use_prctl: False forces the watchdog thread (used by tests on Linux).
        poll_interval_s: seconds between two checks of the watchdog thread.

    Returns:
        ``"pdeathsig"`` or ``"watchdog"``: how the process is tied to its parent.

    Raises:
        ValueError: if ``parent_pid`` is not a positive int.
    """
    if not isinstance(parent_pid, int) or parent_pid <= 0:
        raise ValueError(f"parent_pid must be a positive int, got {parent_pid!r}.")
    # SIGKILL rather than SIGTERM: a handler cannot delay it (one saving a checkpoint would
    # race the run that resumes from OUTPUT_DIR), and it ends a stopped process too.
    if use_prctl and _set_parent_death_signal():
        mechanism = "pdeathsig"
    else:
        mechanism = "watchdog"
        threading.Thread(
            target=_watch_parent,
            args=(parent_pid, poll_interval_s),
            name="panoptic2-parent-watchdog",
            daemon=True,
        ).start()
    # The parent may have died before the request took effect: then no signal will come.
    if os.getppid() != parent_pid:
        _end_now(parent_pid)
    return mechanism
