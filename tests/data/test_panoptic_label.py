"""Tests of panoptic2/data/panoptic_label.py: the segments <-> label map rules.

The PNG format it re-exports is tested in tests/utils/test_panoptic_png.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from panoptic2.data import panoptic_label
from panoptic2.data.panoptic_label import label_from_segments, segments_from_label
from panoptic2.utils import panoptic_png


def test_png_format_is_re_exported():
    for name in ("decode_panoptic_png", "id2rgb", "read_panoptic_png", "rgb2id"):
        assert getattr(panoptic_label, name) is getattr(panoptic_png, name)
    assert panoptic_label.write_panoptic_png is panoptic_png.write_panoptic_png


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
