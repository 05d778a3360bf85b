"""The COCO panoptic PNG format: colour <-> segment id, and reading and writing the files.

Segment ids are stored as RGB colours, ``id = R + 256 G + 256^2 B`` (0 is void in COCO). This
module is the one implementation of the format; :mod:`panoptic2.data.panoptic_label`
re-exports it next to the label rules, and the PQ evaluation reads PNGs through it. It
imports neither torch nor the data package, so ``tools/evaluate_panoptic.py`` starts fast.

Evaluation decodes one ground-truth PNG per image (two in the PQ tool), so decoding speed
matters. The common case, an 8-bit non-interlaced RGB or RGBA PNG (what panopticapi, PIL and
OpenCV write), is decoded here: the chunks are parsed and their CRCs checked in Python, the
image data is inflated by libdeflate (the ``deflate`` package; several times faster than the
zlib inside libpng, and zlib is the fallback), and one C++ pass
(:func:`panoptic2.ops.segments.png_unfilter_to_ids`, no torch) undoes the row filters and
computes the ids. Anything else (palette, 16-bit, interlaced PNGs, or no compiled module: see
:func:`panoptic2.ops.segments.has_kernels`) is decoded by OpenCV. As in panopticapi's
``rgb2id``, an alpha channel is ignored.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

from panoptic2.ops import segments

__all__ = [
    "decode_panoptic_png",
    "id2rgb",
    "read_panoptic_png",
    "rgb2id",
    "write_panoptic_png",
]

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# width, height, bit depth, colour type, compression, filter method, interlace
_IHDR = struct.Struct(">IIBBBBB")
_CHANNELS = {2: 3, 6: 4}  # PNG colour type -> channels: RGB, RGBA

try:  # libdeflate; optional so that a bare environment still decodes through zlib
    import deflate as _deflate
except ImportError:  # pragma: no cover - depends on the environment
    _deflate = None


class _UnsupportedPNG(Exception):
    """A valid PNG outside the fast path; OpenCV decodes it."""


def _inflate(data: bytes, size: int) -> bytes:
    """Inflates a zlib stream that must give exactly ``size`` bytes."""
    try:
        if _deflate is not None:
            raw = _deflate.zlib_decompress(data, size)
        else:
            raw = zlib.decompress(data)
    except (zlib.error, getattr(_deflate, "DeflateError", zlib.error)) as e:
        raise ValueError(f"corrupt or truncated image data ({e})") from None
    if len(raw) != size:
        raise ValueError(f"the image data inflates to {len(raw)} bytes instead of {size}")
    return raw


def _decode_with_kernel(data: bytes) -> np.ndarray:
    """Fast path; raises ``_UnsupportedPNG`` for PNGs it does not handle, ValueError for
    corrupt ones."""
    if not data.startswith(_SIGNATURE):
        raise ValueError("not a PNG file (bad signature)")
    header = None
    idat: list[bytes] = []
    pos = len(_SIGNATURE)
    while True:
        if pos + 8 > len(data):
            raise ValueError("truncated file (no IEND chunk)")
        length, kind = struct.unpack_from(">I4s", data, pos)
        end = pos + 8 + length
        if end + 4 > len(data):
            raise ValueError(f"truncated {kind.decode('latin-1')} chunk")
        body = data[pos + 8 : end]
        (crc,) = struct.unpack_from(">I", data, end)
        if zlib.crc32(body, zlib.crc32(kind)) != crc:
            raise ValueError(f"CRC mismatch in the {kind.decode('latin-1')} chunk")
        if kind == b"IHDR":
            if len(body) != _IHDR.size:
                raise ValueError(f"the IHDR chunk has {len(body)} bytes instead of 13")
            header = _IHDR.unpack(body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        elif kind[0] & 0x20 == 0 and kind != b"PLTE":
            raise _UnsupportedPNG  # an unknown critical chunk
        pos = end + 4
    if header is None or not idat:
        raise ValueError("no IHDR or IDAT chunk")
    width, height, bit_depth, colour_type, compression, filtering, interlace = header
    if (bit_depth, compression, filtering, interlace) != (8, 0, 0, 0):
        raise _UnsupportedPNG
    if colour_type not in _CHANNELS:
        raise _UnsupportedPNG
    if width == 0 or height == 0:
        raise ValueError(f"the header gives an empty {width}x{height} image")
    channels = _CHANNELS[colour_type]
    raw = _inflate(b"".join(idat), height * (1 + width * channels))
    return segments.png_unfilter_to_ids(raw, height, width, channels)


def _decode_with_opencv(data: bytes) -> np.ndarray:
    import cv2  # only for the PNGs the fast path does not take: its import costs ~0.1 s

    if not data:
        raise ValueError("the file is empty")
    try:
        bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as e:
        raise ValueError(f"OpenCV cannot decode it ({e})") from None
    if bgr is None:  # OpenCV mostly returns None instead of raising
        raise ValueError("OpenCV cannot decode it")
    if bgr.dtype != np.uint8 or bgr.ndim != 3 or bgr.shape[2] not in (3, 4):
        raise ValueError(f"must be 8-bit RGB, got {bgr.dtype} of shape {bgr.shape}")
    # RGBA bytes read as a little-endian uint32 are R + 256 G + 256^2 B + 256^3 A.
    ids = cv2.cvtColor(bgr[..., :3], cv2.COLOR_BGR2RGBA).view("<u4")[..., 0]
    ids &= 0xFFFFFF
    return ids


def decode_panoptic_png(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decodes the bytes of a COCO panoptic PNG into segment ids.

    Args:
        data: the PNG file's bytes.
        name: names the file in error messages.

    Returns:
        ``(H, W)`` uint32 segment ids ``R + 256 G + 256^2 B`` (0 is void in COCO).

    Raises:
        ValueError: the bytes are not a decodable 8-bit RGB(A) PNG (the message names
            ``name`` and what is wrong).
    """
    try:
        if segments.has_kernels():  # loads the compiled module on first use only
            try:
                return _decode_with_kernel(data)
            except _UnsupportedPNG:
                pass
        return _decode_with_opencv(data)
    except ValueError as e:
        raise ValueError(f"Cannot decode panoptic PNG '{name}': {e}") from None


def read_panoptic_png(path: str) -> np.ndarray:
    """Reads a COCO panoptic PNG as segment ids (see :func:`decode_panoptic_png`).

    Args:
        path: the PNG file: a local path (opened directly), or any ``PathManager`` URI.

    Returns:
        ``(H, W)`` uint32 segment ids ``R + 256 G + 256^2 B``.

    Raises:
        FileNotFoundError: the file does not exist (names it).
        ValueError: the file cannot be decoded or is not an 8-bit RGB(A) image.
    """
    try:
        if "://" in path:
            from panoptic2.utils.file_io import PathManager  # iopath: only for URIs

            with PathManager.open(path, "rb") as f:
                data = f.read()
        else:
            with open(path, "rb") as f:
                data = f.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"Panoptic PNG not found: '{path}'") from None
    return decode_panoptic_png(data, path)


def rgb2id(color: np.ndarray) -> np.ndarray:
    """COCO panoptic colours to segment ids.

    Args:
        color: ``(..., 3)`` uint8 RGB (a 4th, alpha, channel is ignored).

    Returns:
        ``(...)`` int64 ids ``R + 256 G + 256^2 B``.
    """
    color = np.asarray(color)
    if color.shape[-1] not in (3, 4):
        raise ValueError(f"rgb2id(): expected (..., 3) RGB colours, got shape {color.shape}")
    color = color[..., :3].astype(np.int64)
    return color[..., 0] + 256 * color[..., 1] + 65536 * color[..., 2]


def id2rgb(ids: np.ndarray) -> np.ndarray:
    """Segment ids to COCO panoptic colours (inverse of :func:`rgb2id`).

    Args:
        ids: ``(...)`` integer ids in ``[0, 2^24)``.

    Returns:
        ``(..., 3)`` uint8 RGB.

    Raises:
        ValueError: an id is negative or does not fit in 24 bits.
    """
    ids = np.asarray(ids)
    if ids.size and (ids.min() < 0 or ids.max() >= 1 << 24):
        raise ValueError(
            f"id2rgb(): ids must lie in [0, 2^24), got [{ids.min()}, {ids.max()}] (a PNG has "
            "3 bytes per pixel)"
        )
    ids = ids.astype(np.uint32)
    return np.stack([ids & 255, (ids >> 8) & 255, (ids >> 16) & 255], axis=-1).astype(np.uint8)


def write_panoptic_png(path: str, ids: np.ndarray) -> None:
    """Writes segment ids as a COCO panoptic PNG, atomically (temp file + rename).

    Args:
        path: the PNG file to write.
        ids: ``(H, W)`` integer ids in ``[0, 2^24)`` (0 is void in COCO).
    """
    from PIL import Image

    from panoptic2.utils.file_io import atomic_write

    rgb = id2rgb(ids)

    def write(f) -> None:
        Image.fromarray(rgb, "RGB").save(f, format="PNG")

    atomic_write(path, write)
