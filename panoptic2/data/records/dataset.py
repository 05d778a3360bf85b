"""Reading record shards in training and evaluation: map-style, streaming, and registered.

* :class:`RecordDataset` indexes every record once (headers only) and fetches record ``i``
  by seeking, so it works with the framework's samplers (sharding across ranks, exact resume).
* :class:`RecordStream` streams whole shards, split across ranks and DataLoader workers.
* :func:`register_records` puts a shard set in the :class:`DatasetCatalog`; its dicts carry
  ``record_file``/``record_offset`` and :func:`load_record_dict` decodes one of them, which is
  what a mapper calls first when it gets such a dict.
"""

from __future__ import annotations

import glob
import logging
import os
import re
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from torch.utils import data

from panoptic2.utils import comm

from ..catalog import DatasetCatalog, MetadataCatalog
from .example import parse_example
from .index import StaleIndexError, load_index_entries, scan_shard, stale_index_message
from .segmentation import decode_panoptic_record
from .tfrecord import index_record_files, read_record_at, read_record_file

logger = logging.getLogger(__name__)

__all__ = [
    "RecordDataset",
    "RecordStream",
    "expand_record_files",
    "load_record_dict",
    "load_record_dicts",
    "register_records",
]


def expand_record_files(file_pattern: str | Sequence[str]) -> list[str]:
    """Expands a glob pattern (or a list of patterns/files) into a sorted list of files.

    Raises:
        FileNotFoundError: nothing matches.
    """
    patterns = [file_pattern] if isinstance(file_pattern, str) else list(file_pattern)
    files = sorted(
        {f for p in patterns for f in (glob.glob(p) or ([p] if os.path.isfile(p) else []))}
    )
    if not files:
        raise FileNotFoundError(f"No record file matches {file_pattern!r}.")
    return files


def _decode(record: bytes, where: str) -> dict[str, Any]:
    return decode_panoptic_record(parse_example(record), where=where)


class RecordDataset(data.Dataset):
    """A map-style dataset over record shards: item ``i`` is the ``i``-th record decoded.

    The index (which file, which offset) is kept in two numpy arrays, so DataLoader
    workers share it without copy-on-read growth.

    Args:
        files: record files (or glob patterns), read in sorted order.
        decode: return :func:`~panoptic2.data.records.decode_panoptic_record` dicts;
            otherwise the raw serialized examples.
        verify: check CRCs when indexing and reading.
    """

    def __init__(self, files: str | Sequence[str], decode: bool = True, verify: bool = True):
        self._files = expand_record_files(files)
        index = index_record_files(self._files, verify=verify)
        file_ids = {f: i for i, f in enumerate(self._files)}
        self._file_idx = np.array([file_ids[f] for f, _ in index], dtype=np.int32)
        self._offsets = np.array([o for _, o in index], dtype=np.int64)
        self._decode = decode
        self._verify = verify

    def __len__(self) -> int:
        return len(self._offsets)

    def location(self, idx: int) -> tuple[str, int]:
        """Returns ``(file, offset)`` of record ``idx``."""
        return self._files[int(self._file_idx[idx])], int(self._offsets[idx])

    def __getitem__(self, idx: int) -> Any:
        if not -len(self) <= idx < len(self):
            raise IndexError(f"Record index {idx} out of range for {len(self)} records.")
        path, offset = self.location(idx)
        record = read_record_at(path, offset, verify=self._verify)
        return _decode(record, f"record file {path} at offset {offset}") if self._decode else record


class RecordStream(data.IterableDataset):
    """Streams records from shards, each record read by exactly one (rank, worker) reader.

    Readers are numbered ``rank * num_workers + worker_id``. With at least as many files
    as readers, reader ``r`` reads files ``r, r + R, ...`` (R readers; whole files, the
    efficient case). With fewer files, every reader scans all files and keeps the records
    whose running number is ``r`` modulo ``R``. Either way the readers' records are
    disjoint and together cover every record once per pass.

    Args:
        files: record files or glob patterns (sorted).
        decode: yield decoded dicts (else raw serialized examples).
        verify: check CRCs.
        rank: this process's rank (default: :func:`panoptic2.utils.comm.get_rank`).
        world_size: number of ranks (default: :func:`panoptic2.utils.comm.get_world_size`).
    """

    def __init__(
        self,
        files: str | Sequence[str],
        decode: bool = True,
        verify: bool = True,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        self._files = expand_record_files(files)
        self._decode = decode
        self._verify = verify
        self._rank = rank
        self._world_size = world_size

    def _reader(self) -> tuple[int, int]:
        rank = comm.get_rank() if self._rank is None else self._rank
        world = comm.get_world_size() if self._world_size is None else self._world_size
        info = data.get_worker_info()
        worker_id, num_workers = (info.id, info.num_workers) if info else (0, 1)
        return rank * num_workers + worker_id, world * num_workers

    def __iter__(self) -> Iterator[Any]:
        reader, num_readers = self._reader()
        whole_files = len(self._files) >= num_readers
        files = self._files[reader::num_readers] if whole_files else self._files
        count = 0
        for path in files:
            offset = 0
            for record in read_record_file(path, verify=self._verify):
                here = offset
                offset += len(record) + 16
                mine = whole_files or count % num_readers == reader
                count += 1
                if not mine:
                    continue
                yield (
                    _decode(record, f"record file {path} at offset {here}")
                    if self._decode
                    else record
                )


_SHARD_NAME = re.compile(r"(?P<split>.+)-\d{5,}-of-\d{5,}\.tfrecord")


def _split_groups(files: Sequence[str]) -> dict[tuple[str, str], list[str]]:
    """``(directory, split) -> shard paths`` for files named as DeepLab2 shards."""
    groups: dict[tuple[str, str], list[str]] = {}
    for path in files:
        match = _SHARD_NAME.fullmatch(os.path.basename(path))
        if match:
            groups.setdefault((os.path.dirname(path), match["split"]), []).append(path)
    return groups


def _indexed_entries(files: Sequence[str]) -> dict[str, list]:
    """Index entries of the shards whose split index is valid; warns for the others."""
    entries: dict[str, list] = {}
    for (directory, split), paths in _split_groups(files).items():
        try:
            entries.update(load_index_entries(directory, split, paths))
        except StaleIndexError as e:
            logger.warning(stale_index_message(e, directory, split))
    return entries


def load_record_dicts(file_pattern: str | Sequence[str], verify: bool = True) -> list[dict]:
    """Lists the records of a shard set as dataset dicts (without decoding pixels).

    Takes each record's place, name and size from the split's ``{split}.index.json``
    (:mod:`~panoptic2.data.records.index`), which the converters write, so no record is
    read. Shards without a valid index (none, or shards rewritten since) are read once
    instead, with a warning naming the fix; so are files not named like DeepLab2 shards.

    Args:
        file_pattern: glob pattern(s) or files of the shards.
        verify: check CRCs when records are read.

    Returns:
        One dict per record, in shard order: ``record_file``, ``record_offset``,
        ``image_id`` and ``file_name`` (the stored stem), ``height``, ``width``,
        ``has_label`` (bool).
    """
    files = expand_record_files(file_pattern)
    indexed = _indexed_entries(files)
    dicts = []
    for path in files:
        entries = indexed[path] if path in indexed else scan_shard(path, verify)
        for offset, stem, height, width, has_label in entries:
            dicts.append(
                {
                    "record_file": path,
                    "record_offset": offset,
                    "image_id": stem,
                    "file_name": stem,
                    "height": height,
                    "width": width,
                    "has_label": has_label,
                }
            )
    return dicts


def load_record_dict(dataset_dict: dict, verify: bool = True) -> dict:
    """Decodes the record a dataset dict points to (what a mapper calls first).

    Args:
        dataset_dict: a dict from :func:`load_record_dicts` (``record_file`` and
            ``record_offset`` keys); it is not modified.
        verify: check CRCs.

    Returns:
        A copy of the dict updated with the decoded record: ``image`` ``(H, W, 3) uint8``
        RGB, ``panoptic_label`` ``(H, W) int32`` or None, ``sem_seg`` ``(H, W) int32`` or
        None, ``image_id``, ``file_name``, ``height``, ``width``, ``label_format``.
    """
    path, offset = dataset_dict["record_file"], int(dataset_dict["record_offset"])
    record = read_record_at(path, offset, verify=verify)
    return {**dataset_dict, **_decode(record, f"record file {path} at offset {offset}")}


def register_records(
    name: str, file_pattern: str | Sequence[str], metadata: dict | None = None
) -> None:
    """Registers a shard set as a dataset whose dicts point into the records.

    Files are matched when the dataset is loaded, not now.

    Args:
        name: the dataset name.
        file_pattern: glob pattern(s) of the shards, e.g. ``".../val-*-of-*.tfrecord"``.
        metadata: metadata fields to set (``label_divisor``, ``ignore_label``, classes ...);
            ``record_files`` is added with ``file_pattern``.
    """
    DatasetCatalog.register(name, lambda: load_record_dicts(file_pattern))
    MetadataCatalog.get(name).set(record_files=file_pattern, **(metadata or {}))
