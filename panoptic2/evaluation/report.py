"""An HTML page per evaluation: metric tables, per-image scores, the worst images.

:class:`EvaluationReport` runs beside the metric evaluators (``TEST.REPORT True``, or
``tools/eval_report.py``). For every image it computes the image's own PQ (its segments
matched as in :func:`~.panoptic_quality.pq_stat_single_image`) and mIoU, remembers which
ground-truth segments were missed and which predicted ones were false positives, and keeps
the prediction as a PNG. After the evaluation, :meth:`EvaluationReport.write` renders one
self-contained static page: the metrics of every evaluator, PQ/SQ/RQ and IoU per class, a
per-image table sortable by PQ or mIoU, and a gallery of the worst images (image | ground
truth | prediction, false positives outlined in red and missed segments in yellow), the
images embedded. It opens from disk with no server; the only script sorts the table.
"""

from __future__ import annotations

import base64
import html
import logging
import os
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import cv2
import numpy as np
import torch

from panoptic2.data.label_space import LabelSpace
from panoptic2.data.panoptic_label import read_panoptic_png, write_panoptic_prediction
from panoptic2.data.reading import read_sem_seg
from panoptic2.layers.argmax import argmax_over_classes
from panoptic2.utils.file_io import atomic_write

from .evaluator import DatasetEvaluator
from .panoptic_quality import PQStat, pq_stat_single_image
from .sem_seg_evaluation import semantic_metrics

__all__ = ["EvaluationReport"]

logger = logging.getLogger(__name__)

# Keys of an input dict the gallery needs to draw its ground truth.
_GT_KEYS = (
    "file_name",
    "height",
    "width",
    "pan_seg_file_name",
    "segments_info",
    "sem_seg_file_name",
)
_MISSED = (255, 210, 0)
_GALLERY_WIDTH = 960  # pixels of a gallery row, at least
_FALSE_POSITIVE = (230, 20, 20)


class EvaluationReport(DatasetEvaluator):
    """Collects per-image results for the HTML report of one evaluated dataset.

    Args:
        dataset_name: the evaluated dataset.
        output_dir: where ``report.html`` and the prediction PNGs (``report_files/``) go;
            visible to every rank.
        label_space: the dataset's label space.
        worst_k: images in the gallery.
    """

    def __init__(
        self, dataset_name: str, output_dir: str, *, label_space: LabelSpace, worst_k: int = 12
    ) -> None:
        self._dataset_name = dataset_name
        self._output_dir = output_dir
        self.label_space = label_space
        self._worst_k = int(worst_k)
        self._categories = {
            c: {"isthing": int(label_space.is_thing(c))}
            for c in (*label_space.thing_ids, *label_space.stuff_ids)
        }
        self._files = os.path.join(output_dir, "report_files")
        self.reset()

    def reset(self) -> None:
        self._records: list[dict[str, Any]] = []
        self._pq = PQStat()
        self._confusion = np.zeros((self.label_space.num_classes,) * 2, np.int64)
        self._merged: tuple[list[dict], PQStat, np.ndarray] | None = None

    def _ground_truth(self, inp: Mapping[str, Any]) -> tuple[np.ndarray, list] | None:
        if "pan_seg_file_name" in inp and "segments_info" in inp:
            return read_panoptic_png(inp["pan_seg_file_name"]), inp["segments_info"]
        return None

    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
        space = self.label_space
        os.makedirs(os.path.join(self._files, "pred"), exist_ok=True)
        for inp, out in zip(inputs, outputs):
            stem = os.path.splitext(os.path.basename(str(inp.get("file_name", inp["image_id"]))))[0]
            record = {k: inp[k] for k in _GT_KEYS if k in inp}
            record.update(image_id=inp.get("image_id"), stem=stem, pq=None, miou=None)
            gt = self._ground_truth(inp)
            if "panoptic_seg" in out:
                id_map, segments = out["panoptic_seg"]
                id_map = torch.as_tensor(id_map).cpu().numpy()
                png = os.path.join(self._files, "pred", f"{stem}.png")
                infos = write_panoptic_prediction(png, id_map, segments, space)
                record["prediction"] = {"png": png, "segments_info": infos}
                if gt is not None:
                    # The PNG's segments (ids 1..N, dataset categories) as the model's.
                    to_contiguous = space.dataset_id_to_contiguous_id
                    pred_segments = [
                        {"id": s["id"], "category_id": to_contiguous[s["category_id"]]}
                        for s in infos
                    ]
                    matches: dict[str, list[int]] = {}
                    stat = pq_stat_single_image(
                        gt[0],
                        gt[1],
                        read_panoptic_png(png),
                        pred_segments,
                        gt_void_id=0,
                        pred_void_id=0,
                        image=f"'{inp.get('file_name')}'",
                        matches=matches,
                    )
                    self._pq += stat
                    summary = stat.results(self._categories)["All"]
                    record["pq"] = 100 * summary["pq"] if summary["n"] else None
                    record.update(matches)
            if "sem_seg" in out and out["sem_seg"].shape[0] == space.num_classes:
                pred = argmax_over_classes(torch.as_tensor(out["sem_seg"])).cpu().numpy()
                truth = self._semantic_truth(inp, gt, pred.shape)
                if truth is not None and truth.shape == pred.shape:
                    confusion = _confusion(truth, pred, space.num_classes, space.ignore_label)
                    self._confusion += confusion
                    iou = semantic_metrics(confusion)["iou"]
                    record["miou"] = (
                        float(100 * np.nanmean(iou)) if np.isfinite(iou).any() else None
                    )
                if "prediction" not in record:
                    png = os.path.join(self._files, "pred", f"{stem}.png")
                    _write_png(png, pred.astype(np.uint16))
                    record["prediction"] = {"png": png, "semantic": True}
            self._records.append(record)

    def _semantic_truth(
        self, inp: Mapping[str, Any], gt: tuple | None, size: tuple[int, int]
    ) -> np.ndarray | None:
        space = self.label_space
        if "sem_seg_file_name" in inp and gt is None:
            return read_sem_seg(inp, size)
        if gt is None:
            return None
        ids, segments = gt
        truth = np.full(ids.shape, space.ignore_label, np.int64)
        for s in segments:
            truth[ids == s["id"]] = int(s["category_id"])
        return truth

    def state(self) -> tuple[list[dict], PQStat, np.ndarray]:
        return self._records, self._pq, self._confusion

    def compute_metrics(self, states: list[tuple[list[dict], PQStat, np.ndarray]]) -> dict:
        records = [r for part, _, _ in states for r in part]
        total = PQStat()
        for _, stat, _ in states:
            total += stat
        confusion = sum(c for _, _, c in states)
        self._merged = (records, total, confusion)
        return {}  # the report is written by write(), with every evaluator's results

    def write(self, results: Mapping[str, Any], iteration: int | None = None) -> str | None:
        """Writes ``report.html`` (main process, after :meth:`evaluate`).

        Args:
            results: the metrics of the evaluation (``{task: {metric: value}}``).
            iteration: the training iteration evaluated, for the header.

        Returns:
            The page's path, or None where nothing was collected (other ranks).
        """
        if self._merged is None:
            return None
        records, total, confusion = self._merged
        path = os.path.join(self._output_dir, "report.html")
        page = _render_page(
            self._dataset_name,
            self.label_space,
            results,
            records,
            total,
            confusion,
            self._gallery(records),
            iteration,
        )
        atomic_write(path, lambda f: f.write(page.encode("utf-8")))
        logger.info("Wrote the evaluation report %s", path)
        return path

    def _gallery(self, records: list[dict]) -> list[dict[str, Any]]:
        from panoptic2.data.reading import read_image
        from panoptic2.utils.visualizer import Visualizer

        scored = [r for r in records if _score(r) is not None and "prediction" in r]
        worst = sorted(scored, key=_score)[: self._worst_k]
        space = self.label_space
        items = []
        for r in worst:
            image = read_image(r, "RGB")
            truth = Visualizer(image, space).draw_dataset_dict(r).get_image()
            prediction = r["prediction"]
            ids = read_panoptic_png(prediction["png"]).astype(np.int64)
            drawing = Visualizer(image, space)
            if prediction.get("semantic"):
                predicted = drawing.draw_sem_seg(ids).get_image()
            else:
                to_contiguous = space.dataset_id_to_contiguous_id
                segments = [
                    dict(s, category_id=to_contiguous[s["category_id"]])
                    for s in prediction["segments_info"]
                ]
                predicted = drawing.draw_panoptic_seg(
                    np.where(ids == 0, -1, ids), segments
                ).get_image()
                _outline(predicted, ids, r.get("false_positives", []), _FALSE_POSITIVE)
                if "pan_seg_file_name" in r:
                    gt_ids = read_panoptic_png(r["pan_seg_file_name"])
                    for panel in (truth, predicted):
                        _outline(panel, gt_ids, r.get("missed", []), _MISSED)
            row = np.concatenate([image, truth, predicted], axis=1)
            # Small images are enlarged by an integer factor, pixels kept sharp.
            factor = max(1, _GALLERY_WIDTH // row.shape[1])
            if factor > 1:
                row = cv2.resize(row, None, fx=factor, fy=factor, interpolation=cv2.INTER_NEAREST)
            items.append({"record": r, "jpeg": _jpeg_base64(row)})
        return items


def _score(record: Mapping[str, Any]) -> float | None:
    return record["pq"] if record.get("pq") is not None else record.get("miou")


def _confusion(truth: np.ndarray, pred: np.ndarray, n: int, ignore: int) -> np.ndarray:
    valid = (truth != ignore) & (truth >= 0) & (truth < n)
    index = truth[valid] * n + pred[valid]
    return np.bincount(index, minlength=n * n).reshape(n, n)


def _write_png(path: str, array: np.ndarray) -> None:
    ok, data = cv2.imencode(".png", array)
    if not ok:
        raise RuntimeError(f"OpenCV cannot encode {path}")
    atomic_write(path, lambda f: f.write(data.tobytes()))


def _outline(panel: np.ndarray, ids: np.ndarray, segment_ids: list[int], color) -> None:
    """Draws the outlines of ``segment_ids`` of ``ids`` on the RGB ``panel`` in place."""
    for segment_id in segment_ids:
        mask = (ids == segment_id).astype(np.uint8)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(panel, contours, -1, color, thickness=2)


def _jpeg_base64(rgb: np.ndarray) -> str:
    ok, data = cv2.imencode(
        ".jpg", np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 90]
    )
    if not ok:
        raise RuntimeError("OpenCV cannot encode a gallery image")
    return base64.b64encode(data.tobytes()).decode("ascii")


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "–"
    return f"{value:.2f}" if isinstance(value, float) else html.escape(str(value))


def _table(
    headers: list[str], rows: list[list[Any]], table_id: str = "", sortable: bool = False
) -> str:
    attrs = f' id="{table_id}"' if table_id else ""
    attrs += ' class="sortable"' if sortable else ""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for value in row:
            sort_key = value if isinstance(value, (int, float)) and value is not None else ""
            data = f' data-v="{sort_key}"' if sortable else ""
            cells.append(f"<td{data}>{_fmt(value)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table{attrs}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _metric_tables(results: Mapping[str, Any]) -> str:
    parts = []
    for task, metrics in results.items():
        if not isinstance(metrics, Mapping):
            continue
        rows = [[k, v] for k, v in metrics.items() if isinstance(v, (int, float))]
        parts.append(f"<h3>{html.escape(str(task))}</h3>" + _table(["metric", "value"], rows))
    return "".join(parts)


def _per_class_tables(space: LabelSpace, total: PQStat, confusion: np.ndarray) -> str:
    parts = []
    categories = {
        c: {"isthing": int(space.is_thing(c))} for c in (*space.thing_ids, *space.stuff_ids)
    }
    if total.pq_per_cat:
        per_class = total.results(categories)["per_class"]
        rows = []
        for c in sorted(categories):
            stat = total.pq_per_cat.get(c)
            if stat is None or stat.tp + stat.fp + stat.fn == 0:
                continue
            values = per_class[c]
            kind = "thing" if space.is_thing(c) else "stuff"
            rows.append(
                [space.classes[c], kind, 100 * values["pq"], 100 * values["sq"],
                 100 * values["rq"], stat.tp, stat.fp, stat.fn]
            )  # fmt: skip
        parts.append(
            "<h3>PQ per class</h3>"
            + _table(["class", "kind", "PQ", "SQ", "RQ", "TP", "FP", "FN"], rows, "pq-classes")
        )
    if confusion.sum():
        metrics = semantic_metrics(confusion)
        rows = [
            [space.classes[c], 100 * metrics["iou"][c], 100 * metrics["acc"][c]]
            for c in range(space.num_classes)
            if np.isfinite(metrics["iou"][c])
        ]
        parts.append(
            "<h3>IoU per class</h3>" + _table(["class", "IoU", "accuracy"], rows, "iou-classes")
        )
    return "".join(parts)


_STYLE = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222}
table{border-collapse:collapse;margin:8px 0 20px}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#eee;cursor:default}
table.sortable th{cursor:pointer}
td:first-child,th:first-child{text-align:left}
.gallery figure{margin:0 0 18px}
.gallery img{max-width:100%;image-rendering:pixelated;border:1px solid #999}
.legend span{display:inline-block;width:14px;height:14px;vertical-align:middle;margin:0 4px}
"""

# Sorts a table by the clicked column (numbers by data-v; blanks last); no framework needed.
_SCRIPT = """
document.querySelectorAll("table.sortable th").forEach(function (th, column) {
  th.addEventListener("click", function () {
    var table = th.closest("table"), body = table.tBodies[0];
    var ascending = th.dataset.order !== "asc";
    th.dataset.order = ascending ? "asc" : "desc";
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[column].dataset.v, y = b.cells[column].dataset.v;
      var xs = x === "" ? null : parseFloat(x), ys = y === "" ? null : parseFloat(y);
      if (xs === null || isNaN(xs)) { x = a.cells[column].textContent; xs = null; }
      if (ys === null || isNaN(ys)) { y = b.cells[column].textContent; ys = null; }
      if (xs === null || ys === null) {
        if (xs === null && ys === null) { return x.localeCompare(y) * (ascending ? 1 : -1); }
        return xs === null ? 1 : -1;
      }
      return (xs - ys) * (ascending ? 1 : -1);
    });
    rows.forEach(function (row) { body.appendChild(row); });
  });
});
"""


def _render_page(
    dataset: str,
    space: LabelSpace,
    results: Mapping[str, Any],
    records: list[dict],
    total: PQStat,
    confusion: np.ndarray,
    gallery: list[dict[str, Any]],
    iteration: int | None,
) -> str:
    rows = [
        [
            r["stem"],
            r.get("pq"),
            r.get("miou"),
            len(r.get("missed", [])),
            len(r.get("false_positives", [])),
        ]
        for r in sorted(records, key=lambda r: (_score(r) is None, _score(r) or 0.0))
    ]
    figures = []
    for rank, item in enumerate(gallery, start=1):
        r = item["record"]
        caption = (
            f"{rank}. {html.escape(r['stem'])}: PQ {_fmt(r.get('pq'))}, mIoU {_fmt(r.get('miou'))}, "
            f"{len(r.get('missed', []))} missed, {len(r.get('false_positives', []))} false positives"
        )
        figures.append(
            f'<figure><img alt="{html.escape(r["stem"])}" src="data:image/jpeg;base64,'
            f'{item["jpeg"]}"><figcaption>{caption}</figcaption></figure>'
        )
    when = datetime.now().strftime("%Y-%m-%d %H:%M")
    title = f"Evaluation of {html.escape(dataset)}"
    at = "" if iteration is None else f" at iteration {iteration}"
    legend = (
        '<p class="legend">Each row: image | ground truth | prediction. Outlined: '
        f'<span style="background:rgb{_FALSE_POSITIVE}"></span>false positive '
        f'<span style="background:rgb{_MISSED}"></span>missed ground-truth segment.</p>'
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>{_STYLE}</style></head>
<body>
<h1>{title}</h1>
<p>{len(records)} images{at}; written {when}. Classes: {len(space.thing_ids)} things, {len(space.stuff_ids)} stuff.</p>
<h2>Metrics</h2>
{_metric_tables(results)}
{_per_class_tables(space, total, confusion)}
<h2>Per image</h2>
<p>Click a column header to sort (worst first by default).</p>
{_table(["image", "PQ", "mIoU", "missed", "false positives"], rows, "images", sortable=True)}
<h2>Worst {len(gallery)} images</h2>
{legend}
<div class="gallery" id="gallery">{"".join(figures)}</div>
<script>{_SCRIPT}</script>
</body></html>
"""
