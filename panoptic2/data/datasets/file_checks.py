"""Small helpers shared by the dataset readers: clear errors for missing or bad files.

Every message names the dataset (or, for an unregistered call, the annotation file) and
the offending file, so that a user can fix the data without a debugger.
"""

from __future__ import annotations

import json
import os
from typing import Any

from PIL import Image

__all__ = [
    "DATASETS_README",
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


def read_image_size(path: str) -> tuple[int, int]:
    """Returns ``(height, width)`` of an image file from its header (no pixel decode)."""
    with Image.open(path) as img:
        return img.height, img.width
