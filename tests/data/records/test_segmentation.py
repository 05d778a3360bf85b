"""Tests of panoptic2/data/records/segmentation.py: label formats, feature building, decoding."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from panoptic2.data.records import (
    create_segmentation_features,
    decode_label,
    decode_panoptic_record,
    encode_example,
    encode_panoptic_label,
    parse_example,
)


def _png(array: np.ndarray, mode: str) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array, mode).save(out, format="PNG")
    return out.getvalue()


def test_raw_is_little_endian_int32_row_major():
    label = np.array([[1, 256], [2**24 + 5, 255 * 1000]], np.int64)
    data = encode_panoptic_label(label, "raw")
    assert data == b"".join(int(v).to_bytes(4, "little") for v in label.ravel())
    np.testing.assert_array_equal(decode_label(data, "raw", 2, 2), label)


@pytest.mark.parametrize("fmt,high", [("png16", 2**16 - 1), ("png_rgb", 2**24 - 1)])
def test_png_formats_are_lossless(fmt, high):
    rng = np.random.default_rng(0)
    label = rng.integers(0, high + 1, (7, 9))
    label[0, 0], label[0, 1] = 0, high
    out = decode_label(encode_panoptic_label(label, fmt), fmt, 7, 9)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, label)


def test_png_rgb_uses_coco_channel_order():
    label = np.array([[1 + 2 * 256 + 3 * 65536]])
    rgb = np.asarray(Image.open(io.BytesIO(encode_panoptic_label(label, "png_rgb"))))
    assert rgb[0, 0].tolist() == [1, 2, 3]


def test_png16_rejects_values_it_cannot_hold():
    with pytest.raises(ValueError, match="png16.*png_rgb"):
        encode_panoptic_label(np.array([[255 * 1000]]), "png16")
    with pytest.raises(ValueError, match="Unknown"):
        encode_panoptic_label(np.zeros((2, 2)), "jpeg")


def test_grayscale_is_converted_rgb_kept_as_is():
    gray = np.arange(20, dtype=np.uint8).reshape(4, 5)
    gray_png = _png(gray, "L")
    features = create_segmentation_features(gray_png, "png", "g")
    assert features["image/encoded"] != gray_png
    assert Image.open(io.BytesIO(features["image/encoded"])).mode == "RGB"
    assert (features["image/height"], features["image/width"], features["image/channels"]) == (
        4,
        5,
        3,
    )
    rgb_png = _png(np.stack([gray] * 3, -1), "RGB")
    assert create_segmentation_features(rgb_png, "png", "c")["image/encoded"] == rgb_png


def test_label_size_mismatch_names_image():
    image = _png(np.zeros((4, 5, 3), np.uint8), "RGB")
    with pytest.raises(ValueError, match="Image frame_7: bad label"):
        create_segmentation_features(image, "png", "frame_7", b"\0" * 16, "raw")
    with pytest.raises(ValueError, match="Image frame_7.*differs"):
        create_segmentation_features(
            image, "png", "frame_7", _png(np.zeros((3, 5), np.uint8), "L"), "png"
        )


def test_decode_panoptic_and_semantic_records():
    image = np.random.default_rng(1).integers(0, 255, (4, 5, 3), dtype=np.uint8)
    label = np.arange(20).reshape(4, 5) * 1000
    ex = encode_example(
        create_segmentation_features(
            _png(image, "RGB"), "png", "a", encode_panoptic_label(label, "png_rgb"), "png_rgb"
        )
    )
    out = decode_panoptic_record(parse_example(ex))
    np.testing.assert_array_equal(out["image"], image)
    np.testing.assert_array_equal(out["panoptic_label"], label)
    assert out["sem_seg"] is None and (out["image_id"], out["height"], out["width"]) == ("a", 4, 5)
    sem = (np.arange(20).reshape(4, 5) % 19).astype(np.uint8)
    ex = encode_example(
        create_segmentation_features(_png(image, "RGB"), "png", "b", _png(sem, "L"), "png")
    )
    out = decode_panoptic_record(parse_example(ex))
    assert out["panoptic_label"] is None and out["label_format"] == "png"
    np.testing.assert_array_equal(out["sem_seg"], sem)
    test_only = decode_panoptic_record(
        parse_example(encode_example(create_segmentation_features(_png(image, "RGB"), "png", "t")))
    )
    assert test_only["panoptic_label"] is None and test_only["sem_seg"] is None
