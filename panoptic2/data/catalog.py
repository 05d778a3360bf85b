"""Name -> dataset and name -> metadata catalogs.

``DatasetCatalog`` maps a dataset name to a zero-argument function that returns the dataset
as a ``list[dict]`` of standard dataset dicts (see ``ARCHITECTURE.md``). ``MetadataCatalog``
maps the same names to a :class:`Metadata` object holding what is shared by the whole dataset
(class names, colours, ``label_divisor``, ``ignore_label``, id maps, evaluator type, ...).

How registrations reach every process:
    Both catalogs are plain per-process memory; nothing is written to disk or sent between
    processes. A registration therefore exists in a process only if the code that performs it
    ran in that process. Two mechanisms guarantee that:

    * Built-in datasets are registered when ``panoptic2.data`` is imported, which every
      process (main, DDP workers started by ``launch()``, DataLoader workers) does anyway.
    * User datasets are registered at import time of a plugin module, named with
      ``--plugin`` or the config's ``PLUGINS`` key (or a ``panoptic2.plugins`` entry point).
      ``launch()`` re-imports the loaded plugins in each spawned worker before ``main_func``
      runs, so the worker sees the same catalog as the parent.

    Registering from inside ``main()`` of a script also works for single-process runs and
    for ``launch()`` (``main_func`` runs in every worker), but not for code that runs in a
    DataLoader worker started with the ``spawn`` method, which only re-imports modules.

Registrations are code, not data: registering a name twice is an error (``remove()`` it first),
so two plugins cannot silently shadow each other. Metadata, in contrast, may be updated at
any time with :meth:`Metadata.set`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from panoptic2.registry import unknown_name_error

__all__ = ["DatasetCatalog", "MetadataCatalog", "Metadata"]

logger = logging.getLogger(__name__)

# Reserved key of Metadata.__dict__: the pending (keys, compute) pairs of Metadata.set_lazy.
_LAZY = "_lazy_fields"


class _DatasetCatalog:
    """Maps dataset names to functions returning ``list[dict]``.

    The function is called on every :meth:`get`, so the catalog holds no data and the
    function may read files lazily; cache inside the function if reading is slow.
    """

    def __init__(self) -> None:
        self._funcs: dict[str, Callable[[], list[dict]]] = {}

    def register(self, name: str, func: Callable[[], list[dict]]) -> None:
        """Register a dataset.

        Args:
            name: Unique dataset name, e.g. ``"coco_2017_val_panoptic"``.
            func: Called without arguments; returns the dataset as ``list[dict]``.

        Raises:
            TypeError: ``name`` is not a string or ``func`` is not callable.
            ValueError: ``name`` is already registered.
        """
        if not isinstance(name, str) or not name:
            raise TypeError(f"Dataset name must be a non-empty str, got {name!r}.")
        if not callable(func):
            raise TypeError(
                f"DatasetCatalog.register('{name}', func): func must be callable, got {func!r}."
            )
        if name in self._funcs:
            raise ValueError(
                f"Dataset '{name}' is already registered (by {self._funcs[name]!r}). "
                f"Call DatasetCatalog.remove('{name}') first if replacing it is intended."
            )
        self._funcs[name] = func

    def get(self, name: str) -> list[dict]:
        """Call the registered function of ``name`` and return its result.

        Args:
            name: A registered dataset name.

        Returns:
            The dataset as a list of standard dataset dicts.

        Raises:
            KeyError: ``name`` is not registered (the message lists registered names and the
                closest match).
            TypeError: The function did not return a list.
        """
        try:
            func = self._funcs[name]
        except KeyError:
            raise unknown_name_error("Dataset", name, list(self._funcs)) from None
        dicts = func()
        if not isinstance(dicts, list):
            raise TypeError(
                f"Dataset '{name}': the registered function {func!r} must return a list of "
                f"dicts, got {type(dicts).__name__}."
            )
        return dicts

    def list(self) -> list[str]:
        """Return the registered names, in registration order."""
        return list(self._funcs)

    def remove(self, name: str) -> None:
        """Unregister ``name``; an unknown name raises ``KeyError``."""
        if name not in self._funcs:
            raise unknown_name_error("Dataset", name, list(self._funcs))
        del self._funcs[name]

    def clear(self) -> None:
        """Unregister every dataset."""
        self._funcs.clear()

    def __contains__(self, name: object) -> bool:
        return name in self._funcs

    def __repr__(self) -> str:
        return f"DatasetCatalog(registered={self.list()})"


class Metadata:
    """Attributes shared by a whole dataset, with attribute access.

    ``Metadata(name="x").set(thing_classes=["a"]).thing_classes == ["a"]``. Unlike
    Detectron2, fields may be changed after they are set (the change is logged at debug
    level), because derived values such as ``label_divisor`` are legitimately refined by
    dataset preparation code. Fields that only a data file knows can be declared lazily
    (:meth:`set_lazy`).

    Args:
        name: Dataset name the metadata belongs to (also stored as the field ``name``).
        **kwargs: Initial fields.
    """

    def __init__(self, name: str = "", **kwargs: Any) -> None:
        self.__dict__["name"] = name
        self.__dict__[_LAZY] = []
        self.set(**kwargs)

    def __getattr__(self, key: str) -> Any:
        # Only called when normal lookup fails. Dunder names must raise plainly so that
        # pickle/copy protocols probing for optional methods behave normally.
        if key.startswith("__"):
            raise AttributeError(key)
        if self._resolve(key):
            return self.__dict__[key]
        fields = sorted(self._fields())
        raise AttributeError(
            f"Metadata of dataset '{self.__dict__.get('name', '')}' has no field '{key}'. "
            f"Available fields: {fields}."
        )

    def __setattr__(self, key: str, value: Any) -> None:
        self.set(**{key: value})

    def set(self, **kwargs: Any) -> Metadata:
        """Set or update fields.

        Args:
            **kwargs: Field names and values.

        Returns:
            ``self``, so calls can be chained.
        """
        for key, value in kwargs.items():
            if key in self.__dict__ and not _same(self.__dict__[key], value):
                logger.debug(
                    "Metadata of '%s': field '%s' changed from %r to %r.",
                    self.__dict__.get("name", ""),
                    key,
                    self.__dict__[key],
                    value,
                )
            self.__dict__[key] = value
        return self

    def set_lazy(self, keys: Iterable[str], compute: Callable[[], Mapping[str, Any]]) -> Metadata:
        """Declares fields that ``compute()`` supplies when one of them is first read.

        For metadata that only a data file knows (e.g. the category list inside a large
        annotation JSON): registration stays free of disk access, and the first read of any
        of ``keys`` (attribute, :meth:`get`, :meth:`as_dict`, pickling) calls ``compute``
        once; ``key in metadata`` answers without calling it. Fields set explicitly, before
        or after, win over computed ones.

        Args:
            keys: The fields ``compute`` provides.
            compute: Returns a mapping holding at least ``keys``; its errors propagate to
                the reader (and ``compute`` runs again on the next read).

        Returns:
            ``self``.
        """
        self._pending().append((frozenset(keys), compute))
        return self

    def _pending(self) -> list[tuple[frozenset[str], Callable[[], Mapping[str, Any]]]]:
        return self.__dict__.setdefault(_LAZY, [])

    def _resolve(self, key: str | None = None) -> bool:
        """Runs the pending computations that provide ``key`` (all when None); returns
        whether ``key`` is set afterwards."""
        pending = self._pending()
        for entry in [e for e in pending if key is None or key in e[0]]:
            keys, compute = entry
            values = dict(compute())
            missing = sorted(keys - set(values))
            if missing:
                raise KeyError(
                    f"Metadata of dataset '{self.__dict__['name']}': the lazy fields {missing} "
                    f"were declared but {compute!r} did not return them."
                )
            pending.remove(entry)
            for k, v in values.items():
                self.__dict__.setdefault(k, v)
        return key is not None and key in self.__dict__

    def _fields(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != _LAZY}

    def get(self, key: str, default: Any = None) -> Any:
        """Return field ``key``, or ``default`` when it is not set."""
        if key not in self.__dict__:
            self._resolve(key)
        return self.__dict__.get(key, default) if key != _LAZY else default

    def as_dict(self) -> dict[str, Any]:
        """Return a shallow copy of all fields (including ``name``)."""
        self._resolve()
        return self._fields()

    def __contains__(self, key: object) -> bool:
        if key == _LAZY:
            return False
        return key in self.__dict__ or any(key in keys for keys, _ in self._pending())

    def __getstate__(self) -> dict[str, Any]:
        # Pickles the values, not the functions that compute them (closures do not pickle).
        return {**self.as_dict(), _LAZY: []}

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self._fields().items())
        lazy = sorted(k for keys, _ in self._pending() for k in keys)
        return f"Metadata({fields}{', lazy=' + repr(lazy) if lazy else ''})"


def _same(a: Any, b: Any) -> bool:
    """Equality that tolerates values (numpy arrays, tensors) whose ``==`` is not a bool."""
    if a is b:
        return True
    try:
        return bool(a == b)
    except Exception:
        return False


class _MetadataCatalog:
    """Maps dataset names to :class:`Metadata`; :meth:`get` creates missing entries."""

    def __init__(self) -> None:
        self._metas: dict[str, Metadata] = {}

    def get(self, name: str) -> Metadata:
        """Return the metadata of ``name``, creating an empty one on first use.

        Args:
            name: Dataset name (need not be registered in ``DatasetCatalog``, so metadata can
                be declared before or without the data).

        Returns:
            The (mutable, shared) :class:`Metadata` of ``name``.
        """
        if not isinstance(name, str) or not name:
            raise TypeError(f"Dataset name must be a non-empty str, got {name!r}.")
        meta = self._metas.get(name)
        if meta is None:
            meta = self._metas[name] = Metadata(name=name)
        return meta

    def list(self) -> list[str]:
        """Return the names that have metadata, in creation order."""
        return list(self._metas)

    def remove(self, name: str) -> None:
        """Drop the metadata of ``name`` (no error when absent: ``get`` creates lazily)."""
        self._metas.pop(name, None)

    def clear(self) -> None:
        """Drop all metadata."""
        self._metas.clear()

    def __contains__(self, name: object) -> bool:
        return name in self._metas

    def __repr__(self) -> str:
        return f"MetadataCatalog(names={self.list()})"


DatasetCatalog = _DatasetCatalog()
MetadataCatalog = _MetadataCatalog()
