"""Benchmark PQ statistics: our per-image path against panopticapi's algorithm, same run.

Writes ``--num-images`` generated ground-truth / prediction pairs (640x480 COCO panoptic
PNGs: stuff bands, overlapping thing instances, crowd, void; the prediction is a shifted,
partly relabelled copy) to a temporary folder, then times per image, single process:

* ``reference``: panopticapi's ``pq_compute_single_core`` written out plainly (PIL decode of
  both PNGs, ``rgb2id``, ``np.unique`` over 64-bit pixel pairs, dict loops);
* ``evaluator``: what ``COCOPanopticEvaluator.process`` does: decode the ground-truth PNG
  (OpenCV), take the prediction from memory (``(H, W)`` int64 ids, -1 void), vectorised
  statistics (the prediction PNG is never written nor decoded: that pass is what it saves);
* ``tool``: ``tools/evaluate_panoptic.py``'s per-image path: decode both PNGs, vectorised.

It checks that the three give the same PQ / SQ / RQ (to 1e-9) and prints the speed-ups::

    python dev/bench/pq.py [--num-images 500]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections import defaultdict

import numpy as np
from PIL import Image
from tabulate import tabulate

from panoptic2.evaluation.panoptic_quality import PQStat, pq_stat_single_image, read_panoptic_png

H, W = 480, 640
THINGS, STUFF = list(range(1, 21)), list(range(21, 31))
CATEGORIES = {c: {"isthing": int(c in THINGS)} for c in THINGS + STUFF}
DIVISOR = 256
OFFSET = 256**3


def make_pair(seed: int):
    """``(gt ids uint32, gt segments, pred label int64 with -1 void, pred segments)``."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W]
    labels = (yy * 4 // H).astype(np.int64)  # four stuff bands
    cats = [int(c) for c in rng.choice(STUFF, 4)]
    crowd = [0, 0, 0, 0]
    for k in range(rng.integers(10, 30)):
        cy, cx, ry, rx = rng.uniform(0, H), rng.uniform(0, W), *rng.uniform(15, 90, size=2)
        labels[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1] = len(cats)
        cats.append(int(rng.choice(THINGS)))
        crowd.append(int(k % 9 == 8))
    labels[:, :12] = -1
    labels[rng.random((H, W)) < 0.01] = -1
    present = np.unique(labels)
    present = present[present >= 0]
    ids = rng.choice(np.arange(1, 1 << 24), size=len(cats), replace=False)
    gt_ids = np.where(labels < 0, 0, ids[np.maximum(labels, 0)]).astype(np.uint32)
    gt_segments = [
        {"id": int(ids[k]), "category_id": cats[k], "iscrowd": crowd[k]} for k in present.tolist()
    ]

    pred = np.roll(labels, (int(rng.integers(-4, 5)), int(rng.integers(-4, 5))), axis=(0, 1))
    pred_cats = [c if rng.random() > 0.15 else int(rng.choice(THINGS)) for c in cats]
    counters: dict[int, int] = defaultdict(int)
    label_of = []
    for c in pred_cats:
        counters[c] += 1
        label_of.append(c * DIVISOR + (counters[c] if c in THINGS else 0))
    label_of = np.array(label_of)
    # Stuff segments of the same class merge (one id), as in a real panoptic output.
    pred_label = np.where(pred < 0, -1, label_of[np.maximum(pred, 0)])
    pred_segments = [
        {"id": int(v), "category_id": int(v) // DIVISOR} for v in np.unique(pred_label) if v >= 0
    ]
    return gt_ids, gt_segments, pred_label, pred_segments


def write_png(path: str, ids: np.ndarray) -> None:
    ids = ids.astype(np.uint32)
    rgb = np.stack([ids & 255, (ids >> 8) & 255, (ids >> 16) & 255], axis=-1).astype(np.uint8)
    Image.fromarray(rgb).save(path)


def reference_single_image(gt_path, gt_segments, pred_path, pred_segments, stats):
    """panopticapi's per-image algorithm, written out plainly."""
    pan_gt = np.array(Image.open(gt_path), dtype=np.uint32)
    pan_gt = pan_gt[:, :, 0] + 256 * pan_gt[:, :, 1] + 256 * 256 * pan_gt[:, :, 2]
    pan_pred = np.array(Image.open(pred_path), dtype=np.uint32)
    pan_pred = pan_pred[:, :, 0] + 256 * pan_pred[:, :, 1] + 256 * 256 * pan_pred[:, :, 2]
    gt_segms = {el["id"]: dict(el) for el in gt_segments}
    pred_segms = {el["id"]: dict(el) for el in pred_segments}
    for label, count in zip(*np.unique(pan_pred, return_counts=True)):
        if label != 0:
            pred_segms[label]["area"] = count
    pan_gt_pred = pan_gt.astype(np.uint64) * OFFSET + pan_pred.astype(np.uint64)
    gt_pred_map = {}
    for label, intersection in zip(*np.unique(pan_gt_pred, return_counts=True)):
        gt_pred_map[(label // OFFSET, label % OFFSET)] = intersection
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
            - gt_pred_map.get((0, pred_label), 0)
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
        intersection = gt_pred_map.get((0, pred_label), 0)
        if pred_info["category_id"] in crowd_labels:
            intersection += gt_pred_map.get((crowd_labels[pred_info["category_id"]], pred_label), 0)
        if intersection / pred_info["area"] > 0.5:
            continue
        stats[pred_info["category_id"]][2] += 1


def reference_pq(stats) -> tuple[float, float, float]:
    values = []
    for c in CATEGORIES:
        iou, tp, fp, fn = stats.get(c, [0.0, 0, 0, 0])
        if tp + fp + fn:
            den = tp + 0.5 * fp + 0.5 * fn
            values.append((iou / den, iou / tp if tp else 0.0, tp / den))
    return tuple(float(np.mean([v[i] for v in values])) for i in range(3))


def main() -> None:
    parser = argparse.ArgumentParser(description="PQ statistics benchmark")
    parser.add_argument("--num-images", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        segments = []
        for i in range(args.num_images):
            gt_ids, gt_segs, pred_label, pred_segs = make_pair(i)
            gt_segs = [{**s, "area": int(np.sum(gt_ids == s["id"]))} for s in gt_segs]
            write_png(os.path.join(tmp, f"{i}_gt.png"), gt_ids)
            write_png(os.path.join(tmp, f"{i}_pred.png"), pred_label + 1)  # PNG void is 0
            segments.append((gt_segs, pred_segs))
        print(f"Wrote {args.num_images} pairs at {W}x{H} in {time.perf_counter() - start:.1f} s")

        times = defaultdict(float)
        ref_stats = defaultdict(lambda: [0.0, 0, 0, 0])
        ours_eval, ours_tool = PQStat(), PQStat()
        for i, (gt_segs, pred_segs) in enumerate(segments):
            gt_path, pred_path = (
                os.path.join(tmp, f"{i}_gt.png"),
                os.path.join(tmp, f"{i}_pred.png"),
            )
            png_segs = [{**s, "id": s["id"] + 1} for s in pred_segs]
            t0 = time.perf_counter()
            reference_single_image(gt_path, gt_segs, pred_path, png_segs, ref_stats)
            t1 = time.perf_counter()
            ours_tool += pq_stat_single_image(
                read_panoptic_png(gt_path), gt_segs, read_panoptic_png(pred_path), png_segs
            )
            t2 = time.perf_counter()
            # The model output is in memory while the evaluator runs: made outside timing.
            pred_label = make_pair(i)[2]
            t3 = time.perf_counter()
            ours_eval += pq_stat_single_image(
                read_panoptic_png(gt_path), gt_segs, pred_label, pred_segs, pred_void_id=-1
            )
            t4 = time.perf_counter()
            times["reference"] += t1 - t0
            times["tool"] += t2 - t1
            times["evaluator"] += t4 - t3

    expected = reference_pq(ref_stats)
    rows = []
    for name, stat in (("evaluator", ours_eval), ("tool", ours_tool)):
        got = stat.results(CATEGORIES)["All"]
        diff = max(abs(got[k] - e) for k, e in zip(("pq", "sq", "rq"), expected))
        if diff > 1e-9:
            raise SystemExit(f"{name} differs from the reference by {diff}")
        rows.append(
            [name, 1000 * times[name] / args.num_images, times["reference"] / times[name], diff]
        )
    rows.insert(
        0, ["reference (panopticapi)", 1000 * times["reference"] / args.num_images, 1.0, 0.0]
    )
    print(f"PQ {100 * expected[0]:.4f}  SQ {100 * expected[1]:.4f}  RQ {100 * expected[2]:.4f}")
    print(
        tabulate(
            rows,
            headers=["path", "ms / image", "speed-up", "max |diff|"],
            tablefmt="pipe",
            floatfmt=(".2f", ".2f", ".2f", ".1e"),
        )  # fmt: skip
    )


if __name__ == "__main__":
    main()
