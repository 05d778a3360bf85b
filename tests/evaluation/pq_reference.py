"""A straightforward, dict-based reimplementation of panopticapi's PQ for the tests.

It follows panopticapi's ``pq_compute_single_core`` / ``PQStat.pq_average``: ``np.unique``
over 64-bit pixel-pair codes and dict loops, and shares no code with
``panoptic2.evaluation.panoptic_quality``. Also: generated test cases and a writer of
COCO-format folders, used by the PQ, evaluator and tool tests.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict

import numpy as np
from PIL import Image

# ---------------------------------------------------------------------------------------
# The reference (panopticapi's algorithm, written out plainly).
_OFFSET = 256 * 256 * 256
_VOID = 0


def reference_image_stats(gt_ids, gt_segments, pred_ids, pred_segments, stats=None):
    """Adds one image to ``stats`` ({category: [iou, tp, fp, fn]}) and returns it.

    ``gt_ids``/``pred_ids`` are (H, W) ids with void 0.
    """
    stats = stats if stats is not None else defaultdict(lambda: [0.0, 0, 0, 0])
    gt_segms = {s["id"]: dict(s) for s in gt_segments}
    pred_segms = {s["id"]: dict(s) for s in pred_segments}
    for label, count in zip(*np.unique(pred_ids, return_counts=True)):
        if label != _VOID:
            pred_segms[int(label)]["area"] = int(count)
    if any("area" not in s for s in gt_segms.values()):
        areas = dict(zip(*(a.tolist() for a in np.unique(gt_ids, return_counts=True))))
        for seg_id, seg in gt_segms.items():
            seg["area"] = areas[seg_id]
    codes = gt_ids.astype(np.uint64) * _OFFSET + pred_ids.astype(np.uint64)
    gt_pred_map = {}
    for label, count in zip(*np.unique(codes, return_counts=True)):
        gt_pred_map[(int(label) // _OFFSET, int(label) % _OFFSET)] = int(count)

    gt_matched, pred_matched = set(), set()
    for (gt_label, pred_label), intersection in gt_pred_map.items():
        if gt_label not in gt_segms or pred_label not in pred_segms:
            continue
        if gt_segms[gt_label]["iscrowd"] == 1:
            continue
        if gt_segms[gt_label]["category_id"] != pred_segms[pred_label]["category_id"]:
            continue
        union = (
            pred_segms[pred_label]["area"]
            + gt_segms[gt_label]["area"]
            - intersection
            - gt_pred_map.get((_VOID, pred_label), 0)
        )
        iou = intersection / union
        if iou > 0.5:
            stats[gt_segms[gt_label]["category_id"]][0] += iou
            stats[gt_segms[gt_label]["category_id"]][1] += 1
            gt_matched.add(gt_label)
            pred_matched.add(pred_label)

    crowd_labels = {}
    for gt_label, gt_info in gt_segms.items():
        if gt_label in gt_matched:
            continue
        if gt_info["iscrowd"] == 1:
            crowd_labels[gt_info["category_id"]] = gt_label
            continue
        stats[gt_info["category_id"]][3] += 1
    for pred_label, pred_info in pred_segms.items():
        if pred_label in pred_matched:
            continue
        intersection = gt_pred_map.get((_VOID, pred_label), 0)
        if pred_info["category_id"] in crowd_labels:
            intersection += gt_pred_map.get((crowd_labels[pred_info["category_id"]], pred_label), 0)
        if intersection / pred_info["area"] > 0.5:
            continue
        stats[pred_info["category_id"]][2] += 1
    return stats


def reference_results(stats, categories):
    """panopticapi's ``pq_average`` for All / Things / Stuff, plus ``per_class``."""
    results = {}
    for name, isthing in (("All", None), ("Things", True), ("Stuff", False)):
        pq = sq = rq = 0.0
        n = 0
        per_class = {}
        for label, info in categories.items():
            if isthing is not None and (info["isthing"] == 1) != isthing:
                continue
            iou, tp, fp, fn = stats.get(label, [0.0, 0, 0, 0])
            if tp + fp + fn == 0:
                per_class[label] = {"pq": 0.0, "sq": 0.0, "rq": 0.0}
                continue
            n += 1
            pq_class = iou / (tp + 0.5 * fp + 0.5 * fn)
            sq_class = iou / tp if tp != 0 else 0
            rq_class = tp / (tp + 0.5 * fp + 0.5 * fn)
            per_class[label] = {"pq": pq_class, "sq": sq_class, "rq": rq_class}
            pq, sq, rq = pq + pq_class, sq + sq_class, rq + rq_class
        # panopticapi divides by zero here; the module documents zeros instead.
        n_ = max(n, 1)
        results[name] = {"pq": pq / n_, "sq": sq / n_, "rq": rq / n_, "n": n}
        if name == "All":
            results["per_class"] = per_class
    return results


def assert_results_close(ours, reference, tol=1e-9):
    """Every number of two ``pq_compute`` structures agrees to ``tol``."""
    for name in ("All", "Things", "Stuff"):
        assert ours[name]["n"] == reference[name]["n"], name
        for key in ("pq", "sq", "rq"):
            assert abs(ours[name][key] - reference[name][key]) <= tol, (name, key)
    assert set(ours["per_class"]) == set(reference["per_class"])
    for cat, values in reference["per_class"].items():
        for key in ("pq", "sq", "rq"):
            assert abs(ours["per_class"][cat][key] - values[key]) <= tol, (cat, key)


# ---------------------------------------------------------------------------------------
# Generated cases: things, stuff, crowd, void, partial overlaps, FPs on void and crowd.
CATEGORIES = {
    1: {"id": 1, "name": "disc", "isthing": 1},
    2: {"id": 2, "name": "box", "isthing": 1},
    3: {"id": 3, "name": "tri", "isthing": 1},
    10: {"id": 10, "name": "sky", "isthing": 0},
    11: {"id": 11, "name": "grass", "isthing": 0},
    12: {"id": 12, "name": "never", "isthing": 0},  # no segment anywhere: excluded
}


def _to_ids(labels, cats, crowd, rng, void_label=-1):
    """Segment-index map -> random 24-bit ids + segments_info (void_label -> id 0)."""
    n = len(cats)
    ids = rng.choice(np.arange(1, 1 << 24), size=n, replace=False)
    id_map = np.where(labels == void_label, 0, ids[np.clip(labels, 0, n - 1)])
    present = set(np.unique(labels).tolist())
    segments = [
        {"id": int(ids[k]), "category_id": int(cats[k]), "iscrowd": int(crowd[k])}
        for k in range(n)
        if k in present
    ]
    return id_map.astype(np.int64), segments


def make_case(seed, h=60, w=80):
    """A ground truth and a perturbed prediction as (gt_ids, gt_segs, pred_ids, pred_segs)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    labels = np.where(yy < h // 2, 0, 1)  # two stuff bands
    cats, crowd = [10, 11], [0, 0]
    for _ in range(rng.integers(3, 9)):  # overlapping thing instances
        cy, cx, ry, rx = rng.uniform(0, h), rng.uniform(0, w), *rng.uniform(4, 16, size=2)
        inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        if inside.sum() == 0:
            continue
        labels[inside] = len(cats)
        cats.append(int(rng.choice([1, 2, 3])))
        crowd.append(0)
    for _ in range(rng.integers(1, 3)):  # crowd rectangles (two of one class sometimes)
        y0, x0 = rng.integers(0, h - 8), rng.integers(0, w - 8)
        labels[y0 : y0 + rng.integers(4, 12), x0 : x0 + rng.integers(4, 12)] = len(cats)
        cats.append(int(rng.choice([1, 2])))
        crowd.append(1)
    labels[:, : rng.integers(0, 6)] = -1  # void stripe
    labels[rng.random((h, w)) < 0.02] = -1  # void speckle

    # Prediction: shift, relabel some classes, drop some segments, add FP blobs.
    pred = np.roll(labels, (rng.integers(-2, 3), rng.integers(-2, 3)), axis=(0, 1)).copy()
    pred_cats = list(cats)
    for k in range(2, len(cats)):
        if rng.random() < 0.2:
            pred_cats[k] = int(rng.choice([1, 2, 3]))
        if rng.random() < 0.1:
            pred[pred == k] = -1
    for _ in range(rng.integers(1, 4)):  # blobs: on void, on crowd, anywhere
        y0, x0 = rng.integers(0, h - 6), rng.integers(0, w - 6)
        pred[y0 : y0 + rng.integers(2, 10), x0 : x0 + rng.integers(2, 10)] = len(pred_cats)
        pred_cats.append(int(rng.choice([1, 2, 3, 10, 11])))
    crowd_cells = np.flatnonzero(
        np.asarray(crowd)[np.clip(labels, 0, None)].ravel() & (labels.ravel() >= 0)
    )
    if len(crowd_cells):  # a prediction lying mostly on a crowd region of its own class
        y, x = np.unravel_index(crowd_cells[len(crowd_cells) // 2], labels.shape)
        pred[max(0, y - 1) : y + 2, max(0, x - 1) : x + 2] = len(pred_cats)
        pred_cats.append(cats[labels[y, x]])
    pred[:, -3:] = np.where(rng.random((h, 3)) < 0.5, len(pred_cats), pred[:, -3:])  # FP on void?
    pred_cats.append(int(rng.choice([1, 10])))
    gt_ids, gt_segs = _to_ids(labels, cats, crowd, rng)
    pred_ids, pred_segs = _to_ids(pred, pred_cats, [0] * len(pred_cats), rng)
    for seg in pred_segs:
        del seg["iscrowd"]
    return gt_ids, gt_segs, pred_ids, pred_segs


def reference_pq(cases, categories=CATEGORIES):
    stats = defaultdict(lambda: [0.0, 0, 0, 0])
    for case in cases:
        reference_image_stats(*case, stats=stats)
    return reference_results(stats, categories)


# ---------------------------------------------------------------------------------------
def _write_png(path, ids):
    ids = ids.astype(np.uint32)
    rgb = np.stack([ids & 255, (ids >> 8) & 255, (ids >> 16) & 255], axis=-1).astype(np.uint8)
    Image.fromarray(rgb).save(path)


def write_coco_folder(root, name, cases_side, categories):
    """Writes ``name.json`` + ``name/`` PNGs from [(image_id, ids, segments)]."""
    os.makedirs(os.path.join(root, name), exist_ok=True)
    anns = []
    for image_id, ids, segs in cases_side:
        file_name = f"{image_id:06d}.png"
        _write_png(os.path.join(root, name, file_name), ids)
        anns.append({"image_id": image_id, "file_name": file_name, "segments_info": segs})
    data = {"annotations": anns, "categories": list(categories.values())}
    with open(os.path.join(root, f"{name}.json"), "w") as f:
        json.dump(data, f)
    return os.path.join(root, f"{name}.json"), os.path.join(root, name)
