"""Tests of panoptic2/utils/panoptic_png.py: the COCO panoptic PNG format and its decoder.

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

from panoptic2.ops import segments
from panoptic2.testing.processes import run_fresh_python
from panoptic2.utils import panoptic_png
from panoptic2.utils.panoptic_png import (
    decode_panoptic_png,
    id2rgb,
    read_panoptic_png,
    rgb2id,
    write_panoptic_png,
)

COLOUR_TYPE = {3: 2, 4: 6}  # channels -> PNG colour type (RGB, RGBA)


@pytest.fixture(params=["kernel", "opencv"])
def decoder(request, monkeypatch):
    """Runs a test with the C++ decoder and with the OpenCV fallback."""
    if request.param == "opencv":
        monkeypatch.setattr(segments, "has_kernels", lambda: False)
    elif not segments.has_kernels():
        pytest.skip("panoptic2._segment_maps is not built")
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
    if not segments.has_kernels():
        pytest.skip("panoptic2._segment_maps is not built")
    monkeypatch.setattr(panoptic_png, "_deflate", None)
    pixels = random_pixels(3, 6, 5, 3)
    png = encode_png(pixels, [4, 3, 2, 1, 0, 4])
    np.testing.assert_array_equal(decode_panoptic_png(png), ids_of(pixels))
    with pytest.raises(ValueError, match="corrupt or truncated image data"):
        panoptic_png._decode_with_kernel(_corrupt_idat(png))


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
    if not segments.has_kernels():
        pytest.skip("panoptic2._segment_maps is not built")
    png = encode_png(random_pixels(5, 4, 4, 3), [0] * 4)
    idat = png.index(b"IDAT")
    with pytest.raises(ValueError, match="CRC mismatch in the IDAT chunk"):
        panoptic_png._decode_with_kernel(png[: idat + 6] + b"\x00" + png[idat + 7 :])
    with pytest.raises(ValueError, match="truncated"):
        panoptic_png._decode_with_kernel(png[:-6])
    rows = bytearray(zlib.decompress(png[idat + 4 : png.index(b"IEND") - 8]))
    rows[13] = 7  # row 1's filter byte
    header = struct.pack(">IIBBBBB", 4, 4, 8, 2, 0, 0, 0)
    bad = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(rows))
    with pytest.raises(ValueError, match="invalid filter type 7 on row 1"):
        panoptic_png._decode_with_kernel(bad + _chunk(b"IEND", b""))
    short = (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(rows[:-1]))
    )
    with pytest.raises(ValueError, match="inflates to 51 bytes instead of 52"):
        panoptic_png._decode_with_kernel(short + _chunk(b"IEND", b""))
    bad_header = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header[:12]) + png[idat - 4 :]
    with pytest.raises(ValueError, match="the IHDR chunk has 12 bytes instead of 13"):
        panoptic_png._decode_with_kernel(bad_header)


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


def test_reading_imports_neither_torch_nor_the_data_package(tmp_path):
    path = tmp_path / "p.png"
    Image.fromarray(random_pixels(6, 5, 4, 3)).save(path)
    code = (
        "import sys\n"
        "from panoptic2.utils.panoptic_png import read_panoptic_png\n"
        f"ids = read_panoptic_png({str(path)!r})\n"
        "assert ids.shape == (5, 4), ids.shape\n"
        "from panoptic2.ops.segments import has_kernels\n"
        "heavy = ['torch', 'panoptic2.data'] + (['cv2'] if has_kernels() else [])\n"
        "loaded = [m for m in heavy if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    proc = run_fresh_python(code)
    assert proc.returncode == 0, proc.stderr
