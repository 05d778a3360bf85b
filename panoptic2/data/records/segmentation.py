"""DeepLab2's image/segmentation ``tf.train.Example`` schema: building and decoding examples.

Features (names as in DeepLab2's ``common.py``):

=====================================  ===========================================================
``image/encoded``                      the encoded image (original bytes unless re-encoded to RGB)
``image/filename``                     the image stem (Cityscapes: the prefix before
                                       ``_leftImg8bit``)
``image/format``                       ``jpeg`` or ``png``
``image/height``, ``image/width``      the image size
``image/channels``                     3
``image/segmentation/class/encoded``   the label (absent for test images)
``image/segmentation/class/format``    the label format, see below
=====================================  ===========================================================

Label formats:

* ``raw`` (DeepLab2's default for panoptic data): the panoptic map ``semantic * divisor +
  instance`` as little-endian int32 bytes, row-major ``(H, W)``. TensorFlow reads it with
  ``tf.io.decode_raw(..., tf.int32)``.
* ``png``: an 8-bit single-channel PNG of semantic ids (Cityscapes semantic-only mode, the
  ``*_labelTrainIds.png`` file as is).
* ``png16`` (ours): the panoptic map as a 16-bit grayscale PNG; lossless, valid only when every
  value is below 65536 (COCO: at most ``133 * 256 + 255``), otherwise writing raises.
* ``png_rgb`` (ours): the panoptic map as an 8-bit RGB PNG with ``id = R + 256 G + 256^2 B`` (the
  COCO panoptic PNG encoding); lossless for values below ``2**24``, so it also fits
  Cityscapes (ignore ``255 * 1000``).

The two PNG panoptic formats avoid the size blow-up of ``raw`` (4 bytes per pixel) but only
panoptic2 reads them; keep ``raw`` for records that DeepLab2 must consume.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np
from PIL import Image

from panoptic2.data.label_space import LabelSpace
from panoptic2.data.panoptic_label import label_from_segments, read_panoptic_png

__all__ = [
    "IMAGE_FORMATS",
    "KEY_ENCODED_IMAGE",
    "KEY_ENCODED_LABEL",
    "KEY_IMAGE_CHANNELS",
    "KEY_IMAGE_FILENAME",
    "KEY_IMAGE_FORMAT",
    "KEY_IMAGE_HEIGHT",
    "KEY_IMAGE_WIDTH",
    "KEY_LABEL_FORMAT",
    "LABEL_FORMATS",
    "PANOPTIC_LABEL_FORMATS",
    "create_segmentation_features",
    "decode_label",
    "decode_panoptic_record",
    "encode_panoptic_label",
    "panoptic_label_of",
]

KEY_ENCODED_IMAGE = "image/encoded"
KEY_IMAGE_FILENAME = "image/filename"
KEY_IMAGE_FORMAT = "image/format"
KEY_IMAGE_HEIGHT = "image/height"
KEY_IMAGE_WIDTH = "image/width"
KEY_IMAGE_CHANNELS = "image/channels"
KEY_ENCODED_LABEL = "image/segmentation/class/encoded"
KEY_LABEL_FORMAT = "image/segmentation/class/format"

IMAGE_FORMATS = ("jpeg", "png")
# Formats holding a full panoptic map, and all formats the reader accepts.
PANOPTIC_LABEL_FORMATS = ("raw", "png16", "png_rgb")
LABEL_FORMATS = (*PANOPTIC_LABEL_FORMATS, "png")

# PIL format names of the image formats, for re-encoding non-RGB images.
_PIL_FORMATS = {"jpeg": "JPEG", "png": "PNG"}


def panoptic_label_of(
    label_path: str,
    segments: Sequence[Mapping[str, Any]],
    label_space: LabelSpace,
    *,
    treat_crowd_as_ignore: bool,
    image_path: str,
) -> np.ndarray:
    """DeepLab2's panoptic label of one image from its COCO-format annotation.

    Args:
        label_path: the panoptic PNG.
        segments: its ``segments_info``, with the dataset's own category ids and areas.
        label_space: the dataset's label space (maps categories, gives divisor and void).
        treat_crowd_as_ignore: crowd thing pixels become void.
        image_path: the image, named in errors.

    Returns:
        ``(H, W)`` int32 ``contiguous_id * label_divisor + instance``; see
        :func:`~panoptic2.data.panoptic_label.label_from_segments` (areas are checked).
    """
    return label_from_segments(
        read_panoptic_png(label_path),
        segments,
        label_divisor=label_space.label_divisor,
        ignore_label=label_space.ignore_label,
        thing_ids=label_space.thing_ids,
        category_map=label_space.dataset_id_to_contiguous_id,
        crowd_as_ignore=treat_crowd_as_ignore,
        check_areas=True,
        name=label_path,
        context=f" (image {image_path})",
    )


def encode_panoptic_label(panoptic: np.ndarray, label_format: str = "raw") -> bytes:
    """Encodes a panoptic map in one of :data:`PANOPTIC_LABEL_FORMATS`.

    Args:
        panoptic: ``(H, W)`` integer map, ``semantic * divisor + instance``, non-negative.
        label_format: ``raw``, ``png16`` or ``png_rgb`` (see the module docstring).

    Returns:
        The encoded label bytes.

    Raises:
        ValueError: unknown format, wrong shape, or values that the format cannot hold.
    """
    if panoptic.ndim != 2:
        raise ValueError(f"A panoptic label must be (H, W), got shape {panoptic.shape}.")
    if label_format == "raw":
        if panoptic.size and (panoptic.min() < -(2**31) or panoptic.max() >= 2**31):
            raise ValueError("Panoptic label values do not fit in int32.")
        return np.ascontiguousarray(panoptic, dtype="<i4").tobytes()
    if label_format not in PANOPTIC_LABEL_FORMATS:
        raise ValueError(
            f"Unknown panoptic label format '{label_format}'; use one of {PANOPTIC_LABEL_FORMATS}."
        )
    limit = 2**16 if label_format == "png16" else 2**24
    if panoptic.size and (panoptic.min() < 0 or panoptic.max() >= limit):
        raise ValueError(
            f"Label format '{label_format}' holds values in [0, {limit}); this panoptic map "
            f"spans [{panoptic.min()}, {panoptic.max()}]. Use 'png_rgb' or 'raw'."
        )
    if label_format == "png16":
        array = panoptic.astype(np.uint16)
    else:
        value = panoptic.astype(np.uint32)
        # OpenCV writes BGR, so channel 2 (written as R) holds the low byte.
        array = np.stack([(value >> 16) & 255, (value >> 8) & 255, value & 255], -1)
        array = array.astype(np.uint8)
    ok, buf = cv2.imencode(".png", array, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok:
        raise ValueError(f"OpenCV failed to encode a {label_format} label.")
    return buf.tobytes()


def decode_label(data: bytes, label_format: str, height: int, width: int) -> np.ndarray:
    """Decodes a stored label.

    Args:
        data: the ``image/segmentation/class/encoded`` bytes.
        label_format: its ``image/segmentation/class/format``.
        height: the image height, to reshape and check the label.
        width: the image width.

    Returns:
        ``(H, W) int32``: the panoptic map for the panoptic formats, the semantic map for
        ``png``.

    Raises:
        ValueError: unknown format, undecodable data or a size that differs from the image.
    """
    if label_format == "raw":
        if len(data) != height * width * 4:
            raise ValueError(
                f"A raw label of a {height}x{width} image needs {height * width * 4} bytes, "
                f"got {len(data)}."
            )
        return np.frombuffer(data, dtype="<i4").reshape(height, width).astype(np.int32)
    if label_format not in LABEL_FORMATS:
        raise ValueError(f"Unknown label format '{label_format}'; known: {LABEL_FORMATS}.")
    array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if array is None:
        raise ValueError(f"Could not decode the {label_format} label.")
    if label_format == "png_rgb":
        if array.ndim != 3 or array.shape[2] != 3:
            raise ValueError(f"A png_rgb label must have 3 channels, got shape {array.shape}.")
        array = array.astype(np.int32)
        label = array[..., 2] + (array[..., 1] << 8) + (array[..., 0] << 16)
    else:
        if array.ndim != 2:
            raise ValueError(f"A {label_format} label must be single-channel: {array.shape}.")
        label = array.astype(np.int32)
    if label.shape != (height, width):
        raise ValueError(f"Label size {label.shape} differs from the image's {(height, width)}.")
    return label


def create_segmentation_features(
    image_data: bytes,
    image_format: str,
    filename: str,
    label_data: bytes | None = None,
    label_format: str | None = None,
) -> dict[str, Any]:
    """Builds the features of one example, as DeepLab2's ``data_utils.create_features``.

    A non-RGB image (grayscale, palette, CMYK, RGBA) is converted to RGB and re-encoded in
    ``image_format``; an RGB image keeps its original bytes. The size is the stored pixel
    size (EXIF orientation is not applied, matching ``tf.io.decode_image`` and the labels).

    Args:
        image_data: the encoded image.
        image_format: ``jpeg`` or ``png``.
        filename: the value of ``image/filename`` (an image stem).
        label_data: the encoded label, None for test images.
        label_format: one of :data:`LABEL_FORMATS` when ``label_data`` is given.

    Returns:
        Feature name -> value, ready for :func:`~panoptic2.data.records.encode_example`.

    Raises:
        ValueError: unsupported format, an undecodable image, or a label whose size differs
            from the image's (each message names ``filename``).
    """
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"Image {filename}: unsupported image format '{image_format}'.")
    try:
        image = Image.open(io.BytesIO(image_data))
        image.load()
    except Exception as e:
        raise ValueError(f"Image {filename}: cannot decode the image ({e}).") from e
    if image.mode != "RGB":
        out = io.BytesIO()
        # JPEG re-encoding is lossy: high quality, no chroma subsampling keeps it small.
        options = {"quality": 95, "subsampling": 0} if image_format == "jpeg" else {}
        image.convert("RGB").save(out, format=_PIL_FORMATS[image_format], **options)
        image_data = out.getvalue()
    width, height = image.size
    features: dict[str, Any] = {
        KEY_ENCODED_IMAGE: bytes(image_data),
        KEY_IMAGE_FILENAME: filename,
        KEY_IMAGE_FORMAT: image_format,
        KEY_IMAGE_HEIGHT: height,
        KEY_IMAGE_WIDTH: width,
        KEY_IMAGE_CHANNELS: 3,
    }
    if label_data is None:
        return features
    try:
        decode_label(label_data, label_format or "", height, width)
    except ValueError as e:
        raise ValueError(f"Image {filename}: bad label: {e}") from None
    features[KEY_ENCODED_LABEL] = bytes(label_data)
    features[KEY_LABEL_FORMAT] = label_format
    return features


def _single(example: dict[str, list], key: str, where: str) -> Any:
    values = example.get(key)
    if not values or len(values) != 1:
        raise ValueError(f"{where}: feature '{key}' must hold exactly one value, got {values!r}.")
    return values[0]


def decode_panoptic_record(example: dict[str, list], where: str = "record") -> dict[str, Any]:
    """Decodes a parsed segmentation example into arrays.

    Args:
        example: the output of :func:`~panoptic2.data.records.parse_example`.
        where: a description of the record (file and offset) used in error messages.

    Returns:
        A dict with ``image`` ``(H, W, 3) uint8`` RGB; ``panoptic_label`` ``(H, W) int32``
        (None when the label is absent or semantic); ``sem_seg`` ``(H, W) int32`` for
        ``png`` (semantic) labels, else None; ``image_id`` and ``file_name`` (both the stored
        stem); ``height``, ``width``; ``label_format`` (None without a label).

    Raises:
        ValueError: a feature is missing or malformed, or image and label disagree in size.
    """
    stem = _single(example, KEY_IMAGE_FILENAME, where).decode()
    where = f"{where} (image {stem})"
    height = int(_single(example, KEY_IMAGE_HEIGHT, where))
    width = int(_single(example, KEY_IMAGE_WIDTH, where))
    image_bytes = _single(example, KEY_ENCODED_IMAGE, where)
    # PIL, as the folder readers use, so both paths give identical pixels; no EXIF rotation,
    # like tf.io.decode_image and the stored label.
    try:
        image = np.asarray(Image.open(io.BytesIO(image_bytes)).convert("RGB"))
    except Exception as e:
        raise ValueError(f"{where}: cannot decode image/encoded ({e}).") from e
    if image.shape[:2] != (height, width):
        raise ValueError(f"{where}: image is {image.shape[:2]}, the record says {(height, width)}.")
    out: dict[str, Any] = {
        "image": image,
        "image_id": stem,
        "file_name": stem,
        "height": height,
        "width": width,
        "panoptic_label": None,
        "sem_seg": None,
        "label_format": None,
    }
    if example.get(KEY_ENCODED_LABEL):
        label_format = _single(example, KEY_LABEL_FORMAT, where).decode()
        try:
            label = decode_label(
                _single(example, KEY_ENCODED_LABEL, where), label_format, height, width
            )
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
        out["sem_seg" if label_format == "png" else "panoptic_label"] = label
        out["label_format"] = label_format
    return out
