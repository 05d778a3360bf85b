"""Tests of panoptic2/data/records/tfrecord.py: framing, CRCs, errors, indexing.

The byte-level test decodes a converter's shard with a decoder written here from the
TFRecord spec and the protobuf wire format, independent of the package's codec.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import crc32c
import numpy as np
import pytest

from panoptic2.data.records import (
    RecordError,
    convert_coco_dataset,
    encode_record,
    index_record_files,
    masked_crc32c,
    read_record_at,
    read_record_file,
)

from .fixtures import make_coco_fixture


def _mask(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _spec_records(blob: bytes) -> list[bytes]:
    """TFRecord framing from the spec: u64 len, masked crc(len), data, masked crc(data)."""
    out, pos = [], 0
    while pos < len(blob):
        (length,) = struct.unpack_from("<Q", blob, pos)
        (len_crc,) = struct.unpack_from("<I", blob, pos + 8)
        assert len_crc == _mask(crc32c.crc32c(blob[pos : pos + 8]))
        data = blob[pos + 12 : pos + 12 + length]
        (data_crc,) = struct.unpack_from("<I", blob, pos + 12 + length)
        assert data_crc == _mask(crc32c.crc32c(data))
        out.append(data)
        pos += 16 + length
    assert pos == len(blob)
    return out


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return value, pos


def _len_fields(buf: bytes) -> list[tuple[int, bytes]]:
    """(field number, payload) of every length-delimited field of a message."""
    out, pos = [], 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        assert key & 7 == 2, f"expected a LEN field, got wire type {key & 7}"
        n, pos = _varint(buf, pos)
        out.append((key >> 3, buf[pos : pos + n]))
        pos += n
    return out


def _spec_example(data: bytes) -> dict[str, tuple[str, list]]:
    """Example{Features features=1}; Features{map<string,Feature> feature=1};
    Feature{bytes_list=1 | float_list=2 | int64_list=3}, int64 packed varints."""
    ((field, features),) = _len_fields(data)
    assert field == 1
    out = {}
    for entry_field, entry in _len_fields(features):
        assert entry_field == 1
        parts = dict(_len_fields(entry))
        key = parts[1].decode()
        ((kind, lst),) = _len_fields(parts[2])
        if kind == 1:
            out[key] = ("bytes", [v for f, v in _len_fields(lst) if f == 1])
        elif kind == 3:
            ((f, packed),) = _len_fields(lst)
            values, pos = [], 0
            while pos < len(packed):
                v, pos = _varint(packed, pos)
                values.append(v)
            out[key] = ("int64", values)
        else:
            raise AssertionError(f"unexpected feature kind {kind}")
    return out


def test_masked_crc_matches_spec():
    for data in (b"", b"a", b"123456789", bytes(range(256))):
        assert masked_crc32c(data) == _mask(crc32c.crc32c(data))
    # Known CRC32C check value of "123456789".
    assert crc32c.crc32c(b"123456789") == 0xE3069283


def test_converter_shard_parses_with_independent_decoder(tmp_path):
    root = make_coco_fixture(str(tmp_path / "coco"), num_train=1, num_val=2)
    out = str(tmp_path / "rec")
    convert_coco_dataset(root, out, splits=["val"], num_shards=1)
    with open(os.path.join(out, "val-00000-of-00001.tfrecord"), "rb") as f:
        records = _spec_records(f.read())
    assert len(records) == 2
    stems = sorted(os.listdir(os.path.join(root, "val2017")))
    for record, stem in zip(records, stems):
        ex = _spec_example(record)
        assert set(ex) == {
            "image/encoded",
            "image/filename",
            "image/format",
            "image/height",
            "image/width",
            "image/channels",
            "image/segmentation/class/encoded",
            "image/segmentation/class/format",
        }
        assert ex["image/filename"] == ("bytes", [stem[: -len(".jpg")].encode()])
        assert ex["image/format"] == ("bytes", [b"jpeg"])
        assert ex["image/height"] == ("int64", [12])
        assert ex["image/width"] == ("int64", [10])
        assert ex["image/channels"] == ("int64", [3])
        assert ex["image/segmentation/class/format"] == ("bytes", [b"raw"])
        (label,) = ex["image/segmentation/class/encoded"][1]
        assert len(label) == 12 * 10 * 4
        (image,) = ex["image/encoded"][1]
        assert image[:2] == b"\xff\xd8"  # a JPEG
    # The second val image is RGB: its original bytes are stored unchanged.
    with open(os.path.join(root, "val2017", stems[1]), "rb") as f:
        assert _spec_example(records[1])["image/encoded"][1][0] == f.read()


def _write(path, payloads):
    with open(path, "wb") as f:
        for p in payloads:
            f.write(encode_record(p))


def test_read_and_index(tmp_path):
    a, b = str(tmp_path / "a.tfrecord"), str(tmp_path / "b.tfrecord")
    _write(a, [b"x" * 5, b"", b"hello"])
    _write(b, [bytes(range(200))])
    assert list(read_record_file(a)) == [b"x" * 5, b"", b"hello"]
    index = index_record_files([a, b])
    assert index == [(a, 0), (a, 21), (a, 37), (b, 0)]
    assert [read_record_at(f, o) for f, o in index] == [b"x" * 5, b"", b"hello", bytes(range(200))]
    with open(a, "rb") as f:
        assert _spec_records(f.read()) == [b"x" * 5, b"", b"hello"]


def test_corrupt_data_names_file_and_offset(tmp_path):
    path = str(tmp_path / "c.tfrecord")
    _write(path, [b"first", b"second"])
    blob = bytearray(Path(path).read_bytes())
    blob[21 + 12 + 2] ^= 0xFF  # a data byte of the second record (offset 21)
    Path(path).write_bytes(bytes(blob))
    with pytest.raises(RecordError, match=rf"{path}.*offset 21.*CRC"):
        list(read_record_file(path))
    assert list(read_record_file(path, verify=False))[1] != b"second"
    with pytest.raises(RecordError, match="offset 21"):
        read_record_at(path, 21)


def test_corrupt_length_and_truncation(tmp_path):
    path = str(tmp_path / "t.tfrecord")
    _write(path, [b"first", b"second"])
    blob = Path(path).read_bytes()
    Path(path).write_bytes(blob[:-3])
    with pytest.raises(RecordError, match=rf"{path}.*truncated.*offset 21"):
        list(read_record_file(path))
    with pytest.raises(RecordError, match="truncated.*offset 21"):
        index_record_files([path])
    bad = bytearray(blob)
    bad[0] ^= 0x01
    Path(path).write_bytes(bytes(bad))
    with pytest.raises(RecordError, match="corrupt record length at offset 0"):
        index_record_files([path])


def test_raw_label_is_little_endian_int32(tmp_path):
    root = make_coco_fixture(str(tmp_path / "coco"), num_train=1, num_val=1)
    out = str(tmp_path / "rec")
    convert_coco_dataset(root, out, splits=["val"], num_shards=1)
    (record,) = _spec_records(Path(os.path.join(out, "val-00000-of-00001.tfrecord")).read_bytes())
    label = np.frombuffer(_spec_example(record)["image/segmentation/class/encoded"][1][0], "<i4")
    # Contiguous ids 1..4, divisor 256: every value's semantic part is 0 (void) .. 4.
    assert set(np.unique(label // 256)) <= {0, 1, 2, 3, 4}
    assert (label // 256 == 4).any() and (label // 256 == 3).any()
