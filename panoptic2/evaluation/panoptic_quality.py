"""Panoptic quality (PQ, SQ, RQ) with exactly the semantics of ``panopticapi.pq_compute``.

The statistics of one image compare a ground-truth segment-id map with a predicted one:

* a (ground truth, prediction) pair of the same category matches when its IoU is > 0.5,
  where the union leaves out the prediction's pixels on ground-truth void (id 0); crowd
  ground-truth segments never match;
* unmatched non-crowd ground-truth segments are false negatives (crowd ones never are);
* an unmatched prediction is a false positive unless more than half of it lies on void or
  on the crowd segment of its own category (as in panopticapi, the LAST crowd segment of
  that category in ``segments_info`` order);
* ground-truth areas come from the JSON ``area`` when given (as panopticapi does),
  predicted areas from the pixels.

Instead of panopticapi's ``np.unique`` over 64-bit pixel pairs and dict loops, the pixels
of each distinct (ground truth, prediction) id pair are counted by
:func:`panoptic2.ops.segments.count_segment_pairs`: in one C++ pass over the two maps
(segment maps are piecewise constant, so the pass compares neighbours and hashes only the
~10^4 runs of a 640x480 pair), or without the compiled module by a NumPy run-length
encoding of the maps together (in cache-sized chunks; noisy maps where runs do not pay off
are counted per pixel). The pair ids are turned into segment row indices through a reusable
lookup table, and one weighted ``np.bincount`` over ``gt_row * (P + 1) + pred_row`` gives
the whole intersection matrix. Matching is then array arithmetic over its non-zero entries.
PNGs are decoded by :func:`panoptic2.utils.panoptic_png.read_panoptic_png` (libdeflate and a
C++ unfilter). :func:`pq_compute` runs the same statistics over folders of COCO panoptic
PNGs, in a process pool when asked (``tools/evaluate_panoptic.py``).

Importing this module imports neither torch nor the data package (nor pycocotools or
cityscapesscripts): the PQ tool's whole run on a folder of PNGs costs little more than the
images themselves.
"""

from __future__ import annotations

import functools
import json
import multiprocessing
import os
import sys
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from panoptic2.ops.segments import count_segment_pairs
from panoptic2.utils.panoptic_png import read_panoptic_png
from panoptic2.utils.segment_ids import SegmentLookup, default_lookup

__all__ = [
    "PQStat",
    "PQStatCat",
    "format_pq_tables",
    "pq_compute",
    "pq_stat_single_image",
    "read_panoptic_json",
]

VOID = 0  # segment id of void pixels in COCO panoptic PNGs
_GROUPS = (("All", None), ("Things", True), ("Stuff", False))


@dataclass
class PQStatCat:
    """Sums of one category: IoU of the true positives, and TP / FP / FN counts."""

    iou: float = 0.0
    tp: int = 0
    fp: int = 0
    fn: int = 0

    def __iadd__(self, other: PQStatCat) -> PQStatCat:
        self.iou += other.iou
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn
        return self


class PQStat:
    """Per-category :class:`PQStatCat` sums; ``+=`` merges images, processes or ranks."""

    def __init__(self) -> None:
        self.pq_per_cat: defaultdict[int, PQStatCat] = defaultdict(PQStatCat)

    def __getitem__(self, category_id: int) -> PQStatCat:
        return self.pq_per_cat[category_id]

    def __iadd__(self, other: PQStat) -> PQStat:
        for category_id, stat in other.pq_per_cat.items():
            self.pq_per_cat[category_id] += stat
        return self

    def pq_average(
        self, categories: Mapping[int, Mapping[str, Any]], isthing: bool | None
    ) -> tuple[dict[str, float], dict[int, dict[str, float]]]:
        """Averages PQ/SQ/RQ over the categories that have at least one segment.

        Args:
            categories: ``{category_id: {"isthing": 0/1, ...}}``: the categories to average.
            isthing: True for things only, False for stuff only, None for all.

        Returns:
            ``({"pq", "sq", "rq", "n"}, {category_id: {"pq", "sq", "rq"}})`` as fractions;
            ``n`` counts the categories with a TP, FP or FN. With ``n == 0`` the averages
            are 0 (panopticapi would divide by zero).
        """
        pq = sq = rq = 0.0
        n = 0
        per_class: dict[int, dict[str, float]] = {}
        for category_id, info in categories.items():
            if isthing is not None and bool(info["isthing"]) != isthing:
                continue
            stat = self.pq_per_cat.get(category_id, PQStatCat())
            if stat.tp + stat.fp + stat.fn == 0:
                per_class[category_id] = {"pq": 0.0, "sq": 0.0, "rq": 0.0}
                continue
            n += 1
            denominator = stat.tp + 0.5 * stat.fp + 0.5 * stat.fn
            pq_class = stat.iou / denominator
            sq_class = stat.iou / stat.tp if stat.tp != 0 else 0.0
            rq_class = stat.tp / denominator
            per_class[category_id] = {"pq": pq_class, "sq": sq_class, "rq": rq_class}
            pq, sq, rq = pq + pq_class, sq + sq_class, rq + rq_class
        if n == 0:
            return {"pq": 0.0, "sq": 0.0, "rq": 0.0, "n": 0}, per_class
        return {"pq": pq / n, "sq": sq / n, "rq": rq / n, "n": n}, per_class

    def results(self, categories: Mapping[int, Mapping[str, Any]]) -> dict[str, Any]:
        """The structure ``panopticapi.pq_compute`` returns.

        Args:
            categories: ``{category_id: {"isthing": 0/1, ...}}``.

        Returns:
            ``{"All": {"pq", "sq", "rq", "n"}, "Things": ..., "Stuff": ..., "per_class":
            {category_id: {"pq", "sq", "rq"}}}``, values as fractions.
        """
        results: dict[str, Any] = {}
        for name, isthing in _GROUPS:
            results[name], per_class = self.pq_average(categories, isthing)
            if name == "All":
                results["per_class"] = per_class
        return results


def _segment_arrays(
    segments: Sequence[Mapping[str, Any]], void_id: int, what: str, where: str
) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, category_ids)`` int64 arrays of ``segments``; rejects void and duplicate ids."""
    # Python lists and a set: for the tens of segments of an image, several times faster
    # than building the arrays first and checking them with NumPy.
    id_list = [int(s["id"]) for s in segments]
    distinct = set(id_list)
    if void_id in distinct:
        raise ValueError(f"{where}: a {what} segment uses the void id {void_id}")
    if len(distinct) != len(id_list):
        values, counts = np.unique(id_list, return_counts=True)
        raise ValueError(f"{where}: {what} segment ids {values[counts > 1].tolist()} repeat")
    cats = np.array([int(s["category_id"]) for s in segments], dtype=np.int64)
    return np.array(id_list, dtype=np.int64), cats


def _unknown_ids(values: np.ndarray, rows: np.ndarray) -> list[int]:
    return np.unique(values[rows < 0])[:10].tolist()


def pq_stat_single_image(
    gt_ids: np.ndarray,
    gt_segments: Sequence[Mapping[str, Any]],
    pred_ids: np.ndarray,
    pred_segments: Sequence[Mapping[str, Any]] | None,
    *,
    gt_void_id: int = VOID,
    pred_void_id: int = VOID,
    categories: Iterable[int] | None = None,
    image: str = "",
    lookup: SegmentLookup | None = None,
    label_divisor: int | None = None,
    matches: dict[str, list[int]] | None = None,
) -> PQStat:
    """PQ statistics of one image (panopticapi's ``pq_compute_single_core`` for one pair).

    Args:
        gt_ids: ``(H, W)`` integer ground-truth segment ids.
        gt_segments: ground-truth ``segments_info``: ``id``, ``category_id``, ``iscrowd``
            and optionally ``area`` (used when every segment has it, as panopticapi does).
        pred_ids: ``(H, W)`` integer predicted segment ids.
        pred_segments: predicted ``segments_info``: ``id``, ``category_id``; or None for
            DeepLab2-style labels: every id of ``pred_ids`` but void is a segment of
            category ``id // label_divisor``.
        gt_void_id: id of void in ``gt_ids`` (0 in COCO PNGs).
        pred_void_id: id of unlabelled pixels in ``pred_ids`` (0 in PNGs, -1 in model
            outputs).
        categories: when given, a predicted category outside it is an error.
        image: names the image in error messages.
        lookup: the id-to-row table to use (default: one per process).
        label_divisor: the label divisor of ``pred_ids`` when ``pred_segments`` is None.
        matches: when given, receives the segments behind the errors: ``"missed"``, the
            ids of the non-crowd ground-truth segments without a match (false negatives),
            and ``"false_positives"``, the predicted ids counted as false positives.

    Returns:
        The image's :class:`PQStat`, keyed by the segments' ``category_id``.

    Raises:
        ValueError: different sizes, a PNG id not in its ``segments_info`` (or the
            reverse), a repeated or void segment id, or an unknown predicted category.
    """
    where = f"Image {image!r}" if image else "Image"
    if gt_ids.shape != pred_ids.shape:
        raise ValueError(
            f"{where}: the prediction has size {tuple(pred_ids.shape)} but the ground truth "
            f"{tuple(gt_ids.shape)}"
        )
    if pred_segments is None and not label_divisor:
        raise ValueError(f"{where}: predictions without segments_info need a label_divisor")
    lookup = lookup or default_lookup()
    gt_values, pred_values, counts = count_segment_pairs(gt_ids, pred_ids)
    gt_seg_ids, gt_cats = _segment_arrays(gt_segments, gt_void_id, "ground-truth", where)
    if pred_segments is None:
        # The run values hold every id of the map: far fewer to sort than the pixels.
        pred_seg_ids = np.unique(pred_values).astype(np.int64)
        pred_seg_ids = pred_seg_ids[pred_seg_ids != pred_void_id]
        pred_cats = pred_seg_ids // label_divisor
    else:
        pred_seg_ids, pred_cats = _segment_arrays(pred_segments, pred_void_id, "predicted", where)
    if categories is not None:
        known = set(categories)
        if not known.issuperset(pred_cats.tolist()):
            unknown = [(i, c) for i, c in zip(pred_seg_ids.tolist(), pred_cats.tolist())
                       if c not in known]  # fmt: skip
            raise ValueError(
                f"{where}: predicted segment {unknown[0][0]} has unknown category_id "
                f"{unknown[0][1]} (known: {sorted(known)[:20]}...)"
            )

    num_gt, num_pred = len(gt_seg_ids), len(pred_seg_ids)
    # Ground-truth rows come pre-multiplied by P + 1, so their sum with the prediction's
    # rows is the joint code gt_row * (P + 1) + pred_row (int16 while it fits).
    gt_rows = lookup(gt_values, gt_seg_ids, gt_void_id, scale=num_pred + 1)
    pred_rows = lookup(pred_values, pred_seg_ids, pred_void_id)
    if (gt_rows < 0).any():
        raise ValueError(
            f"{where}: ground-truth segment ids {_unknown_ids(gt_values, gt_rows)} are in "
            "the PNG but not in its segments_info"
        )
    if (pred_rows < 0).any():
        raise ValueError(
            f"{where}: segment ids {_unknown_ids(pred_values, pred_rows)} are in the "
            "predicted PNG but not in its segments_info"
        )
    # Row 0 / column 0: void; intersection[g, p] = pixels of gt row g and pred column p.
    size = (num_gt + 1) * (num_pred + 1)
    if size < np.iinfo(np.int16).max:
        joint = np.add(gt_rows, pred_rows, dtype=np.int16)
    else:
        joint = gt_rows.astype(np.int64) + pred_rows
    # Weighted counts are float64 sums of integers, exact below 2^53 pixels.
    intersection = np.bincount(joint, weights=counts, minlength=size)
    intersection = intersection.astype(np.int64, copy=False).reshape(num_gt + 1, num_pred + 1)
    gt_pixels = intersection.sum(axis=1)[1:]
    pred_area = intersection.sum(axis=0)[1:]
    absent = np.flatnonzero(gt_pixels == 0)
    if len(absent):
        raise ValueError(
            f"{where}: ground-truth segments {gt_seg_ids[absent][:10].tolist()} of "
            "segments_info are absent from the PNG"
        )
    absent = np.flatnonzero(pred_area == 0)
    if len(absent):
        raise ValueError(
            f"{where}: predicted segments {pred_seg_ids[absent][:10].tolist()} of "
            "segments_info are absent from the predicted PNG"
        )
    if all("area" in s for s in gt_segments):
        gt_area = np.fromiter((s["area"] for s in gt_segments), dtype=np.int64, count=num_gt)
    else:
        gt_area = gt_pixels
    crowd = np.fromiter((bool(s.get("iscrowd", 0)) for s in gt_segments), dtype=bool, count=num_gt)
    void_overlap = intersection[0, 1:]
    pairs = intersection[1:, 1:]

    # True positives: same category, non-crowd ground truth, IoU > 0.5 (unique by IoU).
    g, p = np.nonzero(pairs)
    keep = (gt_cats[g] == pred_cats[p]) & ~crowd[g]
    g, p = g[keep], p[keep]
    inter = pairs[g, p]
    union = pred_area[p] + gt_area[g] - inter - void_overlap[p]
    iou = inter / union
    matched = iou > 0.5
    g, p, iou = g[matched], p[matched], iou[matched]

    stat = PQStat()
    for row, value in zip(g.tolist(), iou.tolist()):
        cat_stat = stat[int(gt_cats[row])]
        cat_stat.tp += 1
        cat_stat.iou += value
    gt_matched = np.zeros(num_gt, dtype=bool)
    gt_matched[g] = True
    pred_matched = np.zeros(num_pred, dtype=bool)
    pred_matched[p] = True

    # False negatives; the crowd segment per category is the last one listed.
    crowd_row: dict[int, int] = {}
    missed, false_positives = [], []
    for row in range(num_gt):
        if crowd[row]:
            crowd_row[int(gt_cats[row])] = row
        elif not gt_matched[row]:
            stat[int(gt_cats[row])].fn += 1
            missed.append(int(gt_seg_ids[row]))
    # False positives, unless more than half of the prediction is void or same-class crowd.
    for col in np.flatnonzero(~pred_matched).tolist():
        cat = int(pred_cats[col])
        ignored = int(void_overlap[col])
        if cat in crowd_row:
            ignored += int(pairs[crowd_row[cat], col])
        if ignored / pred_area[col] > 0.5:
            continue
        stat[cat].fp += 1
        false_positives.append(int(pred_seg_ids[col]))
    if matches is not None:
        matches["missed"] = missed
        matches["false_positives"] = false_positives
    return stat


def format_pq_tables(
    results: Mapping[str, Any], category_names: Mapping[int, str] | None = None
) -> str:
    """Tables of a :meth:`PQStat.results` structure, values x100.

    Args:
        results: ``{"All", "Things", "Stuff", "per_class"}`` as returned by ``results``.
        category_names: names of the per-class rows (default: the category ids).

    Returns:
        The summary table and the per-category table (categories with segments only).
    """
    from tabulate import tabulate

    rows = [
        [name, 100 * results[name]["pq"], 100 * results[name]["sq"], 100 * results[name]["rq"],
         results[name]["n"]]
        for name, _ in _GROUPS
    ]  # fmt: skip
    summary = tabulate(
        rows, headers=["", "PQ", "SQ", "RQ", "#categories"], tablefmt="pipe", floatfmt=".3f",
        stralign="center", numalign="center",
    )  # fmt: skip
    names = category_names or {}
    per_class = [
        [names.get(cat, str(cat)), 100 * r["pq"], 100 * r["sq"], 100 * r["rq"]]
        for cat, r in results.get("per_class", {}).items()
        if r["pq"] or r["sq"] or r["rq"]
    ]
    per_class_table = tabulate(
        per_class, headers=["category", "PQ", "SQ", "RQ"], tablefmt="pipe", floatfmt=".3f"
    )
    return f"Panoptic quality:\n{summary}\nPer category (with a true positive):\n{per_class_table}"


def read_panoptic_json(path: str, what: str = "panoptic JSON") -> dict:
    """Reads a COCO panoptic JSON; a missing or malformed file raises an error naming it.

    Args:
        path: the JSON file.
        what: names the file in errors, e.g. ``"ground-truth JSON"``.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not valid JSON.
    """
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"The {what} '{path}' does not exist") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"The {what} '{path}' is not valid JSON: {e}") from None


def _image_stat(
    pair: tuple[Mapping[str, Any], Mapping[str, Any]],
    gt_folder: str,
    pred_folder: str,
    categories: Sequence[int],
) -> PQStat:
    """Statistics of one ``(gt annotation, pred annotation)`` pair read from the folders."""
    gt_ann, pred_ann = pair
    gt_ids = read_panoptic_png(os.path.join(gt_folder, gt_ann["file_name"]))
    pred_ids = read_panoptic_png(os.path.join(pred_folder, pred_ann["file_name"]))
    return pq_stat_single_image(
        gt_ids,
        gt_ann["segments_info"],
        pred_ids,
        pred_ann["segments_info"],
        categories=categories,
        image=f"{gt_ann['image_id']} ({gt_ann['file_name']})",
    )


def _pool_context() -> multiprocessing.context.BaseContext:
    """``fork`` where it exists and torch is not loaded (workers start in milliseconds and
    inherit the imports), else ``spawn`` (forking after torch started its threads can hang).
    """
    if "torch" not in sys.modules and "fork" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def _load_json(source: str | Mapping[str, Any], what: str) -> Mapping[str, Any]:
    return source if isinstance(source, Mapping) else read_panoptic_json(source, what)


def _default_folder(folder: str | None, json_file: str | Mapping[str, Any], what: str) -> str:
    if folder:
        return folder
    if isinstance(json_file, Mapping):
        raise ValueError(f"The {what} PNG folder must be given with an already loaded JSON")
    return os.path.splitext(json_file)[0]


def pq_compute(
    gt_json_file: str | Mapping[str, Any],
    pred_json_file: str | Mapping[str, Any],
    gt_folder: str | None = None,
    pred_folder: str | None = None,
    *,
    workers: int | None = None,
) -> dict[str, Any]:
    """PQ of a folder of predicted COCO panoptic PNGs against the ground truth.

    Same inputs and output as ``panopticapi.evaluation.pq_compute``. Per-image statistics
    are summed in the ground truth's image order whatever the number of workers, so every
    ``workers`` gives bit-identical results (panopticapi's sums depend on its core count).

    Args:
        gt_json_file: ground-truth panoptic JSON (``annotations``, ``categories``), or its
            already loaded content.
        pred_json_file: predicted panoptic JSON (``annotations`` with ``image_id``,
            ``file_name``, ``segments_info``), or its already loaded content.
        gt_folder: folder of the ground-truth PNGs (default: the JSON's path without
            ``.json``, as panopticapi; required with a loaded JSON).
        pred_folder: folder of the predicted PNGs (default likewise).
        workers: processes (default: the CPU count, at most one per image); 1 runs in this
            process.

    Returns:
        ``{"All": {"pq", "sq", "rq", "n"}, "Things": ..., "Stuff": ..., "per_class":
        {category_id: {"pq", "sq", "rq"}}}``, values as fractions.

    Raises:
        FileNotFoundError: a JSON or a PNG is missing (names it).
        ValueError: an image of the ground truth has no prediction, or a prediction is
            inconsistent (names the image and segment).
    """
    gt_json = _load_json(gt_json_file, "ground-truth JSON")
    pred_json = _load_json(pred_json_file, "prediction JSON")
    gt_folder = _default_folder(gt_folder, gt_json_file, "ground-truth")
    pred_folder = _default_folder(pred_folder, pred_json_file, "prediction")
    for folder, what in ((gt_folder, "ground-truth"), (pred_folder, "prediction")):
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"The {what} PNG folder '{folder}' does not exist")
    categories = {int(c["id"]): c for c in gt_json["categories"]}
    predictions = {ann["image_id"]: ann for ann in pred_json.get("annotations", [])}
    pred_name = "the prediction JSON"
    if not isinstance(pred_json_file, Mapping):
        pred_name = f"'{pred_json_file}'"
    pairs = []
    for gt_ann in gt_json["annotations"]:
        if gt_ann["image_id"] not in predictions:
            raise ValueError(
                f"No prediction for the image with id {gt_ann['image_id']!r} "
                f"('{gt_ann['file_name']}') in {pred_name}"
            )
        pairs.append((gt_ann, predictions[gt_ann["image_id"]]))

    workers = max(1, min(workers or os.cpu_count() or 1, len(pairs)))
    one_image = functools.partial(
        _image_stat, gt_folder=gt_folder, pred_folder=pred_folder, categories=list(categories)
    )
    stat = PQStat()
    if workers == 1:
        for pair in pairs:
            stat += one_image(pair)
    else:
        # Ordered results in chunks of a few tens of images: little pickling per image, and
        # the sum runs in image order as with one worker.
        chunksize = max(1, min(64, len(pairs) // (4 * workers)))
        with _pool_context().Pool(workers) as pool:
            for image_stat in pool.imap(one_image, pairs, chunksize=chunksize):
                stat += image_stat
    return stat.results(categories)
