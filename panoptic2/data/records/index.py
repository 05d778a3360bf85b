"""The record index written beside a split's shards: where each record is and what it is.

Registering a shard set (:func:`~panoptic2.data.records.load_record_dicts`) needs, for every
record, its shard and byte offset and the image's name and size. Without an index that means
reading every record once (the whole dataset: ~20 GB for COCO train) before the first
training step. The converters therefore write ``{split}.index.json`` next to
``{split}.manifest.json`` (outside the shard glob ``{split}-*.tfrecord``)::

    {"format": 1, "split": "val", "manifest_sha256": "...",
     "shards": [["val-00000-of-00002.tfrecord", size_in_bytes, num_records], ...],
     "records": [[shard, offset, "image stem", height, width, has_label], ...]}

An index is trusted only while it describes the shards on disk: the manifest's SHA-256 must
be the one the index was made with (a new conversion rewrites the manifest, and the converter
deletes the index before it writes any shard) and every shard must have the recorded size.
Otherwise, or without an index, :func:`load_index_entries` says why and
:func:`~panoptic2.data.records.load_record_dicts` falls back to reading the records, with a
warning that names the fix: ``tools/index_records.py`` (or :func:`write_split_index`) indexes
existing shards, ``--overwrite`` converts again.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from typing import Any

from panoptic2.utils.file_io import atomic_write

from .example import parse_example
from .manifest import manifest_filename
from .segmentation import KEY_ENCODED_LABEL, KEY_IMAGE_FILENAME, KEY_IMAGE_HEIGHT, KEY_IMAGE_WIDTH
from .tfrecord import read_record_file

__all__ = [
    "INDEX_FORMAT",
    "StaleIndexError",
    "index_entry",
    "index_filename",
    "load_index_entries",
    "scan_shard",
    "stale_index_message",
    "write_index",
    "write_split_index",
]

INDEX_FORMAT = 1
_FRAMING = 16  # TFRecord header (12 bytes) + footer (4 bytes) around each payload


class StaleIndexError(RuntimeError):
    """An index that does not describe the shards on disk (or is missing or unreadable)."""


def index_filename(split: str) -> str:
    """Returns the index's file name for ``split``: ``{split}.index.json``."""
    return f"{split}.index.json"


def index_entry(example: bytes) -> list[Any]:
    """What the index keeps of one serialized segmentation example.

    Args:
        example: a ``tf.train.Example`` as the converters write it.

    Returns:
        ``[image stem, height, width, has_label]``.
    """
    features = parse_example(example)
    return [
        features[KEY_IMAGE_FILENAME][0].decode(),
        int(features[KEY_IMAGE_HEIGHT][0]),
        int(features[KEY_IMAGE_WIDTH][0]),
        bool(features.get(KEY_ENCODED_LABEL)),
    ]


def scan_shard(path: str, verify: bool = True) -> list[list[Any]]:
    """Reads a shard and returns ``[offset, *index_entry]`` of each record, in order."""
    entries, offset = [], 0
    for record in read_record_file(path, verify=verify):
        entries.append([offset, *index_entry(record)])
        offset += len(record) + _FRAMING
    return entries


def _manifest_digest(records_dir: str, split: str) -> str | None:
    try:
        with open(os.path.join(records_dir, manifest_filename(split)), "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except FileNotFoundError:
        return None


def write_index(
    records_dir: str, split: str, shards: Sequence[tuple[str, Sequence[Sequence[Any]]]]
) -> str:
    """Writes ``{split}.index.json`` (atomically) for shards that are complete on disk.

    Args:
        records_dir: the directory of the shards and of the split's manifest.
        split: the split name.
        shards: ``(shard file name, [[offset, stem, height, width, has_label], ...])`` in
            shard order.

    Returns:
        The index's path.

    Raises:
        StaleIndexError: the split has no manifest to tie the index to.
    """
    digest = _manifest_digest(records_dir, split)
    if digest is None:
        raise StaleIndexError(
            f"{split} records in {records_dir} have no {manifest_filename(split)}; an index "
            "can only be written for shards with a manifest (convert them again with "
            "--overwrite)."
        )
    shard_rows, record_rows = [], []
    for number, (name, entries) in enumerate(shards):
        size = os.path.getsize(os.path.join(records_dir, name))
        shard_rows.append([name, size, len(entries)])
        record_rows += [[number, *entry] for entry in entries]
    # The JSON object of the module docstring, one line per shard and per record: readable, and diffs stay small.
    lines = [
        f'{{"format": {INDEX_FORMAT}, "split": {json.dumps(split)}, "manifest_sha256": "{digest}",',
        ' "shards": [' + ",\n  ".join(json.dumps(row) for row in shard_rows) + "],",
        ' "records": [' + ",\n  ".join(json.dumps(row) for row in record_rows) + "]}\n",
    ]
    path = os.path.join(records_dir, index_filename(split))
    atomic_write(path, lambda f: f.write("\n".join(lines).encode("utf-8")))
    return path


def write_split_index(records_dir: str, split: str, verify: bool = True) -> str:
    """Indexes a split's existing shards by reading them once (what ``tools/index_records.py``
    runs for shards converted without an index).

    Args:
        records_dir: the directory of the shards and their manifest.
        split: the split name.
        verify: check CRCs while reading.

    Returns:
        The index's path.

    Raises:
        FileNotFoundError: no shard of the split in ``records_dir``.
        StaleIndexError: the split has no manifest, or shards of several shard counts.
    """
    from .writer import find_shard_sets

    sets = find_shard_sets(records_dir, split)
    if not sets:
        raise FileNotFoundError(f"No {split}-*.tfrecord shards in {records_dir}.")
    if len(sets) > 1:
        raise StaleIndexError(
            f"{records_dir} holds {split} shards of several shard counts {sorted(sets)}; "
            "convert again with --overwrite."
        )
    if _manifest_digest(records_dir, split) is None:
        raise StaleIndexError(
            f"{split} records in {records_dir} have no {manifest_filename(split)}, so they "
            "cannot be checked; convert them again with --overwrite."
        )
    (names,) = sets.values()
    shards = [(name, scan_shard(os.path.join(records_dir, name), verify)) for name in names]
    return write_index(records_dir, split, shards)


def _fix(records_dir: str, split: str) -> str:
    return (
        f"index them with `python tools/index_records.py --records_dir {records_dir} "
        f"--split {split}`, or convert again with --overwrite"
    )


def load_index_entries(records_dir: str, split: str, files: Sequence[str]) -> dict[str, list]:
    """The index's entries of ``files``, after checking that it describes them.

    Args:
        records_dir: the directory of the shards.
        split: the split the shards belong to.
        files: shard paths in ``records_dir`` (any subset of the split's shards).

    Returns:
        Shard path -> ``[[offset, stem, height, width, has_label], ...]``.

    Raises:
        StaleIndexError: no index, an unreadable one, or one that does not describe the
            shards on disk (the message says what differs and how to fix it).
    """
    path = os.path.join(records_dir, index_filename(split))
    try:
        with open(path, "rb") as f:
            index = json.loads(f.read())
    except FileNotFoundError:
        raise StaleIndexError(f"{split} records in {records_dir} have no {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise StaleIndexError(f"{path} is not valid JSON ({e})") from None
    if not isinstance(index, dict) or index.get("format") != INDEX_FORMAT:
        raise StaleIndexError(f"{path} is not a format-{INDEX_FORMAT} record index")
    if index.get("manifest_sha256") != _manifest_digest(records_dir, split):
        raise StaleIndexError(
            f"{path} was written for another {manifest_filename(split)} (the shards were "
            "converted again since)"
        )
    by_name = {row[0]: (number, row) for number, row in enumerate(index["shards"])}
    wanted: dict[int, str] = {}
    for file in files:
        name = os.path.basename(file)
        if name not in by_name:
            raise StaleIndexError(f"{path} does not list the shard {name}")
        number, (_, size, _) = by_name[name]
        actual = os.path.getsize(file)
        if actual != size:
            raise StaleIndexError(
                f"{path} gives {name} {size} bytes, but it has {actual} (rewritten since)"
            )
        wanted[number] = file
    entries: dict[str, list] = {file: [] for file in wanted.values()}
    for number, *entry in index["records"]:
        if number in wanted:
            entries[wanted[number]].append(entry)
    for number, file in wanted.items():
        expected = index["shards"][number][2]
        if len(entries[file]) != expected:
            raise StaleIndexError(
                f"{path} lists {len(entries[file])} records of {os.path.basename(file)}, "
                f"its shard table {expected}"
            )
    return entries


def stale_index_message(error: StaleIndexError, records_dir: str, split: str) -> str:
    """The warning of a fallback to reading every record: the reason and the fix."""
    return f"{error}; reading every record instead (slow at scale): {_fix(records_dir, split)}."
