"""What a record shard set was converted from: the manifest written beside the shards.

Every converted split gets ``{split}.manifest.json`` in the output directory. The name is
outside the documented glob ``{split}-*.tfrecord``, so readers never take it for a shard.
It holds:

* ``format`` (the layout of this file), ``status`` (``incomplete`` while shards are being
  written, ``complete`` once all exist), ``split``, ``num_shards`` and ``num_records``;
* ``converter`` and ``converter_version``, bumped when the same inputs and flags give other
  records;
* ``settings``: the flags that change this split's records (label format, crowd handling,
  panoptic vs semantic). Flags that do not change them (``workers``, or every flag for an
  images-only ``test`` split) are left out, so changing them never refuses a rerun;
* ``skipped_missing``: the annotated images left out because their file is missing;
* ``inputs``: every file the records are made from (images, label PNGs, annotation JSON),
  by path relative to the dataset root, as ``[size, mtime_ns]``.

Two manifests match when all but ``status`` is equal; :func:`describe_changes` names what
differs. Size and modification time are cheap to read for 200k files; a copy that does not
keep modification times (``cp`` without ``-p``) therefore counts as changed inputs.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from panoptic2.utils.file_io import atomic_write

__all__ = [
    "MANIFEST_FORMAT",
    "OVERWRITE_HINT",
    "RecordsMismatchError",
    "describe_changes",
    "input_stats",
    "manifest_filename",
    "read_manifest",
    "relative_path",
    "resolve_missing_images",
    "skipped_summary",
    "write_manifest",
]

logger = logging.getLogger(__name__)

MANIFEST_FORMAT = 1
# Shown when a conversion refuses; both spellings, for the tools and for Python callers.
OVERWRITE_HINT = "pass --overwrite (overwrite=True)"
_MAX_LISTED = 5


class RecordsMismatchError(RuntimeError):
    """Records in the output directory were not written from these inputs and flags."""


def manifest_filename(split: str) -> str:
    """Returns the manifest's file name for ``split``: ``{split}.manifest.json``."""
    return f"{split}.manifest.json"


def relative_path(path: str, root: str) -> str:
    """Returns ``path`` relative to the dataset ``root``, with ``/`` separators."""
    return os.path.relpath(path, root).replace(os.sep, "/")


def input_stats(root: str, paths: Iterable[str], dataset: str) -> dict[str, list[int]]:
    """Describes input files by size and modification time.

    Args:
        root: the dataset root; keys are relative to it, with ``/`` separators.
        paths: the input files.
        dataset: names the dataset in errors.

    Returns:
        Sorted ``relative path -> [size, mtime_ns]``.

    Raises:
        FileNotFoundError: an input does not exist.
    """
    stats = {}
    for path in paths:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise FileNotFoundError(f"{dataset}: input file {path} does not exist.") from None
        stats[relative_path(path, root)] = [st.st_size, st.st_mtime_ns]
    return dict(sorted(stats.items()))


def read_manifest(path: str) -> dict[str, Any] | None:
    """Reads a manifest; None when the file does not exist.

    Raises:
        RecordsMismatchError: the file is not a JSON object (edited or damaged by hand;
            the converter writes it atomically).
    """
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RecordsMismatchError(
            f"Record manifest {path} is not valid JSON ({e}); the shards beside it cannot be "
            f"checked: {OVERWRITE_HINT} to convert again."
        ) from e
    if not isinstance(data, dict):
        raise RecordsMismatchError(
            f"Record manifest {path} holds a {type(data).__name__}, not a JSON object; "
            f"{OVERWRITE_HINT} to convert again."
        )
    return data


def _dumps(manifest: Mapping[str, Any]) -> str:
    """JSON with one line per key and per input (a flat dump of 200k inputs is unreadable)."""
    header = [
        f"  {json.dumps(k)}: {json.dumps(v, sort_keys=True)}"
        for k, v in manifest.items()
        if k != "inputs"
    ]
    inputs = manifest.get("inputs", {})
    body = ",\n".join(f"    {json.dumps(k)}: {json.dumps(v)}" for k, v in inputs.items())
    header.append('  "inputs": {' + (f"\n{body}\n  " if body else "") + "}")
    return "{\n" + ",\n".join(header) + "\n}\n"


def write_manifest(path: str, manifest: Mapping[str, Any]) -> None:
    """Writes a manifest atomically (``inputs`` last, one line each)."""
    atomic_write(path, lambda f: f.write(_dumps(manifest).encode("utf-8")))


def _show(value: Any) -> str:
    if value is None:
        return "(none)"
    return value if isinstance(value, str) else json.dumps(value)


def _show_mtime(ns: int) -> str:
    return datetime.datetime.fromtimestamp(ns / 1e9).isoformat(timespec="seconds")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _describe_inputs(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    changes = []
    changed = [p for p in new if p in old and list(old[p]) != list(new[p])]
    if changed:
        (old_size, old_mtime), (new_size, new_mtime) = old[changed[0]], new[changed[0]]
        if old_size != new_size:
            detail = f"size {old_size} -> {new_size}"
        elif _show_mtime(old_mtime) != _show_mtime(new_mtime):
            detail = f"modified {_show_mtime(old_mtime)} -> {_show_mtime(new_mtime)}"
        else:
            detail = f"mtime_ns {old_mtime} -> {new_mtime}"
        changes.append(
            f"{_plural(len(changed), 'input file')} changed, first: {changed[0]} ({detail})"
        )
    added = [p for p in new if p not in old]
    if added:
        changes.append(f"{_plural(len(added), 'input')} added, first: {added[0]}")
    removed = [p for p in old if p not in new]
    if removed:
        changes.append(f"{_plural(len(removed), 'input')} removed, first: {removed[0]}")
    return changes


def describe_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Names what differs between a stored manifest and a new one (``status`` aside).

    Args:
        old: the manifest found beside the shards.
        new: the manifest of this conversion.

    Returns:
        One line per difference, e.g. ``label_format: raw -> png16``, ``num_shards: 2 -> 4``
        or ``3 input files changed, first: val2017/x.jpg (size 1234 -> 1240)``; empty when
        they match.
    """
    changes = []
    old_settings, new_settings = old.get("settings") or {}, new.get("settings") or {}
    for key in dict.fromkeys([*new_settings, *old_settings]):
        if old_settings.get(key) != new_settings.get(key):
            changes.append(
                f"{key}: {_show(old_settings.get(key))} -> {_show(new_settings.get(key))}"
            )
    special = ("status", "settings", "skipped_missing", "inputs")
    for key in dict.fromkeys([*new, *old]):
        if key not in special and old.get(key) != new.get(key):
            changes.append(f"{key}: {_show(old.get(key))} -> {_show(new.get(key))}")
    old_skipped, new_skipped = old.get("skipped_missing") or [], new.get("skipped_missing") or []
    if old_skipped != new_skipped:
        changes.append(f"images skipped as missing: {len(old_skipped)} -> {len(new_skipped)}")
    changes += _describe_inputs(old.get("inputs") or {}, new.get("inputs") or {})
    return changes


def _listing(paths: Sequence[str]) -> str:
    more = len(paths) - _MAX_LISTED
    return ", ".join(paths[:_MAX_LISTED]) + (f" (+{more} more)" if more > 0 else "")


def resolve_missing_images(
    dataset: str,
    missing: Sequence[tuple[str, str]],
    num_annotated: int,
    skip_missing: bool,
) -> list[str]:
    """Fails on annotated images whose file is missing, or (``skip_missing``) warns.

    Args:
        dataset: names the dataset in messages.
        missing: ``(image path, the annotation that names it)`` of each missing image.
        num_annotated: how many images the annotations name.
        skip_missing: convert the other images instead of failing.

    Returns:
        The missing image paths (empty unless ``skip_missing``).

    Raises:
        FileNotFoundError: an image is missing and ``skip_missing`` is false.
    """
    if not missing:
        return []
    image, annotation = missing[0]
    count = f"{len(missing)} of {num_annotated} annotated images"
    if not skip_missing:
        raise FileNotFoundError(
            f"{dataset}: image {image} does not exist, but {annotation} refers to it ({count} "
            "are missing). Restore them, or pass --skip-missing (skip_missing=True) to convert "
            "the others."
        )
    images = [m[0] for m in missing]
    logger.warning("%s: skipping %s whose file is missing: %s", dataset, count, _listing(images))
    return images


def skipped_summary(dataset: str, skipped: Sequence[str], num_annotated: int) -> str:
    """The end-of-run line about skipped images, e.g. ``skipped 1 of 8 images whose ...``."""
    return (
        f"{dataset}: skipped {len(skipped)} of {num_annotated} images whose file is missing: "
        f"{_listing(skipped)}"
    )
