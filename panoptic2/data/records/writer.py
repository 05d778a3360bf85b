"""Writing sharded record files: DeepLab2 shard names and split, parallel, atomic, resumable.

Items are split into ``num_shards`` contiguous chunks of ``ceil(len / num_shards)`` items, in
the given (sorted) order, exactly as DeepLab2's converters do; trailing shards may be empty
and are still written, so a set always holds ``num_shards`` files. Each shard is written to
a temp file and renamed when complete (:func:`panoptic2.utils.file_io.atomic_write`), so a
shard file that exists is complete. A rerun skips existing shards and first deletes temp
files that a killed run left behind. Only one converter may write into a directory at a
time.
"""

from __future__ import annotations

import glob
import logging
import math
import multiprocessing
import os
from collections.abc import Callable, Sequence
from typing import Any

from tqdm import tqdm

from panoptic2.utils.file_io import atomic_write

from .tfrecord import write_record

__all__ = ["shard_filename", "shard_ranges", "write_sharded_records"]

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


def _write_shard(task: tuple[str, Sequence[Any], Callable[[Any], bytes]]) -> str:
    """Writes one shard (runs in a worker process)."""
    path, items, example_fn = task

    def write(f):
        for item in items:
            write_record(f, example_fn(item))

    atomic_write(path, write)
    return path


def _remove_leftovers(path: str) -> None:
    """Deletes temp files of ``path`` left by a killed run (atomic_write's naming)."""
    dirname, basename = os.path.split(path)
    for tmp in glob.glob(os.path.join(glob.escape(dirname), f".{glob.escape(basename)}.*.tmp")):
        logger.info("Removing incomplete shard %s left by an interrupted run.", tmp)
        os.remove(tmp)


def write_sharded_records(
    output_dir: str,
    split: str,
    items: Sequence[Any],
    example_fn: Callable[[Any], bytes],
    num_shards: int,
    workers: int = 1,
    resume: bool = True,
) -> list[str]:
    """Writes ``items`` as ``num_shards`` record files ``{split}-*-of-*.tfrecord``.

    Args:
        output_dir: destination directory (created if missing).
        split: the split name used in shard names.
        items: the items in record order; must be picklable when ``workers > 1``.
        example_fn: item -> serialized example bytes; a module-level function (or a
            ``functools.partial`` of one) when ``workers > 1``.
        num_shards: number of shard files.
        workers: processes converting shards in parallel (1: in this process).
        resume: skip shards whose file already exists (complete by construction);
            otherwise rewrite every shard.

    Returns:
        The paths of all ``num_shards`` shard files, in shard order.
    """
    os.makedirs(output_dir, exist_ok=True)
    paths, tasks = [], []
    for shard_id, (start, end) in enumerate(shard_ranges(len(items), num_shards)):
        path = os.path.join(output_dir, shard_filename(split, shard_id, num_shards))
        paths.append(path)
        _remove_leftovers(path)
        if resume and os.path.exists(path):
            continue
        tasks.append((path, items[start:end], example_fn))
    skipped = num_shards - len(tasks)
    if skipped:
        logger.info(
            "%s: %d of %d shards already complete; skipping them.", split, skipped, num_shards
        )
    desc = f"{split} shards"
    if workers <= 1 or len(tasks) <= 1:
        for task in tqdm(tasks, desc=desc, unit="shard"):
            _write_shard(task)
    else:
        with multiprocessing.get_context().Pool(min(workers, len(tasks))) as pool:
            done = pool.imap_unordered(_write_shard, tasks)
            for _ in tqdm(done, total=len(tasks), desc=desc, unit="shard"):
                pass
    return paths
