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

Trust. Importing a module runs its code, and a config file is data that may come from
anywhere, so the ``PLUGINS`` of a config file (``load_plugins(..., config_file=...)``) are
imported only when the module is

1. part of panoptic2 itself (``panoptic2`` or ``panoptic2.*``);
2. in a package that an installed distribution declares in the ``panoptic2.plugins``
   entry-point group (the module an entry point names, or anything in its top-level
   package);
3. allowed by the user: ``allowed`` (``--allow-plugin MODULE``) or the comma-separated
   environment variable ``PANOPTIC2_ALLOWED_PLUGINS``; allowing a package allows its
   submodules; or
4. a file in a trusted directory: the current working directory or the source checkout
   that holds this ``panoptic2`` package (the directory above it, when it has a
   ``setup.py`` or ``pyproject.toml``), but not in a ``site-packages``/``dist-packages``
   directory or the standard library below them. The file and every package
   ``__init__`` on the way must be there (symlinks resolved); namespace packages, which
   run no code, may be anywhere. The directory of the config file is deliberately not
   trusted: whoever supplies a config could supply code next to it.

Where a module would come from is found with :func:`importlib.util.find_spec`, one dotted
level at a time, so only packages already found trusted are imported on the way. Anything
else raises :class:`UntrustedPluginError` before any of its code runs. Modules named with
``--plugin`` or ``PLUGINS`` on the command line were typed by the user and are imported
without these checks.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import sys
import sysconfig
import threading
from collections.abc import Iterable
from importlib import metadata as importlib_metadata
from pathlib import Path

__all__ = [
    "ALLOWED_PLUGINS_ENV",
    "ENTRY_POINT_GROUP",
    "UntrustedPluginError",
    "load_plugins",
    "loaded_plugins",
    "trusted_plugin_roots",
]

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "panoptic2.plugins"
ALLOWED_PLUGINS_ENV = "PANOPTIC2_ALLOWED_PLUGINS"
# Directories holding installed packages: never trusted by location, even below a trusted
# root (a virtual environment inside the project, the user site under a home directory).
_LIBRARY_DIR_NAMES = ("site-packages", "dist-packages")


class UntrustedPluginError(ImportError):
    """A config file names a plugin module that is not trusted; it was not imported."""


class _State:
    """Per-process plugin bookkeeping (a fresh instance lets tests start over)."""

    def __init__(self) -> None:
        self.loaded: list[str] = []
        self.entry_points_loaded = False
        # Top-level packages of the modules that entry points name (trusted as a whole).
        self.entry_point_packages: set[str] = set()
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
            state.entry_point_packages.add(module.split(".", 1)[0])
            if module not in state.loaded:
                state.loaded.append(module)
            logger.info("Loaded plugin entry point %s = %s (from %s)", ep.name, ep.value, dist)
    except BaseException:
        state.entry_points_loaded = False  # retry (and fail loudly again) on the next call
        raise


def trusted_plugin_roots() -> list[str]:
    """The directories whose modules a config file may name as plugins (rule 4 above).

    Returns:
        Real paths: the current working directory, then the panoptic2 source checkout
        when this package is one.
    """
    roots = [os.path.realpath(os.getcwd())]
    checkout = Path(__file__).resolve().parents[2]  # panoptic2/utils/plugins.py -> root
    if any((checkout / marker).is_file() for marker in ("setup.py", "pyproject.toml")):
        roots.append(str(checkout))
    return list(dict.fromkeys(roots))


def _allowed_by_user(allowed: Iterable[str]) -> list[str]:
    from_env = os.environ.get(ALLOWED_PLUGINS_ENV, "").split(",")
    return [name.strip() for name in (*allowed, *from_env) if name and name.strip()]


def _in_package(name: str, packages: Iterable[str]) -> bool:
    """Whether module ``name`` is one of ``packages`` or inside one."""
    return any(name == p or name.startswith(p + ".") for p in packages)


def _untrusted_location(origin: str, roots: list[str]) -> bool:
    """Whether a module file lies outside the trusted roots (or in an installed library)."""
    path = os.path.realpath(origin)
    library = {
        os.path.realpath(sysconfig.get_paths()[key])
        for key in ("stdlib", "platstdlib", "purelib", "platlib")
    }
    for root in roots:
        try:
            inside = os.path.commonpath([path, root]) == root
        except ValueError:  # different drives on Windows
            continue
        if not inside:
            continue
        below = Path(os.path.relpath(path, root)).parts
        if any(part in _LIBRARY_DIR_NAMES for part in below):
            continue
        if any(os.path.commonpath([path, lib]) == lib for lib in library):
            continue
        return False
    return True


def _check_trusted(
    name: str, config_file: str, requested_by: str, allowed: Iterable[str], state: _State
) -> None:
    """Raises unless the config file's plugin ``name`` is trusted; imports no untrusted code.

    ``find_spec("a.b")`` imports ``a`` to read its ``__path__``, so the levels are resolved
    from the top: each package is found trusted before ``find_spec`` of its child imports it.
    """
    if _in_package(name, ("panoptic2",)) or _in_package(name, _allowed_by_user(allowed)):
        return
    if _in_package(name, state.entry_point_packages):
        return
    roots = trusted_plugin_roots()
    parts = name.split(".")
    for depth in range(1, len(parts) + 1):
        prefix = ".".join(parts[:depth])
        try:
            spec = importlib.util.find_spec(prefix)
            if spec is None:
                raise ModuleNotFoundError(f"No module named '{prefix}'", name=prefix)
        except (ImportError, ValueError) as e:
            raise ImportError(
                f"Cannot import plugin '{name}' (requested by {requested_by}): {e}", name=name
            ) from e
        if spec.loader is None and spec.submodule_search_locations is not None:
            continue  # a namespace package: importing it runs no code
        if not spec.has_location or _untrusted_location(spec.origin, roots):
            where = spec.origin if spec.has_location else f"{spec.origin} code"
            raise UntrustedPluginError(
                f"Refusing to import plugin '{name}' named in PLUGINS of config file "
                f"'{config_file}': '{prefix}' would be imported from {where}, which is outside "
                f"the trusted directories ({', '.join(roots)}; site-packages and the standard "
                f"library excluded), and no installed package declares it in the "
                f"'{ENTRY_POINT_GROUP}' "
                "entry points. Importing a module runs its code. If you trust it, allow it "
                f"with --allow-plugin {name} (or {ALLOWED_PLUGINS_ENV}={name}), or import it "
                f"yourself with --plugin {name}.",
                name=name,
            )


def load_plugins(
    names: Iterable[str],
    *,
    requested_by: str | None = None,
    config_file: str | None = None,
    allowed: Iterable[str] = (),
) -> list[str]:
    """Imports plugin modules by dotted name, plus (once per process) all entry-point plugins.

    Importing is idempotent: a module imported before (by this function or otherwise) is not
    re-executed. Names that come from a config file (``config_file``) are imported only when
    trusted (see the module docstring); others were chosen by the user and are imported.

    Args:
        names: Dotted module names, e.g. ``["my_project.register"]``.
        requested_by: Where the names come from (e.g. "PLUGINS of 'a.yaml'"), used in errors;
            defaults to the calling file and line.
        config_file: The config file that names them; makes the trust checks apply.
        allowed: Modules (or packages) the user allows a config file to name wherever they
            live (``--allow-plugin``); added to ``$PANOPTIC2_ALLOWED_PLUGINS``.

    Returns:
        ``names`` without duplicates, in order (all of them imported now).

    Raises:
        TypeError: ``names`` is a single string or holds a non-string.
        UntrustedPluginError: A config file names an untrusted module (not imported).
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
                if config_file is not None:
                    _check_trusted(name, config_file, requested_by, allowed, state)
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
