"""Panoptic labels: the COCO panoptic PNG format, and segments -> label map and back.

The one implementation of each panoptic-label rule; readers, mappers, converters, the
validator and the evaluators all call these:

* :func:`rgb2id` / :func:`id2rgb`: COCO panoptic colour <-> segment id
  (``id = R + 256 G + 256^2 B``);
* :func:`read_panoptic_png` / :func:`decode_panoptic_png` / :func:`write_panoptic_png`: the
  PNG files themselves;
* :func:`label_from_segments`: a segment-id map and its ``segments_info`` -> the internal
  label map ``semantic * label_divisor + instance`` (DeepLab2's rule; crowd and void
  handling as parameters), and :func:`read_panoptic_label`, the same for a dataset dict;
* :func:`segments_from_label`: the inverse, a label map -> segments.

Evaluation decodes one ground-truth PNG per image while inference runs, so decoding speed
matters. The common case, an 8-bit non-interlaced RGB or RGBA PNG (what panopticapi, PIL and
OpenCV write), is decoded here: the chunks are parsed and their CRCs checked in Python, the
image data is inflated by libdeflate (the ``deflate`` package; several times faster than the
zlib inside libpng, and zlib is the fallback), and one C++ pass
(:func:`panoptic2.ops.segments.png_unfilter_to_ids`) undoes the row filters and computes the
ids. Anything else (palette, 16-bit, interlaced PNGs, or no usable ``_C``: see
:func:`panoptic2.ops.extension.has_ops`) is decoded by OpenCV.
As in panopticapi's ``rgb2id``, an alpha channel is ignored.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
from PIL import Image

from panoptic2.utils.file_io import PathManager, atomic_write
from panoptic2.utils.segment_ids import default_lookup, unique_ids

if TYPE_CHECKING:
    from .label_space import LabelSpace

__all__ = [
    "check_segments",
    "decode_panoptic_png",
    "id2rgb",
    "label_from_segments",
    "panoptic_categories",
    "read_panoptic_label",
    "read_panoptic_png",
    "rgb2id",
    "segments_from_label",
    "write_panoptic_png",
    "write_panoptic_prediction",
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
    from panoptic2.ops.segments import png_unfilter_to_ids  # torch: imported on first use

    return png_unfilter_to_ids(raw, height, width, channels)


def _decode_with_opencv(data: bytes) -> np.ndarray:
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
    from panoptic2.ops import extension  # torch: imported on first use

    try:
        if extension.has_ops():  # loads _C on first use only
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
        path: the PNG file (a local path or any ``PathManager`` URI).

    Returns:
        ``(H, W)`` uint32 segment ids ``R + 256 G + 256^2 B``.

    Raises:
        FileNotFoundError: the file does not exist (names it).
        ValueError: the file cannot be decoded or is not an 8-bit RGB(A) image.
    """
    try:
        with PathManager.open(path, "rb") as f:
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
    rgb = id2rgb(ids)

    def write(f) -> None:
        Image.fromarray(rgb, "RGB").save(f, format="PNG")

    atomic_write(path, write)


def label_from_segments(
    ids: np.ndarray,
    segments: Iterable[Mapping[str, Any]],
    *,
    label_divisor: int,
    ignore_label: int,
    thing_ids: Iterable[int],
    category_map: Mapping[int, int] | None = None,
    crowd_as_ignore: bool = False,
    check_areas: bool = False,
    name: str = "<panoptic>",
    context: str = "",
) -> np.ndarray:
    """A segment-id map and its ``segments_info`` -> ``semantic * label_divisor + instance``.

    DeepLab2's rule: pixels of no segment (id 0) are void (``ignore_label``, instance 0);
    thing segments get per-class instance numbers 1, 2, ... in ``segments_info`` order;
    stuff and crowd segments get instance 0.

    Args:
        ids: ``(H, W)`` integer segment ids (0 = void), e.g. from :func:`read_panoptic_png`.
        segments: ``segments_info``: ``id``, ``category_id``, ``iscrowd`` and, for
            ``check_areas``, ``area``.
        label_divisor: the label divisor.
        ignore_label: semantic label of void pixels.
        thing_ids: contiguous ids of the thing classes.
        category_map: dataset category id -> contiguous id; None when ``category_id`` is
            already contiguous (standard dataset dicts).
        crowd_as_ignore: crowd thing segments become void instead of ``class * divisor``.
        check_areas: compare each segment's ``area`` with its pixel count.
        name: the file the ids came from, for error messages.
        context: appended to ``name`` in messages, e.g. ``" (image_id 3, dataset 'x')"``.

    Returns:
        ``(H, W)`` int32 label map.

    Raises:
        ValueError: a segment is absent from the map or listed twice, a non-zero id of the
            map has no segment, a category is unknown, a stuff segment is crowd, an area
            differs, or a class has more instances than ``label_divisor`` allows; each
            message names ``name`` and the segment.
    """
    segments = list(segments)  # iterated twice
    rows, index = _segment_rows(ids, segments, name, context, check_areas)
    thing_ids = {int(t) for t in thing_ids}
    values = np.full(len(index) + 1, ignore_label * label_divisor, dtype=np.int64)
    counters: dict[int, int] = {}
    for seg in segments:
        seg_id, category = int(seg["id"]), int(seg["category_id"])
        where = f"'{name}'{context}, segment {seg_id}"
        if category_map is not None:
            if category not in category_map:
                raise ValueError(
                    f"{where}: unknown category id {category} (known: {sorted(category_map)})"
                )
            category = int(category_map[category])
        crowd = bool(seg.get("iscrowd", 0))
        instance = 0
        if category in thing_ids:
            if crowd and crowd_as_ignore:
                category = ignore_label
            elif not crowd:
                instance = counters[category] = counters.get(category, 0) + 1
                if instance >= label_divisor:
                    raise ValueError(
                        f"{where}: more than {label_divisor - 1} instances of category "
                        f"{seg['category_id']}; they do not fit under label divisor "
                        f"{label_divisor}"
                    )
        elif crowd:
            raise ValueError(
                f"{where}: stuff category {seg['category_id']} is marked iscrowd; only thing "
                "segments may be crowd"
            )
        values[index[seg_id]] = category * label_divisor + instance
    return values.astype(np.int32)[rows]


def check_segments(
    ids: np.ndarray,
    segments: Iterable[Mapping[str, Any]],
    *,
    name: str,
    context: str = "",
    check_areas: bool = True,
) -> None:
    """Checks that a segment-id map and its ``segments_info`` describe the same segments.

    The checks of :func:`label_from_segments` that need no label space: every listed
    segment is in the map once, every non-zero id of the map is listed, and (optionally)
    each ``area`` equals the segment's pixel count.

    Args:
        ids: ``(H, W)`` integer segment ids (0 = void).
        segments: the ``segments_info``.
        name: the file the ids came from, for error messages.
        context: appended to ``name`` in messages.
        check_areas: compare ``area`` fields with the pixel counts.

    Raises:
        ValueError: the two disagree; the message names the file and the segment.
    """
    _segment_rows(ids, segments, name, context, check_areas)


def _segment_rows(
    ids: np.ndarray,
    segments: Iterable[Mapping[str, Any]],
    name: str,
    context: str,
    check_areas: bool,
) -> tuple[np.ndarray, dict[int, int]]:
    """Each pixel's row (0 void, ``k + 1`` for the k-th distinct id) and id -> row, after
    checking the map against ``segments``."""
    # Distinct ids from the runs, then one table gather: np.unique(return_inverse=True)
    # would sort every pixel (8 ms at 640x480 against ~1 ms).
    present = unique_ids(ids).astype(np.int64)
    present = present[present != 0]
    rows = default_lookup()(ids, present, 0)  # void 0 -> row 0, present[k] -> k + 1
    index = {int(v): i + 1 for i, v in enumerate(present)}
    areas = np.bincount(rows.ravel(), minlength=len(present) + 1) if check_areas else None
    listed: set[int] = set()
    for seg in segments:
        seg_id = int(seg["id"])
        where = f"'{name}'{context}, segment {seg_id}"
        if seg_id in listed:
            raise ValueError(f"{where}: listed twice in segments_info")
        listed.add(seg_id)
        if seg_id not in index:
            raise ValueError(
                f"{where} (category {seg.get('category_id')}) of the JSON is missing from the PNG"
            )
        if areas is not None and "area" in seg and int(seg["area"]) != areas[index[seg_id]]:
            raise ValueError(
                f"{where}: the PNG has {areas[index[seg_id]]} pixels of this segment, but its "
                f"'area' is {seg['area']}"
            )
    unlisted = sorted(set(index) - listed)
    if unlisted:
        raise ValueError(
            f"'{name}'{context} contains segment ids {unlisted[:10]} that are not in its "
            "segments_info"
        )
    return rows, index


def read_panoptic_label(
    dataset_dict: Mapping[str, Any],
    image_hw: tuple[int, int],
    *,
    label_divisor: int,
    ignore_label: int,
    thing_ids: Iterable[int],
) -> np.ndarray:
    """A dataset dict's internal panoptic label map ``(H, W)`` int32.

    Args:
        dataset_dict: a dict with ``pan_seg_file_name`` + ``segments_info`` (contiguous
            category ids), or a decoded ``panoptic_label`` array (already
            ``semantic * divisor + instance``) from a record reader.
        image_hw: ``(H, W)`` of the image, to check against.
        label_divisor: the label divisor.
        ignore_label: semantic label of void pixels.
        thing_ids: contiguous ids of thing classes.

    Returns:
        ``(H, W)`` int32 label map (see :func:`label_from_segments`).

    Raises:
        FileNotFoundError: the PNG is missing (names it and the image).
        ValueError: the PNG cannot be decoded, its size differs from the image's, or it
            disagrees with ``segments_info`` (names it and the image).
    """
    from .reading import check_label_size, describe_record

    if dataset_dict.get("panoptic_label") is not None:
        label = np.asarray(dataset_dict["panoptic_label"])
        path = f"<decoded panoptic_label of {dataset_dict.get('file_name')}>"
        if label.ndim != 2:
            raise ValueError(f"{path} must be (H, W), got shape {label.shape}")
        check_label_size(label, image_hw, path, dataset_dict)
        return label.astype(np.int32)
    path = dataset_dict["pan_seg_file_name"]
    try:
        ids = read_panoptic_png(path)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"Panoptic label file not found: '{path}'{describe_record(dataset_dict)}"
        ) from None
    except ValueError as e:
        raise ValueError(f"{e}{describe_record(dataset_dict)}") from None
    check_label_size(ids, image_hw, path, dataset_dict)
    return label_from_segments(
        ids,
        dataset_dict["segments_info"],
        label_divisor=label_divisor,
        ignore_label=ignore_label,
        thing_ids=thing_ids,
        name=path,
        context=describe_record(dataset_dict),
    )


def segments_from_label(
    label: np.ndarray, *, label_divisor: int, ignore_label: int, thing_ids: Iterable[int]
) -> tuple[np.ndarray, list[dict[str, Any]], int]:
    """The segments of an internal ``semantic * label_divisor + instance`` map.

    Thing pixels with instance 0 are crowd (DeepLab2's convention); ``ignore_label`` is void.

    Args:
        label: ``(H, W)`` integer label map.
        label_divisor: the label divisor.
        ignore_label: semantic label of void.
        thing_ids: contiguous ids of the thing classes.

    Returns:
        ``(ids, segments_info, void_id)``: the map itself as segment ids (int64), one segment
        per other value (``id``, contiguous ``category_id``, ``iscrowd``), and the void id.
    """
    thing_ids = {int(t) for t in thing_ids}
    void_id = ignore_label * label_divisor
    segments = []
    for value in unique_ids(label).tolist():
        category, instance = divmod(int(value), label_divisor)
        if category == ignore_label:
            continue
        segments.append(
            {
                "id": int(value),
                "category_id": category,
                "iscrowd": int(category in thing_ids and instance == 0),
            }
        )
    return label.astype(np.int64), segments, void_id


def write_panoptic_prediction(
    path: str,
    id_map: np.ndarray,
    segments_info: Sequence[Mapping[str, Any]] | None,
    label_space: LabelSpace,
) -> list[dict[str, Any]]:
    """Writes one panoptic prediction in COCO panoptic format and returns its segments.

    The PNG holds the segments renumbered ``1..N`` in ``segments_info`` order (0 void), so
    it reads back with :func:`read_panoptic_png` and with panopticapi.

    Args:
        path: the PNG to write.
        id_map: ``(H, W)`` integer segment ids of the model output, -1 void.
        segments_info: the output's segments (``id``, contiguous ``category_id``); None for
            DeepLab2 ids, whose category is ``id // label_divisor``.
        label_space: maps contiguous ids to the dataset's category ids.

    Returns:
        The annotation's ``segments_info``: ``id`` (1..N), dataset ``category_id``,
        ``iscrowd`` 0, ``isthing`` and ``area``.
    """
    id_map = np.asarray(id_map)
    if segments_info is None:
        divisor = label_space.label_divisor
        segments_info = [
            {"id": v, "category_id": v // divisor} for v in unique_ids(id_map).tolist() if v != -1
        ]
    ids = np.array([int(s["id"]) for s in segments_info], dtype=np.int64)
    rows = np.asarray(default_lookup()(id_map, ids, -1), dtype=np.int64)
    # Ids of no listed segment (and void) are void in the PNG.
    rows[rows < 0] = 0
    areas = np.bincount(rows.ravel(), minlength=len(ids) + 1)
    write_panoptic_png(path, rows)
    to_dataset = label_space.contiguous_id_to_dataset_id
    return [
        {
            "id": k + 1,
            "category_id": to_dataset[int(s["category_id"])],
            "iscrowd": 0,
            "isthing": int(label_space.is_thing(int(s["category_id"]))),
            "area": int(areas[k + 1]),
        }
        for k, s in enumerate(segments_info)
    ]


def panoptic_categories(label_space: LabelSpace) -> list[dict[str, Any]]:
    """The ``categories`` of a COCO panoptic JSON for ``label_space`` (dataset ids)."""
    return [
        {
            "id": dataset_id,
            "name": label_space.classes[contiguous],
            "isthing": int(label_space.is_thing(contiguous)),
            "color": list(label_space.colors[contiguous]),
        }
        for contiguous, dataset_id in sorted(label_space.contiguous_id_to_dataset_id.items())
    ]
