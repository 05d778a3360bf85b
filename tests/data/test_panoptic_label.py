"""Tests of panoptic2/data/panoptic_label.py: the fast PNG decoder and the label rules.

PNGs are written by a small encoder in this file that applies a chosen filter type to each
row, straight from the PNG specification, so every filter is decoded at least once; PIL and
OpenCV files check real-world encoders. Expected ids come from the arrays themselves.
"""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from panoptic2.data import panoptic_label
from panoptic2.data.panoptic_label import (
    decode_panoptic_png,
    id2rgb,
    label_from_segments,
    read_panoptic_png,
    rgb2id,
    segments_from_label,
    write_panoptic_png,
)
from panoptic2.ops import extension

COLOUR_TYPE = {3: 2, 4: 6}  # channels -> PNG colour type (RGB, RGBA)


@pytest.fixture(params=["kernel", "opencv"])
def decoder(request, monkeypatch):
    """Runs a test with the C++ decoder and with the OpenCV fallback."""
    if request.param == "opencv":
        monkeypatch.setattr(extension, "has_ops", lambda: False)
    elif not extension.has_ops():
        pytest.skip("panoptic2._C is not available")
    return request.param


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def _filter_row(kind: int, row: bytes, prior: bytes, bpp: int) -> bytes:
    out = bytearray(len(row))
    for i, x in enumerate(row):
        a = row[i - bpp] if i >= bpp else 0
        b = prior[i]
        c = prior[i - bpp] if i >= bpp else 0
        predictor = (0, a, b, (a + b) // 2, _paeth(a, b, c))[kind]
        out[i] = (x - predictor) % 256
    return bytes(out)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def encode_png(pixels: np.ndarray, filters: list[int], idat_parts: int = 1) -> bytes:
    """PNG bytes of ``(H, W, 3 or 4)`` uint8 ``pixels``, row y filtered with ``filters[y]``;
    the compressed data is split over ``idat_parts`` IDAT chunks."""
    height, width, channels = pixels.shape
    prior = bytes(width * channels)
    scanlines = bytearray()
    for y in range(height):
        row = pixels[y].tobytes()
        scanlines += bytes([filters[y]]) + _filter_row(filters[y], row, prior, channels)
        prior = row
    data = zlib.compress(bytes(scanlines))
    step = -(-len(data) // idat_parts)
    header = struct.pack(">IIBBBBB", width, height, 8, COLOUR_TYPE[channels], 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"tEXt", b"Comment\x00ancillary chunks are skipped")
        + b"".join(_chunk(b"IDAT", data[i : i + step]) for i in range(0, len(data), step))
        + _chunk(b"IEND", b"")
    )


def ids_of(pixels: np.ndarray) -> np.ndarray:
    rgb = pixels[..., :3].astype(np.uint32)
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


def random_pixels(seed: int, height: int, width: int, channels: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(height, width, channels), dtype=np.uint8)


@pytest.mark.parametrize("channels", [3, 4])
def test_every_filter_type_decodes_to_the_ids(decoder, channels):
    pixels = random_pixels(0, 11, 9, channels)
    for filters in ([0] * 11, [1] * 11, [2] * 11, [3] * 11, [4] * 11, [k % 5 for k in range(11)]):
        for parts in (1, 3):
            got = decode_panoptic_png(encode_png(pixels, filters, parts))
            assert got.dtype == np.uint32 and got.shape == (11, 9)
            np.testing.assert_array_equal(got, ids_of(pixels), err_msg=str(filters))


def test_files_of_pil_and_opencv(decoder, tmp_path):
    # Piecewise-constant ids (what panoptic PNGs hold) and noise; PIL chooses filters.
    ids = np.repeat(np.arange(1, 49, dtype=np.uint32).reshape(6, 8) * 40503, 5, axis=1)
    ids = np.repeat(ids, 3, axis=0)
    pixels = np.stack([ids & 255, (ids >> 8) & 255, ids >> 16], axis=-1).astype(np.uint8)
    noise = random_pixels(1, 17, 23, 3)
    for k, image in enumerate((pixels, noise)):
        for options in ({}, {"compress_level": 0}, {"optimize": True}):
            path = tmp_path / f"pil{k}.png"
            Image.fromarray(image).save(path, **options)
            np.testing.assert_array_equal(read_panoptic_png(str(path)), ids_of(image))
        path = tmp_path / f"cv{k}.png"
        cv2.imwrite(str(path), np.ascontiguousarray(image[..., ::-1]))
        np.testing.assert_array_equal(read_panoptic_png(str(path)), ids_of(image))
    rgba = random_pixels(2, 5, 7, 4)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(read_panoptic_png(str(tmp_path / "rgba.png")), ids_of(rgba))


def test_zlib_inflates_when_libdeflate_is_missing(monkeypatch):
    if not extension.has_ops():
        pytest.skip("panoptic2._C is not available")
    monkeypatch.setattr(panoptic_label, "_deflate", None)
    pixels = random_pixels(3, 6, 5, 3)
    png = encode_png(pixels, [4, 3, 2, 1, 0, 4])
    np.testing.assert_array_equal(decode_panoptic_png(png), ids_of(pixels))
    with pytest.raises(ValueError, match="corrupt or truncated image data"):
        panoptic_label._decode_with_kernel(_corrupt_idat(png))


def _corrupt_idat(png: bytes) -> bytes:
    """Flips the compressed bytes of the first IDAT chunk and fixes its CRC."""
    start = png.index(b"IDAT")
    length = struct.unpack(">I", png[start - 4 : start])[0]
    body = bytes(b ^ 0x5A for b in png[start + 4 : start + 4 + length])
    crc = struct.pack(">I", zlib.crc32(b"IDAT" + body))
    return png[:start] + b"IDAT" + body + crc + png[start + 8 + length :]


def test_palette_and_other_layouts_go_through_opencv(tmp_path):
    # A palette PNG: OpenCV turns it into colours, whose ids are returned.
    palette_ids = np.array([[0, 1], [2, 1]], dtype=np.uint8)
    image = Image.fromarray(palette_ids, "P")
    image.putpalette([1, 2, 3, 4, 5, 6, 7, 8, 9] + [0] * (768 - 9))
    image.save(tmp_path / "palette.png")
    colours = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]], dtype=np.uint8)[palette_ids]
    np.testing.assert_array_equal(read_panoptic_png(str(tmp_path / "palette.png")), ids_of(colours))
    # Grayscale and 16-bit images are not panoptic PNGs.
    Image.fromarray(palette_ids, "L").save(tmp_path / "gray.png")
    with pytest.raises(ValueError, match=r"gray.png'.*must be 8-bit RGB"):
        read_panoptic_png(str(tmp_path / "gray.png"))
    cv2.imwrite(str(tmp_path / "deep.png"), np.zeros((2, 2, 3), dtype=np.uint16))
    with pytest.raises(ValueError, match=r"deep.png'.*must be 8-bit RGB"):
        read_panoptic_png(str(tmp_path / "deep.png"))


def test_corrupt_files_are_reported_with_their_path(decoder, tmp_path):
    pixels = random_pixels(4, 8, 6, 3)
    png = encode_png(pixels, [1] * 8)
    idat = png.index(b"IDAT")
    bad_filter = bytearray(zlib.decompress(png[idat + 4 : png.index(b"IEND") - 8]))
    bad_filter[1 + 18] = 9  # the filter byte of row 1
    header = struct.pack(">IIBBBBB", 6, 8, 8, 2, 0, 0, 0)
    cases = {
        "truncated": png[: len(png) // 2],
        "crc": png[: idat + 10] + bytes([png[idat + 10] ^ 1]) + png[idat + 11 :],
        "zlib": _corrupt_idat(png),
        "filter": b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(bytes(bad_filter)))
        + _chunk(b"IEND", b""),
        "not_png": b"GIF89a" + bytes(40),
        "empty": b"",
    }
    for name, data in cases.items():
        path = tmp_path / f"{name}.png"
        path.write_bytes(data)
        with pytest.raises(ValueError, match=rf"Cannot decode panoptic PNG '.*{name}\.png'"):
            read_panoptic_png(str(path))
    with pytest.raises(FileNotFoundError, match=r"Panoptic PNG not found: '.*missing\.png'"):
        read_panoptic_png(str(tmp_path / "missing.png"))


def test_kernel_reasons_name_what_is_wrong(tmp_path):
    if not extension.has_ops():
        pytest.skip("panoptic2._C is not available")
    png = encode_png(random_pixels(5, 4, 4, 3), [0] * 4)
    idat = png.index(b"IDAT")
    with pytest.raises(ValueError, match="CRC mismatch in the IDAT chunk"):
        panoptic_label._decode_with_kernel(png[: idat + 6] + b"\x00" + png[idat + 7 :])
    with pytest.raises(ValueError, match="truncated"):
        panoptic_label._decode_with_kernel(png[:-6])
    rows = bytearray(zlib.decompress(png[idat + 4 : png.index(b"IEND") - 8]))
    rows[13] = 7  # row 1's filter byte
    header = struct.pack(">IIBBBBB", 4, 4, 8, 2, 0, 0, 0)
    bad = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(rows))
    with pytest.raises(ValueError, match="invalid filter type 7 on row 1"):
        panoptic_label._decode_with_kernel(bad + _chunk(b"IEND", b""))
    short = (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(rows[:-1]))
    )
    with pytest.raises(ValueError, match="inflates to 51 bytes instead of 52"):
        panoptic_label._decode_with_kernel(short + _chunk(b"IEND", b""))
    bad_header = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header[:12]) + png[idat - 4 :]
    with pytest.raises(ValueError, match="the IHDR chunk has 12 bytes instead of 13"):
        panoptic_label._decode_with_kernel(bad_header)


# --------------------------------------------------------------------------------------
# The segments -> label map rule (DeepLab2's), with crowd/void handling as parameters
# --------------------------------------------------------------------------------------
MAPPING = {1: 1, 3: 2, 101: 3}
THINGS = {1, 2}


def _ids():
    ids = np.zeros((3, 4), np.int64)
    ids[0] = 10  # stuff 101
    ids[1, :2] = 20  # thing 3, first instance
    ids[1, 2:] = 21  # thing 1
    ids[2, :2] = 22  # thing 3, second instance
    ids[2, 2] = 23  # crowd thing 1; ids[2, 3] stays void
    segments = [
        {"id": 10, "category_id": 101, "iscrowd": 0, "area": 4},
        {"id": 20, "category_id": 3, "iscrowd": 0, "area": 2},
        {"id": 21, "category_id": 1, "iscrowd": 0, "area": 2},
        {"id": 22, "category_id": 3, "iscrowd": 0, "area": 2},
        {"id": 23, "category_id": 1, "iscrowd": 1, "area": 1},
    ]
    return ids, segments


def _label(ids, segments, **kw):
    args = dict(
        category_map=MAPPING,
        thing_ids=THINGS,
        label_divisor=256,
        ignore_label=0,
        crowd_as_ignore=True,
        check_areas=True,
        name="img.png",
    )
    args.update(kw)
    return label_from_segments(ids, segments, **args)


def _per_segment_reference(ids, segments, *, divisor, ignore, things, crowd_as_ignore):
    """The rule written plainly, one boolean mask per segment."""
    out = np.full(ids.shape, ignore * divisor, np.int64)
    counters = {}
    for seg in segments:
        cat = MAPPING[seg["category_id"]]
        inst = 0
        if cat in things and seg["iscrowd"] and crowd_as_ignore:
            cat = ignore
        elif cat in things and not seg["iscrowd"]:
            inst = counters[cat] = counters.get(cat, 0) + 1
        out[ids == seg["id"]] = cat * divisor + inst
    return out


def test_hand_computed_label():
    ids, segments = _ids()
    expected = np.array([[768, 768, 768, 768], [513, 513, 257, 257], [514, 514, 0, 0]], np.int32)
    out = _label(ids, segments)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, expected)
    expected[2, 2] = 256  # crowd keeps its class, instance 0
    np.testing.assert_array_equal(_label(ids, segments, crowd_as_ignore=False), expected)
    for crowd_as_ignore in (True, False):
        reference = _per_segment_reference(
            ids, segments, divisor=256, ignore=0, things=THINGS, crowd_as_ignore=crowd_as_ignore
        )
        np.testing.assert_array_equal(
            _label(ids, segments, crowd_as_ignore=crowd_as_ignore), reference
        )


def test_ids_beyond_png_range_and_contiguous_categories():
    """Ids past 2^24 (the lookup table's range) take the searchsorted path, same result."""
    ids, segments = _ids()
    big = np.where(ids > 0, ids + (1 << 30), 0)
    shifted = [
        {**s, "id": s["id"] + (1 << 30), "category_id": MAPPING[s["category_id"]]} for s in segments
    ]
    np.testing.assert_array_equal(_label(big, shifted, category_map=None), _label(ids, segments))


def test_label_rule_errors_name_the_file_and_segment():
    ids, segments = _ids()
    bad = [dict(s) for s in segments]
    bad[1]["area"] = 3
    with pytest.raises(
        ValueError, match=r"'img.png', segment 20: the PNG has 2 pixels.*'area' is 3"
    ):
        _label(ids, bad)
    _label(ids, bad, check_areas=False)  # areas are only compared when asked
    bad = [dict(s) for s in segments]
    bad[2]["category_id"] = 77
    with pytest.raises(ValueError, match=r"'img.png', segment 21: unknown category id 77"):
        _label(ids, bad)
    bad = [dict(s) for s in segments]
    bad[0]["iscrowd"] = 1
    with pytest.raises(ValueError, match=r"segment 10: stuff category 101 is marked iscrowd"):
        _label(ids, bad)
    with pytest.raises(ValueError, match=r"segment 20: listed twice"):
        _label(ids, segments + [segments[1]])
    with pytest.raises(ValueError, match=r"segment 23 \(category 1\) of the JSON is missing"):
        _label(np.where(ids == 23, 0, ids), segments)
    with pytest.raises(ValueError, match=r"'img.png' \(image 7\) contains segment ids \[23\]"):
        _label(ids, segments[:4], context=" (image 7)")


def test_too_many_instances():
    ids = np.arange(1, 5, dtype=np.int64).reshape(1, 4)
    segments = [{"id": i, "category_id": 1, "iscrowd": 0, "area": 1} for i in range(1, 5)]
    # Divisor 4 holds instances 1..3; the 4th (segment 4) does not fit.
    with pytest.raises(ValueError, match=r"segment 4: more than 3 instances"):
        _label(ids, segments, label_divisor=4)
    np.testing.assert_array_equal(_label(ids[:, :3], segments[:3], label_divisor=4), [[5, 6, 7]])


def test_segments_from_label_inverts_the_rule():
    ids, segments = _ids()
    label = _label(ids, segments, crowd_as_ignore=False)
    back, found, void = segments_from_label(
        label, label_divisor=256, ignore_label=0, thing_ids=THINGS
    )
    assert void == 0 and back.dtype == np.int64
    assert found == [
        {"id": 256, "category_id": 1, "iscrowd": 1},
        {"id": 257, "category_id": 1, "iscrowd": 0},
        {"id": 513, "category_id": 2, "iscrowd": 0},
        {"id": 514, "category_id": 2, "iscrowd": 0},
        {"id": 768, "category_id": 3, "iscrowd": 0},
    ]


def test_rgb_round_trip_and_writer(tmp_path):
    ids = np.array([[0, 1, 256], [65536 + 2, (1 << 24) - 1, 7]])
    rgb = id2rgb(ids)
    assert rgb.dtype == np.uint8 and rgb[1, 0].tolist() == [2, 0, 1]
    np.testing.assert_array_equal(rgb2id(rgb), ids)
    np.testing.assert_array_equal(rgb2id(np.dstack([rgb, np.full(ids.shape, 9, np.uint8)])), ids)
    write_panoptic_png(str(tmp_path / "p.png"), ids)
    np.testing.assert_array_equal(read_panoptic_png(str(tmp_path / "p.png")), ids)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "p.png").convert("RGB")), rgb)
    assert [p.name for p in tmp_path.iterdir()] == ["p.png"]  # no temp file left behind
    with pytest.raises(ValueError, match="2\\^24"):
        id2rgb(np.array([1 << 24]))
    with pytest.raises(ValueError, match="2\\^24"):
        id2rgb(np.array([-1]))


@pytest.mark.parametrize(
    "id_dtype, largest_id",
    # PNG ids (the lookup table), the same as int64, and ids beyond it (searchsorted).
    [(np.uint32, (1 << 24) - 1), (np.int64, (1 << 24) - 1), (np.int64, 1 << 40)],
)
def test_label_from_segments_equals_a_per_segment_loop(id_dtype, largest_id):
    rng = np.random.default_rng(5)
    segment_ids = [largest_id, *rng.choice(np.arange(1, 1 << 20), size=11, replace=False)]
    ids = np.repeat(rng.choice([0, *segment_ids], size=(10, 6)), 4, axis=1).astype(id_dtype)
    present = set(np.unique(ids).tolist()) - {0}
    segments = [
        {"id": int(v), "category_id": k % 4 + 1, "iscrowd": int(k % 5 == 4)}
        for k, v in enumerate(segment_ids)
        if v in present
    ]
    thing_ids = {1, 2}
    expected = np.full(ids.shape, 255 * 1000)
    counters: dict[int, int] = {}
    for seg in segments:
        instance = 0
        if seg["category_id"] in thing_ids and not seg["iscrowd"]:
            instance = counters[seg["category_id"]] = counters.get(seg["category_id"], 0) + 1
        expected[ids == seg["id"]] = seg["category_id"] * 1000 + instance
    got = label_from_segments(
        ids, segments, label_divisor=1000, ignore_label=255, thing_ids=thing_ids
    )
    assert got.dtype == np.int32 and np.array_equal(got, expected)
