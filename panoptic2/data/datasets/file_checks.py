"""Small helpers shared by the dataset readers: clear errors for missing or bad files.

Every message names the dataset (or, for an unregistered call, the annotation file) and
the offending file, so that a user can fix the data without a debugger.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from PIL import Image

try:  # parses the 100+ MB annotation files of COCO train several times faster than json
    import msgspec as _msgspec
except ImportError:  # pragma: no cover - depends on the environment
    _msgspec = None

SCHEMA_CHECKS = _msgspec is not None
"""Whether :func:`read_json` checks a ``schema`` (with msgspec); without, callers check."""

__all__ = [
    "DATASETS_README",
    "check_unique",
    "required",
    "dataset_label",
    "gc_paused",
    "unlisted_files",
    "read_image_size",
    "read_json",
    "require_dir",
    "require_file",
]

DATASETS_README = "datasets/README.md"


def dataset_label(dataset_name: str | None, fallback: str) -> str:
    """Returns ``"dataset 'NAME'"`` or, without a name, ``"dataset at 'FALLBACK'"``."""
    return f"dataset '{dataset_name}'" if dataset_name else f"dataset at '{fallback}'"


def require_file(path: str, what: str, where: str) -> None:
    """Raises ``FileNotFoundError`` naming ``path`` unless it is an existing file.

    Args:
        path: the expected file.
        what: what the file is, e.g. ``"panoptic PNG of image 139"``.
        where: the dataset label from :func:`dataset_label`.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"The {what} '{path}' of {where} does not exist. See {DATASETS_README} for the "
            "expected layout."
        )


def require_dir(path: str, what: str, where: str) -> None:
    """Raises ``FileNotFoundError`` naming ``path`` unless it is an existing directory."""
    if not os.path.isdir(path):
        raise FileNotFoundError(
            f"The {what} '{path}' of {where} does not exist. See {DATASETS_README} for the "
            "expected layout."
        )


def unlisted_files(folder: str, names: Iterable[str]) -> set[str]:
    """The ``names`` that are not files directly in ``folder`` (links to files count).

    One directory scan answers "does this file exist" for every file of a dataset: checking
    118k COCO images and 118k PNGs one ``stat`` at a time costs seconds, on network file
    systems minutes. Only the set of names is held, not the listing. A name with a folder
    part is never directly in ``folder``; callers check those one by one.

    Args:
        folder: an existing directory.
        names: file names relative to ``folder``.

    Returns:
        The names not found (empty when all exist).
    """
    remaining = set(names)
    if remaining:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name in remaining and entry.is_file():
                    remaining.discard(entry.name)
    return remaining


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pauses the cyclic garbage collector while a large object graph is built.

    Each collection walks every live container, and building millions of dicts and lists
    (1.3M segments of COCO train) triggers hundreds: with the collector running, parsing
    COCO train's panoptic JSON takes 3-4 times as long. Nothing built here is garbage.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def read_json(path: str, what: str, where: str, schema: Any = None) -> Any:
    """Reads a JSON file; a missing or malformed file raises an error naming it.

    Parsed by msgspec when it is installed (several times faster than ``json``, straight
    into Python objects, so the peak memory is the file plus its objects), else by ``json``,
    with the garbage collector paused (:func:`gc_paused`).

    Args:
        path: the JSON file.
        what: what the file is, e.g. ``"panoptic JSON"``.
        where: the dataset label from :func:`dataset_label`.
        schema: a type msgspec decodes into and checks (e.g. a ``TypedDict``; unknown
            fields are dropped); ignored without msgspec (see :data:`SCHEMA_CHECKS`).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not valid JSON, or does not match ``schema`` (the message
            gives the JSON path of the first mismatch, e.g. ``$.annotations[3]``).
    """
    require_file(path, what, where)
    with open(path, "rb") as f:
        data = f.read()
    try:
        with gc_paused():
            if _msgspec is None:
                return json.loads(data)
            if schema is None:
                return _msgspec.json.decode(data)
            return _msgspec.json.decode(data, type=schema)
    except ValueError as e:  # json.JSONDecodeError, msgspec.DecodeError / ValidationError
        if _msgspec is not None and isinstance(e, _msgspec.ValidationError):
            raise ValueError(f"The {what} '{path}' of {where} is malformed: {e}") from None
        raise ValueError(f"The {what} '{path}' of {where} is not valid JSON: {e}") from None


def required(entry: Mapping[str, Any], key: str, what: str) -> Any:
    """``entry[key]``, or a ``ValueError`` naming the entry when the field is missing.

    Args:
        entry: a JSON object (image, annotation, segment).
        key: the field.
        what: names the entry and its file, e.g. ``"segment 5 of annotation 'x.png' in ..."``.
    """
    try:
        return entry[key]
    except (KeyError, TypeError):
        raise ValueError(f"The {what} lacks the field '{key}'.") from None


def check_unique(
    items: Iterable[Any],
    key: Callable[[Any], Any],
    what: str,
    where: str,
    describe: Callable[[Any], str],
) -> None:
    """Raises ``ValueError`` naming both entries when two items share a key.

    Readers index images and annotations by id or file name; with a repeated key the later
    entry would silently replace the earlier one and pair an image with another's label.

    Args:
        items: the entries, in file order.
        key: the value that must be unique, e.g. ``lambda img: img["id"]``.
        what: what the key is, e.g. ``"image id"``.
        where: where the entries come from, e.g. ``"the 'images' list of 'x.json' (dataset
            'y')"``.
        describe: a short description of an entry for the message.
    """
    items = items if isinstance(items, list) else list(items)
    try:  # the common case, every key distinct, is settled by one set
        values = [key(item) for item in items]
        if len(set(values)) == len(values):
            return
    except TypeError:  # unhashable keys: compared by repr below
        pass
    seen: dict[Any, tuple[int, Any]] = {}
    for index, item in enumerate(items):
        value = key(item)
        try:
            hash(value)
        except TypeError:
            value = repr(value)
        if value in seen:
            first_index, first = seen[value]
            raise ValueError(
                f"{what} {value!r} appears twice in {where}: entry {first_index} "
                f"({describe(first)}) and entry {index} ({describe(item)})."
            )
        seen[value] = (index, item)


def read_image_size(path: str) -> tuple[int, int]:
    """Returns ``(height, width)`` of an image file from its header (no pixel decode)."""
    with Image.open(path) as img:
        return img.height, img.width
