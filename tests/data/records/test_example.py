"""Tests of panoptic2/data/records/example.py against the protobuf library's own codec.

TensorFlow's ``Example`` schema is declared here through protobuf descriptors (no TensorFlow
or generated code), so the reference parser/serializer is the protobuf runtime itself.
"""

from __future__ import annotations

import math

import pytest

from panoptic2.data.records import encode_example, parse_example

descriptor_pb2 = pytest.importorskip("google.protobuf.descriptor_pb2")
descriptor_pool = pytest.importorskip("google.protobuf.descriptor_pool")
message_factory = pytest.importorskip("google.protobuf.message_factory")

F = descriptor_pb2.FieldDescriptorProto


def _example_class():
    """Builds tensorflow.Example from descriptors matching example.proto/feature.proto."""
    fdp = descriptor_pb2.FileDescriptorProto(
        name="p2_example_test.proto", package="tensorflow", syntax="proto3"
    )

    def message(name, fields):
        m = fdp.message_type.add(name=name)
        for number, fname, ftype, label, type_name, oneof in fields:
            f = m.field.add(name=fname, number=number, type=ftype, label=label)
            if type_name:
                f.type_name = type_name
            if oneof is not None:
                f.oneof_index = oneof
        return m

    rep, opt = F.LABEL_REPEATED, F.LABEL_OPTIONAL
    message("BytesList", [(1, "value", F.TYPE_BYTES, rep, None, None)])
    message("FloatList", [(1, "value", F.TYPE_FLOAT, rep, None, None)])
    message("Int64List", [(1, "value", F.TYPE_INT64, rep, None, None)])
    feature = message(
        "Feature",
        [
            (1, "bytes_list", F.TYPE_MESSAGE, opt, ".tensorflow.BytesList", 0),
            (2, "float_list", F.TYPE_MESSAGE, opt, ".tensorflow.FloatList", 0),
            (3, "int64_list", F.TYPE_MESSAGE, opt, ".tensorflow.Int64List", 0),
        ],
    )
    feature.oneof_decl.add(name="kind")
    features = message(
        "Features", [(1, "feature", F.TYPE_MESSAGE, rep, ".tensorflow.Features.FeatureEntry", None)]
    )
    entry = features.nested_type.add(name="FeatureEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=F.TYPE_STRING, label=opt)
    entry.field.add(
        name="value", number=2, type=F.TYPE_MESSAGE, label=opt, type_name=".tensorflow.Feature"
    )
    message("Example", [(1, "features", F.TYPE_MESSAGE, opt, ".tensorflow.Features", None)])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.Example"))


Example = _example_class()

FEATURES = {
    "image/encoded": b"\x00\xff" * 300,  # > 127 bytes: multi-byte length varints
    "image/filename": "000000000139",
    "image/height": 480,
    "ints": [0, 1, 300, 2**40, -1, -(2**63)],
    "floats": [0.5, -2.25, 1e10],
    "many": [b"a", b"", b"ccc"],
}


def test_protobuf_parses_our_encoding():
    msg = Example()
    msg.ParseFromString(encode_example(FEATURES))
    feature = msg.features.feature
    assert feature["image/encoded"].bytes_list.value == [FEATURES["image/encoded"]]
    assert feature["image/filename"].bytes_list.value == [b"000000000139"]
    assert list(feature["image/height"].int64_list.value) == [480]
    assert list(feature["ints"].int64_list.value) == FEATURES["ints"]
    assert list(feature["floats"].float_list.value) == pytest.approx(FEATURES["floats"], rel=1e-7)
    assert list(feature["many"].bytes_list.value) == FEATURES["many"]
    assert set(feature) == set(FEATURES)


def test_we_parse_protobuf_serialization():
    msg = Example()
    feature = msg.features.feature
    feature["b"].bytes_list.value.extend([b"xyz", b"\x00"])
    feature["i"].int64_list.value.extend([7, -3, 2**62])
    feature["f"].float_list.value.extend([1.5, -0.0])
    feature["empty"].int64_list.SetInParent()
    parsed = parse_example(msg.SerializeToString())
    assert parsed["b"] == [b"xyz", b"\x00"]
    assert parsed["i"] == [7, -3, 2**62]
    assert parsed["f"] == [1.5, -0.0] and math.copysign(1, parsed["f"][1]) == -1
    assert parsed["empty"] == []


def test_round_trip_and_unpacked_ints():
    parsed = parse_example(encode_example(FEATURES))
    assert parsed["image/filename"] == [b"000000000139"]
    assert parsed["ints"] == FEATURES["ints"]
    # Unpacked repeated int64 (field 1, varint wire type) must parse too.
    int64_list = b"\x08\x05\x08\x07"
    feature = b"\x1a" + bytes([len(int64_list)]) + int64_list
    entry = b"\x0a\x01k" + b"\x12" + bytes([len(feature)]) + feature
    features = b"\x0a" + bytes([len(entry)]) + entry
    assert parse_example(b"\x0a" + bytes([len(features)]) + features) == {"k": [5, 7]}


def test_errors():
    with pytest.raises(TypeError, match="'mixed'"):
        encode_example({"mixed": [1, b"x"]})
    with pytest.raises(ValueError, match="Malformed"):
        parse_example(b"\x0a\x05ab")
