"""Tests of panoptic2.evaluation.panoptic_quality against an in-test panopticapi reference.

The reference below is a straightforward, dict-based PQ following panopticapi's
``pq_compute_single_core`` / ``PQStat.pq_average``: ``np.unique`` over 64-bit pixel-pair
codes and dict loops. It shares no code with the module under test. The DeepLab2 test
images give independent expected numbers (from DeepLab2's ``panoptic_quality_test.py``).
"""

from __future__ import annotations

import copy
import json
import os
from collections import defaultdict

import numpy as np
import pytest
from PIL import Image

from panoptic2.data.panoptic_label import read_panoptic_png
from panoptic2.evaluation.panoptic_quality import (
    PQStat,
    format_pq_tables,
    pq_compute,
    pq_stat_single_image,
)
from panoptic2.ops import segments
from panoptic2.testing.processes import run_fresh_python

from .pq_reference import (
    CATEGORIES,
    assert_results_close,
    make_case,
    reference_image_stats,
    reference_pq,
    reference_results,
    write_coco_folder,
)

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data")
SHARED = os.environ.get("PANOPTIC2_SHARED_DATA", os.path.normpath(SHARED))
COCO_SAMPLE = os.path.join(SHARED, "coco_panoptic_sample")
DEEPLAB2 = os.path.join(SHARED, "deeplab2_pq_testdata")


@pytest.fixture(autouse=True, params=["kernel", "numpy"])
def counting(request, monkeypatch):
    """Runs every test with the C++ pair counting and with the NumPy fallback."""
    if request.param == "numpy":
        monkeypatch.setattr(segments, "has_kernels", lambda: False)
    elif not segments.has_kernels():
        pytest.skip("panoptic2._segment_maps is not built")
    return request.param


def _ours(cases, categories=CATEGORIES, **kwargs):
    stat = PQStat()
    for gt_ids, gt_segs, pred_ids, pred_segs in cases:
        stat += pq_stat_single_image(gt_ids, gt_segs, pred_ids, pred_segs, **kwargs)
    return stat.results(categories)


def test_hand_computed_case():
    # 4x6 image. GT: stuff 10 (top rows), thing 1 instance A (left block), crowd of class 2,
    # void column. Pred: stuff 10 exact, thing 1 shifted, a class-2 FP mostly on crowd,
    # a class-3 FP mostly on void, a class-11 FP on real pixels.
    gt = np.array(
        [
            [5, 5, 5, 5, 5, 0],
            [5, 5, 5, 5, 5, 0],
            [7, 7, 9, 9, 9, 0],
            [7, 7, 9, 9, 9, 0],
        ]
    )
    gt_segs = [
        {"id": 5, "category_id": 10, "iscrowd": 0},
        {"id": 7, "category_id": 1, "iscrowd": 0},
        {"id": 9, "category_id": 2, "iscrowd": 1},
    ]
    pred = np.array(
        [
            [1, 1, 1, 1, 4, 3],
            [1, 1, 1, 1, 1, 3],
            [2, 2, 2, 6, 6, 0],
            [2, 0, 6, 6, 6, 0],
        ]
    )
    pred_segs = [
        {"id": 1, "category_id": 10},  # 9 px on stuff: IoU 9/10
        {"id": 2, "category_id": 1},  # 4 px, 3 on A: IoU 3/(4+4-3) = 0.6
        {"id": 3, "category_id": 3},  # 2 px, both on void: not a FP
        {"id": 4, "category_id": 11},  # 1 px on stuff: FP of 11
        {"id": 6, "category_id": 2},  # 5 px on crowd of class 2: not a FP
    ]
    stat = pq_stat_single_image(gt, gt_segs, pred, pred_segs)
    assert stat[10].tp == 1 and stat[10].iou == pytest.approx(0.9)
    assert stat[1].tp == 1 and stat[1].iou == pytest.approx(0.6)
    assert (stat[11].fp, stat[3].fp, stat[2].fp, stat[2].fn) == (1, 0, 0, 0)
    res = stat.results({k: v for k, v in CATEGORIES.items() if k in (1, 2, 3, 10, 11)})
    assert res["All"]["n"] == 3  # classes 2 and 3 have no TP/FP/FN
    assert res["per_class"][11] == {"pq": 0.0, "sq": 0.0, "rq": 0.0}
    assert res["All"]["pq"] == pytest.approx((0.9 + 0.6 + 0.0) / 3)
    assert res["Things"]["pq"] == pytest.approx(0.6) and res["Stuff"]["n"] == 2


def test_void_is_removed_from_the_union():
    gt = np.array([[1, 1, 0, 0]])
    pred = np.array([[2, 2, 2, 2]])
    gt_segs = [{"id": 1, "category_id": 1, "iscrowd": 0}]
    stat = pq_stat_single_image(gt, gt_segs, pred, [{"id": 2, "category_id": 1}])
    assert stat[1].tp == 1 and stat[1].iou == 1.0  # 2 / (4 + 2 - 2 - 2)


def test_gt_area_comes_from_the_json_as_in_panopticapi():
    gt = np.array([[1, 1, 1, 0]])
    pred = np.array([[2, 2, 2, 0]])
    segs = [{"id": 1, "category_id": 1, "iscrowd": 0, "area": 4}]
    stat = pq_stat_single_image(gt, segs, pred, [{"id": 2, "category_id": 1}])
    assert stat[1].iou == pytest.approx(3 / 4)


@pytest.mark.parametrize("seed", range(12))
def test_generated_cases_match_the_reference(seed):
    cases = [make_case(seed * 10 + k) for k in range(4)]
    assert_results_close(_ours(cases), reference_pq(cases))


def test_generated_cases_exercise_every_rule():
    cases = [make_case(s) for s in range(20)]
    stats = defaultdict(lambda: [0.0, 0, 0, 0])
    for c in cases:
        reference_image_stats(*c, stats=stats)
    totals = np.array([v for v in stats.values()]).sum(axis=0)
    assert totals[1] > 0 and totals[2] > 0 and totals[3] > 0  # TP, FP and FN all occur
    assert_results_close(_ours(cases), reference_results(stats, CATEGORIES))


def test_prediction_void_minus_one_and_int16_fallback():
    gt_ids, gt_segs, pred_ids, pred_segs = make_case(3)
    expected = reference_pq([(gt_ids, gt_segs, pred_ids, pred_segs)])
    # Model outputs use -1 for void and small ids: remap the prediction's ids.
    remap = {s["id"]: 1000 + k for k, s in enumerate(pred_segs)}
    remap[0] = -1
    keys = np.array(sorted(remap))
    shifted = np.array([remap[k] for k in keys])[np.searchsorted(keys, pred_ids)]
    segs = [{**s, "id": remap[s["id"]]} for s in pred_segs]
    got = _ours([(gt_ids, gt_segs, shifted, segs)], pred_void_id=-1)
    assert_results_close(got, expected)
    # Ids beyond the lookup table's range take the searchsorted path.
    big = np.where(shifted >= 0, shifted + (1 << 40), -1)
    segs = [{**s, "id": s["id"] + (1 << 40)} for s in segs]
    assert_results_close(_ours([(gt_ids, gt_segs, big, segs)], pred_void_id=-1), expected)


def _coco_sample():
    with open(os.path.join(COCO_SAMPLE, "panoptic_examples.json")) as f:
        data = json.load(f)
    categories = {c["id"]: c for c in data["categories"]}
    anns = []
    for ann in data["annotations"]:
        ids = read_panoptic_png(os.path.join(COCO_SAMPLE, "panoptic_examples", ann["file_name"]))
        anns.append((ids.astype(np.int64), ann["segments_info"]))
    return categories, anns


def _perturb(ids, segments, seed):
    """A plausible prediction: shifted, some segments dropped/relabelled/merged, noise."""
    rng = np.random.default_rng(seed)
    pred = np.roll(ids, (rng.integers(-6, 7), rng.integers(-6, 7)), axis=(0, 1)).copy()
    segs = [{"id": s["id"], "category_id": s["category_id"]} for s in segments]
    for seg in segs[::5]:
        pred[pred == seg["id"]] = 0
    for seg in segs[1::7]:
        seg["category_id"] = int(rng.choice([1, 3, 184, 200]))
    if len(segs) > 3:  # merge the second segment into the third
        pred[pred == segs[1]["id"]] = segs[2]["id"]
    noise = rng.random(pred.shape) < 0.05
    pred[noise] = segs[3]["id"]
    present = set(np.unique(pred).tolist())
    return pred, [s for s in segs if s["id"] in present]


def test_coco_sample_against_itself_is_perfect():
    categories, anns = _coco_sample()
    assert sum(s["iscrowd"] for _, segs in anns for s in segs) > 0  # real crowd segments
    cases = [(ids, segs, ids, [dict(s) for s in segs]) for ids, segs in anns]
    res = _ours(cases, categories)
    # Crowd-only categories have no TP/FN and are not averaged: everything else is 1.
    assert res["All"]["pq"] == res["All"]["sq"] == res["All"]["rq"] == 1.0
    assert res["All"]["n"] == len(
        {s["category_id"] for _, g in anns for s in g if not s["iscrowd"]}
    )
    assert_results_close(res, reference_pq(cases, categories))


@pytest.mark.parametrize("seed", range(3))
def test_coco_sample_against_perturbed_copies(seed):
    categories, anns = _coco_sample()
    cases = [(ids, segs, *_perturb(ids, segs, seed * 2 + k)) for k, (ids, segs) in enumerate(anns)]
    res = _ours(cases, categories)
    assert 0.2 < res["All"]["pq"] < 1.0
    assert_results_close(res, reference_pq(cases, categories))


# ---------------------------------------------------------------------------------------
# DeepLab2's PQ test images: semantic * divisor + instance maps, ignored label 0 = void.
_COLOR_TO_CLASS = {
    (0, 0, 0): 0,
    (0, 0, 255): 1,
    (255, 0, 0): 2,
    (0, 255, 0): 3,
    (255, 0, 255): 4,
    (0, 255, 255): 5,
    (255, 255, 0): 6,
}
_TEAM_GT = {0: 0, 47: 1, 97: 1, 133: 1, 150: 1, 174: 1, 198: 2, 215: 1, 244: 1, 255: 1}
_BIRD_GT = {92: 5, 176: 3, 255: 4}
_CAT_GT = {0: 0, 255: 6}


def _deeplab2_case(gt_file, gt_map, pred_instance_file, pred_class_file):
    """COCO-style ids + segments_info of a DeepLab2 test image (void: class 0)."""
    gt_inst = np.asarray(Image.open(os.path.join(DEEPLAB2, gt_file)).convert("L")).astype(np.int64)
    gt_cls = np.vectorize(gt_map.__getitem__)(gt_inst)
    rgb = np.asarray(Image.open(os.path.join(DEEPLAB2, pred_class_file)).convert("RGB"))
    pred_cls = np.zeros(rgb.shape[:2], dtype=np.int64)
    for color, cls in _COLOR_TO_CLASS.items():
        pred_cls[(rgb == color).all(axis=2)] = cls
    pred_inst = np.asarray(
        Image.open(os.path.join(DEEPLAB2, pred_instance_file)).convert("L")
    ).astype(np.int64)

    def segments(cls, inst, with_crowd):
        label = np.where(cls == 0, 0, cls * 256 + inst + 1)  # +1: class 1 instance 0 != void
        segs = [
            {"id": int(v), "category_id": int(v - 1) // 256, "iscrowd": 0}
            for v in np.unique(label)
            if v != 0
        ]
        if not with_crowd:
            for s in segs:
                del s["iscrowd"]
        return label, segs

    return (*segments(gt_cls, gt_inst, True), *segments(pred_cls, pred_inst, False))


def test_deeplab2_single_image():
    case = _deeplab2_case(
        "team_gt_instance.png", _TEAM_GT, "team_pred_instance.png", "team_pred_class.png"
    )
    categories = {c: {"isthing": 1} for c in (1, 2)}
    res = _ours([case], categories)
    # DeepLab2's expected values (places=4): PQ, SQ, RQ averaged over classes 1 and 2.
    assert res["All"]["pq"] == pytest.approx(0.62156284, abs=1e-4)
    assert res["All"]["sq"] == pytest.approx(0.64664984, abs=1e-4)
    assert res["All"]["rq"] == pytest.approx(0.9666667, abs=1e-4)
    stat = pq_stat_single_image(*case)
    assert (stat[1].tp + stat[2].tp, stat[1].fn + stat[2].fn, stat[1].fp + stat[2].fp) == (8, 1, 0)
    assert_results_close(res, reference_pq([case], categories))


def test_deeplab2_multiple_images():
    cases = [
        _deeplab2_case("bird_gt.png", _BIRD_GT, "bird_pred_instance.png", "bird_pred_class.png"),
        _deeplab2_case("cat_gt.png", _CAT_GT, "cat_pred_instance.png", "cat_pred_class.png"),
        _deeplab2_case(
            "team_gt_instance.png", _TEAM_GT, "team_pred_instance.png", "team_pred_class.png"
        ),
    ]
    categories = {c: {"isthing": 1} for c in range(1, 7)}
    res = _ours(cases, categories)
    assert res["All"]["pq"] == pytest.approx(0.76855499, abs=1e-4)
    assert res["All"]["sq"] == pytest.approx(0.7769174, abs=1e-4)
    assert res["All"]["rq"] == pytest.approx(0.98888892, abs=1e-4)
    assert_results_close(res, reference_pq(cases, categories))


# ---------------------------------------------------------------------------------------
def test_inconsistent_inputs_are_clear_errors():
    gt = np.array([[1, 1, 0]])
    gt_segs = [{"id": 1, "category_id": 1, "iscrowd": 0}]
    pred = np.array([[2, 3, 0]])
    with pytest.raises(ValueError, match=r"Image 'img7'.*ids \[3\] are in the predicted PNG"):
        pq_stat_single_image(gt, gt_segs, pred, [{"id": 2, "category_id": 1}], image="img7")
    segs = [{"id": 2, "category_id": 1}, {"id": 3, "category_id": 1}, {"id": 4, "category_id": 1}]
    with pytest.raises(ValueError, match=r"predicted segments \[4\].*absent"):
        pq_stat_single_image(gt, gt_segs, pred, segs)
    with pytest.raises(ValueError, match="unknown category_id 9"):
        pq_stat_single_image(
            gt, gt_segs, pred, [{"id": 2, "category_id": 9}, {"id": 3, "category_id": 1}],
            categories=[1],
        )  # fmt: skip
    with pytest.raises(ValueError, match=r"ground-truth segment ids \[1\] are in the PNG"):
        pq_stat_single_image(gt, [], pred, segs[:2])
    with pytest.raises(ValueError, match="size"):
        pq_stat_single_image(gt, gt_segs, pred[:, :2], segs[:2])
    with pytest.raises(ValueError, match="repeat"):
        pq_stat_single_image(gt, gt_segs, pred, segs[:2] + segs[:1])


def test_pq_compute_on_files_matches_in_memory(tmp_path):
    cases = [make_case(100 + k) for k in range(5)]
    gt_json, gt_dir = write_coco_folder(
        tmp_path, "gt", [(k, c[0], c[1]) for k, c in enumerate(cases)], CATEGORIES
    )
    pred_json, pred_dir = write_coco_folder(
        tmp_path, "pred", [(k, c[2], c[3]) for k, c in enumerate(cases)], CATEGORIES
    )
    expected = reference_pq(cases)
    assert_results_close(pq_compute(gt_json, pred_json, gt_dir, pred_dir, workers=1), expected)
    assert_results_close(pq_compute(gt_json, pred_json, workers=2), expected)  # default dirs
    table = format_pq_tables(expected, {k: v["name"] for k, v in CATEGORIES.items()})
    assert "Things" in table and "disc" in table and f"{100 * expected['All']['pq']:.3f}" in table


def test_stat_merging_is_a_sum():
    a, b = PQStat(), PQStat()
    a[1].tp, a[1].iou, b[1].tp, b[1].iou, b[2].fp = 1, 0.75, 2, 1.5, 3
    a += copy.deepcopy(b)
    assert (a[1].tp, a[1].iou, a[2].fp) == (3, 2.25, 3)


def test_pixel_pairs_run_length_encodes_across_rows_and_chunks(monkeypatch):
    monkeypatch.setattr(segments, "has_kernels", lambda: False)
    gt = np.array([[1, 1, 2], [2, 2, 2]], dtype=np.uint32)
    pred = np.array([[5, 5, 5], [5, 6, 6]], dtype=np.int64)
    # Raster order: (1,5) (1,5) | (2,5) (2,5) (2,5)... the run (2,5) crosses the row end.
    expected = ([1, 2, 2], [5, 5, 6], [2, 2, 2])
    monkeypatch.setattr(segments, "_MAX_RUN_FRACTION", 1.0)  # 3 runs in 6 pixels
    for chunk in (1, 2, 4, 1 << 16):
        monkeypatch.setattr(segments, "_RUN_CHUNK", chunk)
        gt_values, pred_values, counts = segments.count_segment_pairs(gt, pred)
        assert (gt_values.tolist(), pred_values.tolist(), counts.tolist()) == expected, chunk
        assert gt_values.dtype == np.uint32 and pred_values.dtype == np.int64


def test_pixel_pairs_falls_back_to_pixels_on_noisy_maps(monkeypatch):
    monkeypatch.setattr(segments, "has_kernels", lambda: False)
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 50, size=(40, 50))
    pred = rng.integers(0, 50, size=(40, 50))
    gt_values, pred_values, counts = segments.count_segment_pairs(gt, pred)
    assert counts is None
    assert np.array_equal(gt_values, gt.ravel()) and np.array_equal(pred_values, pred.ravel())


@pytest.mark.parametrize("chunk", [64, 1000])
def test_run_path_chunks_and_pixel_fallback_agree_with_the_reference(monkeypatch, chunk):
    cases = [make_case(200 + k, h=37, w=53) for k in range(6)]
    # A noisy prediction (every pixel its own run) exercises the per-pixel fallback.
    gt_ids, gt_segs, pred_ids, pred_segs = make_case(7)
    rng = np.random.default_rng(1)
    shuffled = pred_ids.ravel()[rng.permutation(pred_ids.size)].reshape(pred_ids.shape)
    cases.append((gt_ids, gt_segs, shuffled, pred_segs))
    expected = reference_pq(cases)
    monkeypatch.setattr(segments, "has_kernels", lambda: False)
    monkeypatch.setattr(segments, "_RUN_CHUNK", chunk)
    for fraction in (0.0, 0.25, 1.0):  # always per pixel, default, always runs
        monkeypatch.setattr(segments, "_MAX_RUN_FRACTION", fraction)
        assert_results_close(_ours(cases), expected)
        stats = [pq_stat_single_image(*case).pq_per_cat for case in cases]
        if fraction == 0.0:
            per_pixel = stats
        else:  # integer counts identical, IoU sums to rounding
            for ours, base in zip(stats, per_pixel):
                assert set(ours) == set(base)
                for cat, stat in ours.items():
                    assert (stat.tp, stat.fp, stat.fn) == (base[cat].tp, base[cat].fp, base[cat].fn)
                    assert stat.iou == pytest.approx(base[cat].iou, abs=1e-12)


def test_prediction_without_segments_info_uses_the_label_divisor():
    gt_ids, gt_segs, pred_ids, pred_segs = make_case(11)
    expected = reference_pq([(gt_ids, gt_segs, pred_ids, pred_segs)])
    # DeepLab2 labels category * 1000 + instance, void -1, and no segments_info.
    label_of = {s["id"]: s["category_id"] * 1000 + k for k, s in enumerate(pred_segs)}
    label_of[0] = -1
    keys = np.array(sorted(label_of))
    labels = np.array([label_of[k] for k in keys])[np.searchsorted(keys, pred_ids)]
    got = _ours([(gt_ids, gt_segs, labels, None)], pred_void_id=-1, label_divisor=1000)
    assert_results_close(got, expected)
    with pytest.raises(ValueError, match="label_divisor"):
        pq_stat_single_image(gt_ids, gt_segs, labels, None, pred_void_id=-1)
    with pytest.raises(ValueError, match="unknown category_id 7"):
        bad = np.where(labels == labels.max(), 7000, labels)
        pq_stat_single_image(
            gt_ids, gt_segs, bad, None, pred_void_id=-1, label_divisor=1000, categories=CATEGORIES
        )


def _pair_counts_reference(gt, pred):
    """``{(gt id, pred id): pixels}`` and the pairs in raster order of first pixel."""
    codes = list(zip(gt.ravel().tolist(), pred.ravel().tolist()))
    counts: dict[tuple[int, int], int] = defaultdict(int)
    for code in codes:
        counts[code] += 1
    return dict(counts), list(dict.fromkeys(codes))


@pytest.mark.parametrize("gt_dtype", [np.uint32, np.int32, np.int64, np.uint8])
@pytest.mark.parametrize("pred_dtype", [np.int64, np.int32, np.uint32])
def test_pair_counts_equal_a_dict_count(counting, gt_dtype, pred_dtype):
    rng = np.random.default_rng(3)
    low = -1 if np.issubdtype(pred_dtype, np.signedinteger) else 0
    maps = [
        # Piecewise constant (long runs that cross rows), with isolated noisy pixels.
        (
            np.repeat(rng.integers(0, 6, size=(9, 4)), 13, axis=1),
            np.repeat(rng.integers(low, 4, size=(9, 2)), 26, axis=1),
        ),
        # No runs at all, a width that is not a multiple of the kernel's 16-pixel blocks.
        (rng.integers(0, 200, size=(7, 37)), rng.integers(low, 200, size=(7, 37))),
        (np.zeros((1, 1), dtype=np.int64), np.zeros((1, 1), dtype=np.int64)),
        (np.zeros((0, 4), dtype=np.int64), np.zeros((0, 4), dtype=np.int64)),
        # Over 512 distinct pairs: the hash table grows (several times).
        (np.arange(40 * 60).reshape(40, 60) % 251, np.arange(40 * 60).reshape(40, 60) % 97),
    ]
    gt_noise = rng.random(maps[0][0].shape) < 0.05
    maps[0][0][gt_noise] = 7
    for gt, pred in maps:
        gt, pred = gt.astype(gt_dtype), pred.astype(pred_dtype)
        gt_values, pred_values, counts = segments.count_segment_pairs(gt, pred)
        if counts is None:  # NumPy path on noisy maps: one entry per pixel
            counts = np.ones(len(gt_values), dtype=np.int64)
        pairs = list(zip(gt_values.tolist(), pred_values.tolist()))
        got: dict[tuple[int, int], int] = defaultdict(int)
        for pair, count in zip(pairs, counts.tolist()):
            got[pair] += count
        expected_counts, expected_order = _pair_counts_reference(gt, pred)
        assert dict(got) == expected_counts
        if counting == "kernel":  # each pair once, in order of its first pixel
            assert pairs == expected_order


def test_kernel_pairs_keep_uint32_ids_above_2_31(counting):
    # Ids of uint32 maps above 2^31 must come back intact (not as negative int32).
    gt = np.array([[0, 2**31, 2**32 - 1, 2**32 - 1]], dtype=np.uint32)
    pred = np.array([[1, 1, 2**31 + 5, 3]], dtype=np.uint32)
    gt_values, pred_values, counts = segments.count_segment_pairs(gt, pred)
    expected = [(0, 1), (2**31, 1), (2**32 - 1, 2**31 + 5), (2**32 - 1, 3)]
    if counts is None:  # NumPy path: one entry per pixel
        counts = np.ones(len(gt_values), dtype=np.int64)
    assert list(zip(gt_values.tolist(), pred_values.tolist())) == expected
    assert counts.tolist() == [1, 1, 1, 1]


def test_importing_the_module_needs_no_torch():
    """The PQ tool's module loads neither torch nor the evaluators' heavy dependencies."""
    code = (
        "import sys\n"
        "import panoptic2.evaluation.panoptic_quality\n"
        "heavy = ['torch', 'pycocotools', 'cityscapesscripts', 'panoptic2.data']\n"
        "loaded = [m for m in heavy if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    proc = run_fresh_python(code)
    assert proc.returncode == 0, proc.stderr
