"""Small helpers shared by the dataset readers: clear errors for missing or bad files.

Every message names the dataset (or, for an unregistered call, the annotation file) and
the offending file, so that a user can fix the data without a debugger.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from PIL import Image

__all__ = [
    "DATASETS_README",
    "check_unique",
    "required",
    "dataset_label",
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


def read_json(path: str, what: str, where: str) -> Any:
    """Reads a JSON file; a missing or malformed file raises an error naming it."""
    require_file(path, what, where)
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"The {what} '{path}' of {where} is not valid JSON: {e}") from e


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
