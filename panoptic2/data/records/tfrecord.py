"""TFRecord framing: write, read, verify and index records without TensorFlow.

A TFRecord file is a plain concatenation of records, each framed as::

    uint64 length            (little endian)
    uint32 masked_crc32c(length bytes)
    byte   data[length]
    uint32 masked_crc32c(data)

``masked_crc32c(x) = ((c >> 15) | (c << 17)) + 0xA282EAD8 (mod 2**32)`` with ``c`` the CRC32C
(Castagnoli) of ``x``. The mask keeps a CRC of data that itself contains CRCs from looking
like one. This module is the whole codec; :mod:`.example` encodes the payloads.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator, Sequence
from typing import BinaryIO

import crc32c

__all__ = [
    "RecordError",
    "encode_record",
    "index_record_files",
    "masked_crc32c",
    "read_record_at",
    "read_record_file",
    "write_record",
]

_MASK_DELTA = 0xA282EAD8
_HEADER = struct.Struct("<QI")  # length, masked CRC of the 8 length bytes
_FOOTER = struct.Struct("<I")  # masked CRC of the data


class RecordError(ValueError):
    """A record file is truncated or fails its CRC check."""


def masked_crc32c(data: bytes) -> int:
    """Returns TFRecord's masked CRC32C of ``data``.

    Args:
        data: the bytes to checksum.

    Returns:
        The masked checksum, an int in ``[0, 2**32)``.
    """
    crc = crc32c.crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def encode_record(data: bytes) -> bytes:
    """Frames one payload as a TFRecord record (header, data, footer).

    Args:
        data: the payload, usually a serialized ``tf.train.Example``.

    Returns:
        The framed bytes, ``len(data) + 16`` long.
    """
    length = struct.pack("<Q", len(data))
    return (
        length
        + struct.pack("<I", masked_crc32c(length))
        + bytes(data)
        + _FOOTER.pack(masked_crc32c(data))
    )


def write_record(f: BinaryIO, data: bytes) -> None:
    """Appends one framed record to an open binary file."""
    f.write(encode_record(data))


def _read_header(f: BinaryIO, path: str, offset: int, verify: bool) -> int | None:
    """Reads the record header at the current position; None at a clean end of file."""
    header = f.read(_HEADER.size)
    if not header:
        return None
    if len(header) < _HEADER.size:
        raise RecordError(
            f"Record file {path}: truncated record header at offset {offset} "
            f"({len(header)} of {_HEADER.size} bytes)."
        )
    length, length_crc = _HEADER.unpack(header)
    if verify and masked_crc32c(header[:8]) != length_crc:
        raise RecordError(
            f"Record file {path}: corrupt record length at offset {offset} (CRC mismatch)."
        )
    return length


def _read_payload(f: BinaryIO, path: str, offset: int, length: int, verify: bool) -> bytes:
    """Reads the data and footer of a record whose header was just read."""
    body = f.read(length + _FOOTER.size)
    if len(body) < length + _FOOTER.size:
        raise RecordError(
            f"Record file {path}: truncated record at offset {offset} (expected "
            f"{length} data bytes + CRC, got {len(body)} bytes)."
        )
    data = body[:length]
    if verify and masked_crc32c(data) != _FOOTER.unpack(body[length:])[0]:
        raise RecordError(
            f"Record file {path}: corrupt record data at offset {offset} (CRC mismatch)."
        )
    return data


def read_record_file(path: str, verify: bool = True) -> Iterator[bytes]:
    """Yields the payloads of a TFRecord file in order.

    Args:
        path: a local record file (uncompressed, as DeepLab2 writes them).
        verify: check both CRCs of every record.

    Yields:
        Each record's data.

    Raises:
        RecordError: a record is truncated or a CRC does not match; the message names the
            file and the record's byte offset.
    """
    with open(path, "rb") as f:
        offset = 0
        while True:
            length = _read_header(f, path, offset, verify)
            if length is None:
                return
            yield _read_payload(f, path, offset, length, verify)
            offset += _HEADER.size + length + _FOOTER.size


def read_record_at(path: str, offset: int, verify: bool = True, f: BinaryIO | None = None) -> bytes:
    """Reads the single record starting at byte ``offset`` of ``path``.

    Args:
        path: the record file (named in errors; opened unless ``f`` is given).
        offset: the record's start, as returned by :func:`index_record_files`.
        verify: check both CRCs.
        f: an already open binary handle on ``path`` (saves an ``open`` per record).

    Returns:
        The record's data.

    Raises:
        RecordError: nothing, a truncated record or a CRC mismatch at ``offset``.
    """
    if f is None:
        with open(path, "rb") as handle:
            return read_record_at(path, offset, verify, handle)
    f.seek(offset)
    length = _read_header(f, path, offset, verify)
    if length is None:
        raise RecordError(f"Record file {path}: no record at offset {offset} (end of file).")
    return _read_payload(f, path, offset, length, verify)


def index_record_files(files: Sequence[str], verify: bool = True) -> list[tuple[str, int]]:
    """Lists where every record starts, reading only the 12-byte headers.

    One cheap pass (a seek per record) that lets a map-style dataset fetch record ``i`` by
    seeking, so samplers can shard and resume exactly as with in-memory datasets.

    Args:
        files: record files, in the order their records should be numbered.
        verify: check each header's length CRC and that the data fits in the file.

    Returns:
        ``(file, offset)`` of each record, file by file, in file order.

    Raises:
        RecordError: a header is truncated or corrupt, or a record runs past the end of
            its file; the message names the file and offset.
    """
    index: list[tuple[str, int]] = []
    for path in files:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            offset = 0
            while True:
                length = _read_header(f, path, offset, verify)
                if length is None:
                    break
                end = offset + _HEADER.size + length + _FOOTER.size
                if end > size:
                    raise RecordError(
                        f"Record file {path}: truncated record at offset {offset} (it "
                        f"needs {end - offset} bytes, the file has {size - offset} left)."
                    )
                index.append((path, offset))
                offset = end
                f.seek(offset)
    return index
