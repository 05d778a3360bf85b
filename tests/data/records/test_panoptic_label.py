"""Tests of panoptic2/data/records/panoptic_label.py: DeepLab2 label semantics and errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from panoptic2.data.records import generate_panoptic_label, read_panoptic_png

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


def _gen(ids, segments, **kw):
    args = dict(
        id_mapping=MAPPING,
        thing_ids=THINGS,
        label_divisor=256,
        ignore_label=0,
        image_name="img.jpg",
    )
    args.update(kw)
    return generate_panoptic_label(ids, segments, **args)


def test_hand_computed_label():
    ids, segments = _ids()
    expected = np.array([[768, 768, 768, 768], [513, 513, 257, 257], [514, 514, 0, 0]], np.int32)
    out = _gen(ids, segments)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, expected)
    expected[2, 2] = 256  # crowd keeps its class, instance 0
    np.testing.assert_array_equal(_gen(ids, segments, treat_crowd_as_ignore=False), expected)


def test_area_mismatch():
    ids, segments = _ids()
    segments[1]["area"] = 3
    with pytest.raises(ValueError, match=r"Image img.jpg, segment 20: .*2 pixels.*'area' is 3"):
        _gen(ids, segments)


def test_unknown_category():
    ids, segments = _ids()
    segments[2]["category_id"] = 77
    with pytest.raises(ValueError, match=r"Image img.jpg, segment 21: unknown category id 77"):
        _gen(ids, segments)


def test_crowd_stuff():
    ids, segments = _ids()
    segments[0]["iscrowd"] = 1
    with pytest.raises(
        ValueError, match=r"Image img.jpg, segment 10: stuff category 101 is marked iscrowd"
    ):
        _gen(ids, segments)


def test_too_many_instances():
    ids = np.arange(1, 5, dtype=np.int64).reshape(1, 4)
    segments = [{"id": i, "category_id": 1, "iscrowd": 0, "area": 1} for i in range(1, 5)]
    # Divisor 4 holds instances 1..3; the 4th (segment 4) does not fit.
    with pytest.raises(ValueError, match=r"Image img.jpg, segment 4: more than 3 instances"):
        _gen(ids, segments, label_divisor=4)
    np.testing.assert_array_equal(_gen(ids[:, :3], segments[:3], label_divisor=4), [[5, 6, 7]])


def test_read_panoptic_png(tmp_path):
    ids = np.array([[0, 1, 256, 65536 + 2]])
    rgb = np.stack([ids % 256, ids // 256 % 256, ids // 65536], -1).astype(np.uint8)
    Image.fromarray(rgb, "RGB").save(tmp_path / "p.png")
    np.testing.assert_array_equal(read_panoptic_png(str(tmp_path / "p.png")), ids)
    Image.fromarray(rgb[..., 0], "L").save(tmp_path / "g.png")
    with pytest.raises(ValueError, match=r"g.png'.*must be 8-bit RGB"):
        read_panoptic_png(str(tmp_path / "g.png"))
    with pytest.raises(FileNotFoundError, match="missing.png"):
        read_panoptic_png(str(tmp_path / "missing.png"))
