"""Writing sharded record files: DeepLab2 shard names and split, parallel, atomic, checked.

Items are split into ``num_shards`` contiguous chunks of ``ceil(len / num_shards)`` items, in
the given (sorted) order, exactly as DeepLab2's converters do; trailing shards may be empty
and are still written, so a set always holds ``num_shards`` files. Each shard is written to
a temp file and renamed when complete (:func:`panoptic2.utils.file_io.atomic_write`), so a
shard file that exists is complete.

Beside the shards, ``{split}.manifest.json`` records what they were made from (see
:mod:`panoptic2.data.records.manifest`). A run:

1. refuses with :class:`~panoptic2.data.records.manifest.RecordsMismatchError`, naming each
   difference, when the directory holds shards of the split that this run would not have
   written: its manifest differs from this run's, shards of another ``num_shards`` are
   there (the glob ``{split}-*.tfrecord`` would read both sets), or shards have no manifest.
   A manifest without any shard (a run killed before its first shard) is just replaced;
2. with ``overwrite=True`` instead first deletes the split's shards of any count, its
   manifest and its temp files;
3. writes the manifest marked ``incomplete``, then the shards that do not exist yet (after
   deleting temp files a killed run left), then the manifest marked ``complete``.

So a killed run, rerun with the same inputs and flags, reuses its complete shards and
writes the rest; rerun with other ones, it refuses. Only one converter may write into a
directory at a time.

With ``index_entry``, the split also gets ``{split}.index.json`` (see
:mod:`panoptic2.data.records.index`): deleted before any shard is written, written again
once the manifest is complete, from what the workers saw while writing (reused shards are
read once), so registering the shards never needs to read them.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tqdm import tqdm

from panoptic2.utils.file_io import atomic_write

from .index import (
    StaleIndexError,
    index_filename,
    load_index_entries,
    scan_shard,
    write_index,
)
from .manifest import (
    MANIFEST_FORMAT,
    OVERWRITE_HINT,
    RecordsMismatchError,
    describe_changes,
    manifest_filename,
    read_manifest,
    write_manifest,
)
from .tfrecord import write_record

__all__ = [
    "find_shard_sets",
    "remove_split_records",
    "shard_filename",
    "shard_ranges",
    "write_sharded_records",
]

logger = logging.getLogger(__name__)


def shard_filename(split: str, shard_id: int, num_shards: int) -> str:
    """Returns DeepLab2's shard name ``{split}-{shard_id:05d}-of-{num_shards:05d}.tfrecord``."""
    return f"{split}-{shard_id:05d}-of-{num_shards:05d}.tfrecord"


def shard_ranges(num_items: int, num_shards: int) -> list[tuple[int, int]]:
    """Splits ``range(num_items)`` into DeepLab2's contiguous shards.

    Args:
        num_items: number of items.
        num_shards: number of shards (positive).

    Returns:
        ``num_shards`` half-open ``(start, end)`` ranges of ``ceil(num_items / num_shards)``
        items each (the last ones shorter or empty).
    """
    if num_shards <= 0:
        raise ValueError(f"num_shards must be positive, got {num_shards}.")
    per_shard = math.ceil(num_items / num_shards)
    return [
        (min(i * per_shard, num_items), min((i + 1) * per_shard, num_items))
        for i in range(num_shards)
    ]


def _write_shard(
    task: tuple[str, Sequence[Any], Callable[[Any], bytes], Callable[[bytes], list] | None],
) -> tuple[str, list[list[Any]]]:
    """Writes one shard (runs in a worker process); returns it and its index entries
    (``[offset, *index_entry(example)]`` per record; empty without ``index_entry``)."""
    path, items, example_fn, index_entry = task
    entries: list[list[Any]] = []

    def write(f):
        offset = 0
        for item in items:
            example = example_fn(item)
            write_record(f, example)
            if index_entry is not None:
                entries.append([offset, *index_entry(example)])
            offset += len(example) + 16  # the record's 12-byte header and 4-byte footer

    atomic_write(path, write)
    return path, entries


def _shard_regex(split: str) -> str:
    return rf"{re.escape(split)}-\d{{5,}}-of-(\d{{5,}})\.tfrecord"


def find_shard_sets(output_dir: str, split: str) -> dict[int, list[str]]:
    """Finds the split's shard files of every shard count.

    Args:
        output_dir: the directory to look in (may not exist).
        split: the split name.

    Returns:
        Shard count -> the sorted file names of that set (possibly incomplete).
    """
    if not os.path.isdir(output_dir):
        return {}
    pattern = re.compile(_shard_regex(split))
    sets: dict[int, list[str]] = {}
    for name in sorted(os.listdir(output_dir)):
        match = pattern.fullmatch(name)
        if match:
            sets.setdefault(int(match.group(1)), []).append(name)
    return sets


def _remove_temp_files(output_dir: str, split: str) -> None:
    """Deletes the split's temp files (atomic_write's naming) that a killed run left."""
    names = f"(?:{_shard_regex(split)}|{re.escape(manifest_filename(split))})"
    pattern = re.compile(rf"\.{names}\.[0-9a-f]+\.tmp")
    for name in sorted(os.listdir(output_dir)):
        if pattern.fullmatch(name):
            logger.info("Removing incomplete file %s left by an interrupted run.", name)
            os.remove(os.path.join(output_dir, name))


def remove_split_records(output_dir: str, split: str) -> list[str]:
    """Deletes the split's shards of any shard count, its manifest and its temp files.

    Args:
        output_dir: the records directory.
        split: the split name.

    Returns:
        The names of the shards and manifest deleted.
    """
    if not os.path.isdir(output_dir):
        return []
    _remove_temp_files(output_dir, split)
    names = [n for names in find_shard_sets(output_dir, split).values() for n in names]
    for name in (manifest_filename(split), index_filename(split)):
        if os.path.exists(os.path.join(output_dir, name)):
            names.append(name)
    for name in names:
        os.remove(os.path.join(output_dir, name))
    return names


def _check_existing(output_dir: str, split: str, new: Mapping[str, Any]) -> dict[str, Any] | None:
    """Returns the stored manifest when it and the split's shards match ``new``.

    Raises:
        RecordsMismatchError: shards are there that this run would not have written.
    """
    sets = find_shard_sets(output_dir, split)
    old = read_manifest(os.path.join(output_dir, manifest_filename(split)))
    if not sets:
        if old is not None and describe_changes(old, new):
            # Nothing was written under the old manifest, so nothing stale can be mixed in.
            logger.info("%s: replacing a manifest that has no shards in %s.", split, output_dir)
            return None
        return old
    problems = []
    if old is None:
        count = sum(len(names) for names in sets.values())
        problems.append(
            f"{count} shard file{'s' if count != 1 else ''} but no manifest "
            f"{manifest_filename(split)} (written by an older converter, or the manifest was "
            "removed), so they cannot be checked"
        )
    else:
        problems += describe_changes(old, new)
    for count, names in sorted(sets.items()):
        if count != new["num_shards"]:
            problems.append(
                f"another shard set is there: {split}-*-of-{count:05d}.tfrecord "
                f"({len(names)} files), which the glob {split}-*.tfrecord would read too"
            )
    if problems:
        raise RecordsMismatchError(
            f"{split} records in {output_dir} do not match this conversion: "
            f"{'; '.join(problems)}. Reusing them would mix records of other inputs or flags; "
            f"{OVERWRITE_HINT} to delete the split's shards and convert again, or write to "
            "another directory."
        )
    return old


def write_sharded_records(
    output_dir: str,
    split: str,
    items: Sequence[Any],
    example_fn: Callable[[Any], bytes],
    num_shards: int,
    workers: int = 1,
    *,
    manifest: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    index_entry: Callable[[bytes], list] | None = None,
) -> list[str]:
    """Writes ``items`` as ``num_shards`` record files ``{split}-*-of-*.tfrecord``.

    Complete shards of an earlier run are reused only when its manifest equals this run's;
    see the module docstring.

    Args:
        output_dir: destination directory (created if missing).
        split: the split name used in shard names.
        items: the items in record order; must be picklable when ``workers > 1``.
        example_fn: item -> serialized example bytes; a module-level function (or a
            ``functools.partial`` of one) when ``workers > 1``.
        num_shards: number of shard files.
        workers: processes converting shards in parallel (1: in this process).
        manifest: what determines the records besides their number and split:
            ``converter``, ``converter_version``, ``settings``, ``inputs``... (see
            :mod:`~panoptic2.data.records.manifest`). Without it only the shard and record
            counts are checked on a rerun.
        overwrite: delete the split's shards (of any shard count) and manifest first.
        index_entry: example bytes -> what the index keeps of it (see
            :func:`~panoptic2.data.records.index.index_entry`); when given, the split's
            ``{split}.index.json`` is written once all shards are complete (a module-level
            function when ``workers > 1``).

    Returns:
        The paths of all ``num_shards`` shard files, in shard order.

    Raises:
        RecordsMismatchError: the directory holds shards of the split that this run would
            not have written, and ``overwrite`` is false.
    """
    ranges = shard_ranges(len(items), num_shards)
    os.makedirs(output_dir, exist_ok=True)
    new = {
        "format": MANIFEST_FORMAT,
        "status": "incomplete",
        "split": split,
        "num_shards": num_shards,
        "num_records": len(items),
        **(manifest or {}),
    }
    manifest_path = os.path.join(output_dir, manifest_filename(split))
    if overwrite:
        removed = remove_split_records(output_dir, split)
        if removed:
            logger.info(
                "%s: overwrite: deleted %d old files in %s.", split, len(removed), output_dir
            )
        old = None
    else:
        old = _check_existing(output_dir, split, new)
        _remove_temp_files(output_dir, split)
    paths, tasks = [], []
    for shard_id, (start, end) in enumerate(ranges):
        path = os.path.join(output_dir, shard_filename(split, shard_id, num_shards))
        paths.append(path)
        if not os.path.exists(path):
            tasks.append((path, items[start:end], example_fn, index_entry))
    reused = num_shards - len(tasks)
    if reused:
        logger.info(
            "%s: %d of %d shards already complete and their manifest matches; reusing them.",
            split,
            reused,
            num_shards,
        )
    if tasks:
        # An index describes the shards it was written with: gone before any shard changes.
        index_path = os.path.join(output_dir, index_filename(split))
        if os.path.exists(index_path):
            os.remove(index_path)
    if tasks and (old is None or old.get("status") == "complete"):
        write_manifest(manifest_path, new)
    desc = f"{split} shards"
    written: dict[str, list[list[Any]]] = {}
    if workers <= 1 or len(tasks) <= 1:
        for task in tqdm(tasks, desc=desc, unit="shard"):
            path, entries = _write_shard(task)
            written[path] = entries
    else:
        with multiprocessing.get_context().Pool(min(workers, len(tasks))) as pool:
            done = pool.imap_unordered(_write_shard, tasks)
            for path, entries in tqdm(done, total=len(tasks), desc=desc, unit="shard"):
                written[path] = entries
    if tasks or old is None or old.get("status") != "complete":
        write_manifest(manifest_path, {**new, "status": "complete"})
    if index_entry is not None:
        _write_index(output_dir, split, paths, written)
    return paths


def _write_index(
    output_dir: str, split: str, paths: Sequence[str], written: Mapping[str, list[list[Any]]]
) -> None:
    """Writes the split's index unless a valid one exists; reused shards are read once."""
    if not written:
        try:
            load_index_entries(output_dir, split, paths)
            return
        except StaleIndexError:
            pass
    shards = []
    for path in paths:
        entries = written[path] if path in written else scan_shard(path)
        shards.append((os.path.basename(path), entries))
    write_index(output_dir, split, shards)
