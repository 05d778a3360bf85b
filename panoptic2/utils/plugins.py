"""Plugins: modules imported by name so that they register datasets, models and config keys.

A plugin is any importable module whose import has the side effects a project needs
(``DatasetCatalog.register``, ``@META_ARCH_REGISTRY.register()``,
:func:`panoptic2.config.add_config_extension`). Plugins are named in a config's ``PLUGINS``
key, with ``--plugin`` on the command line, or installed as packaging entry points::

    # pyproject.toml of an installed project
    [project.entry-points."panoptic2.plugins"]
    my_project = "my_project.register"

Entry points are imported once per process, the first time :func:`load_plugins` runs.
:func:`loaded_plugins` lists what was imported so that ``launch()`` can import the same
modules in spawned workers (spawned processes start with a fresh interpreter).
"""

from __future__ import annotations

import importlib
import logging
import sys
import threading
from collections.abc import Iterable
from importlib import metadata as importlib_metadata

__all__ = ["ENTRY_POINT_GROUP", "load_plugins", "loaded_plugins"]

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "panoptic2.plugins"


class _State:
    """Per-process plugin bookkeeping (a fresh instance lets tests start over)."""

    def __init__(self) -> None:
        self.loaded: list[str] = []
        self.entry_points_loaded = False
        # Re-entrant: a plugin may itself call load_plugins() while being imported.
        self.lock = threading.RLock()


_STATE = _State()


def _note(error: BaseException, text: str) -> None:
    # add_note exists from Python 3.11; on 3.10 the original traceback still tells the story.
    if hasattr(error, "add_note"):
        error.add_note(text)


def _load_entry_points(state: _State) -> None:
    """Imports every entry point of :data:`ENTRY_POINT_GROUP` (once per process)."""
    if state.entry_points_loaded:
        return
    # Set first so that plugins calling load_plugins() while importing do not recurse.
    state.entry_points_loaded = True
    try:
        for ep in importlib_metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = getattr(getattr(ep, "dist", None), "name", None) or "an unknown distribution"
            try:
                ep.load()
            except Exception as e:
                raise ImportError(
                    f"Cannot load plugin entry point '{ep.name} = {ep.value}' of group "
                    f"'{ENTRY_POINT_GROUP}' (installed by {dist}): {e}"
                ) from e
            module = ep.value.split(":", 1)[0].strip()
            if module not in state.loaded:
                state.loaded.append(module)
            logger.info("Loaded plugin entry point %s = %s (from %s)", ep.name, ep.value, dist)
    except BaseException:
        state.entry_points_loaded = False  # retry (and fail loudly again) on the next call
        raise


def load_plugins(names: Iterable[str], *, requested_by: str | None = None) -> list[str]:
    """Imports plugin modules by dotted name, plus (once per process) all entry-point plugins.

    Importing is idempotent: a module imported before (by this function or otherwise) is not
    re-executed.

    Args:
        names: Dotted module names, e.g. ``["my_project.register"]``.
        requested_by: Where the names come from (e.g. "PLUGINS of 'a.yaml'"), used in errors;
            defaults to the calling file and line.

    Returns:
        ``names`` without duplicates, in order (all of them imported now).

    Raises:
        TypeError: ``names`` is a single string or holds a non-string.
        ImportError: A module (or entry point) cannot be imported; names the plugin and where
            it was requested.
    """
    if isinstance(names, str):
        raise TypeError(f"load_plugins() needs a list of module names, got the string {names!r}")
    if requested_by is None:
        caller = sys._getframe(1)
        requested_by = f"{caller.f_code.co_filename}:{caller.f_lineno}"
    state = _STATE
    requested = []
    with state.lock:
        _load_entry_points(state)
        for name in names:
            if not isinstance(name, str) or not name.strip():
                raise TypeError(
                    f"Plugin names must be non-empty module names, got {name!r} "
                    f"(requested by {requested_by})"
                )
            name = name.strip()
            if name not in state.loaded:
                try:
                    importlib.import_module(name)
                except ImportError as e:
                    raise ImportError(
                        f"Cannot import plugin '{name}' (requested by {requested_by}): {e}",
                        name=name,
                    ) from e
                except Exception as e:
                    _note(e, f"while importing plugin '{name}' (requested by {requested_by})")
                    raise
                state.loaded.append(name)
                logger.info("Loaded plugin %s (requested by %s)", name, requested_by)
            if name not in requested:
                requested.append(name)
    return requested


def loaded_plugins() -> list[str]:
    """Returns the plugin modules imported so far in this process, in import order.

    Returns:
        Module names; entry-point plugins appear as the modules their entry points name.
    """
    with _STATE.lock:
        return list(_STATE.loaded)
