"""A minimal ``tf.train.Example`` encoder/decoder written against the protobuf wire format.

The messages involved (from TensorFlow's ``example.proto`` / ``feature.proto``)::

    Example   { Features features = 1; }
    Features  { map<string, Feature> feature = 1; }  // entries: {string key = 1; Feature value = 2;}
    Feature   { oneof kind { BytesList bytes_list = 1; FloatList float_list = 2;
                             Int64List int64_list = 3; } }
    BytesList { repeated bytes value = 1; }
    FloatList { repeated float value = 1 [packed = true]; }
    Int64List { repeated int64 value = 1 [packed = true]; }

The encoder writes what TensorFlow writes (packed numeric lists); the decoder also accepts
unpacked numeric lists, as every protobuf parser must.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping

__all__ = ["FeatureValue", "encode_example", "parse_example"]

# What a feature holds after parsing: a list of bytes, of ints or of floats.
FeatureValue = list[bytes] | list[int] | list[float]

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


def _varint(value: int) -> bytes:
    """Encodes a non-negative int (or an int64, two's complement) as a base-128 varint."""
    value &= 0xFFFFFFFFFFFFFFFF
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _tag(field: int, wire_type: int) -> bytes:
    return _varint((field << 3) | wire_type)


def _len_field(field: int, payload: bytes) -> bytes:
    return _tag(field, _LEN) + _varint(len(payload)) + payload


def _encode_feature(key: str, value: object) -> bytes:
    """Encodes one ``Feature`` message from a Python value (see :func:`encode_example`)."""
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if all(isinstance(v, (bytes, bytearray, memoryview, str)) for v in values):
        items = [v.encode() if isinstance(v, str) else bytes(v) for v in values]
        return _len_field(1, b"".join(_len_field(1, v) for v in items))
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        packed = b"".join(_varint(v) for v in values)
        return _len_field(3, _len_field(1, packed) if values else b"")
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        packed = struct.pack(f"<{len(values)}f", *values)
        return _len_field(2, _len_field(1, packed) if values else b"")
    raise TypeError(
        f"Feature '{key}': values must all be bytes/str, all ints or all floats, got {value!r}."
    )


def encode_example(features: Mapping[str, object]) -> bytes:
    """Serializes a ``tf.train.Example``.

    Args:
        features: feature name -> value. A ``bytes``/``str`` or a list of them becomes a
            ``bytes_list`` (str is UTF-8 encoded); an ``int`` or list of ints an
            ``int64_list``; a ``float`` or list of floats (ints allowed) a ``float_list``.

    Returns:
        The serialized message, byte-compatible with ``Example.SerializeToString()`` up to
        the order of map entries (kept in the mapping's order).
    """
    entries = b"".join(
        _len_field(1, _len_field(1, key.encode()) + _len_field(2, _encode_feature(key, value)))
        for key, value in features.items()
    )
    return _len_field(1, entries)


def _read_varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while pos < end:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            break
    raise ValueError(f"malformed varint at byte {pos}")


def _fields(buf: memoryview, start: int, end: int):
    """Yields ``(field, wire_type, value)``; value is an int or a ``(start, end)`` span."""
    pos = start
    while pos < end:
        key, pos = _read_varint(buf, pos, end)
        field, wire_type = key >> 3, key & 7
        if wire_type == _VARINT:
            value, pos = _read_varint(buf, pos, end)
        elif wire_type == _LEN:
            length, pos = _read_varint(buf, pos, end)
            value = (pos, pos + length)
            pos += length
        elif wire_type == _I64:
            value, pos = (pos, pos + 8), pos + 8
        elif wire_type == _I32:
            value, pos = (pos, pos + 4), pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire_type} at byte {pos}")
        if pos > end:
            raise ValueError(f"field {field} runs past the end of its message ({pos} > {end})")
        yield field, wire_type, value


def _signed64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _parse_feature(buf: memoryview, start: int, end: int) -> FeatureValue:
    result: FeatureValue = []
    for kind, wire_type, span in _fields(buf, start, end):
        if wire_type != _LEN or kind not in (1, 2, 3):
            continue  # unknown field: skip, as protobuf parsers do
        result = []
        for field, item_type, item in _fields(buf, *span):
            if field != 1:
                continue
            if kind == 1:
                result.append(bytes(buf[item[0] : item[1]]))
            elif kind == 3 and item_type == _VARINT:
                result.append(_signed64(item))
            elif kind == 3:  # packed varints
                pos = item[0]
                while pos < item[1]:
                    value, pos = _read_varint(buf, pos, item[1])
                    result.append(_signed64(value))
            else:  # floats, packed (LEN) or single (I32)
                raw = bytes(buf[item[0] : item[1]])
                result.extend(struct.unpack(f"<{len(raw) // 4}f", raw))
    return result


def parse_example(data: bytes) -> dict[str, FeatureValue]:
    """Parses a serialized ``tf.train.Example``.

    Args:
        data: the serialized message (a TFRecord payload).

    Returns:
        Feature name -> list of ``bytes``, ``int`` or ``float`` values (an empty list for a
        feature with no kind set).

    Raises:
        ValueError: the bytes are not a well-formed Example.
    """
    buf = memoryview(data)
    features: dict[str, FeatureValue] = {}
    try:
        for field, wire_type, span in _fields(buf, 0, len(buf)):
            if field != 1 or wire_type != _LEN:
                continue
            for entry_field, entry_type, entry in _fields(buf, *span):
                if entry_field != 1 or entry_type != _LEN:
                    continue
                key, value = "", []
                for item_field, item_type, item in _fields(buf, *entry):
                    if item_type != _LEN:
                        continue
                    if item_field == 1:
                        key = bytes(buf[item[0] : item[1]]).decode()
                    elif item_field == 2:
                        value = _parse_feature(buf, *item)
                features[key] = value
    except (ValueError, UnicodeDecodeError, struct.error) as e:
        raise ValueError(f"Malformed tf.train.Example ({len(data)} bytes): {e}") from None
    return features
