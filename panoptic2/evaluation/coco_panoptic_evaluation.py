"""COCO panoptic quality evaluator: per-image PQ statistics while inference runs.

``process`` compares each prediction with its ground-truth PNG right away (see
:mod:`.panoptic_quality`, which reproduces ``panopticapi.pq_compute``), so no prediction
PNG is written or re-read to compute the metric; ``evaluate`` sums the per-category
statistics of all ranks. Works for every dataset in COCO panoptic format, Cityscapes
panoptic included (its PQ is computed the same way from COCO-format ground truth).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from panoptic2.config import configurable
from panoptic2.data.label_space import LabelSpace, label_space_of_datasets
from panoptic2.data.panoptic_label import (
    panoptic_categories,
    read_panoptic_png,
    segments_from_label,
    write_panoptic_prediction,
)
from panoptic2.data.reading import check_label_size
from panoptic2.utils.file_io import atomic_write
from panoptic2.utils.segment_ids import SegmentLookup

from .build import EVALUATOR_REGISTRY
from .evaluator import DatasetEvaluator
from .panoptic_quality import PQStat, format_pq_tables, pq_stat_single_image

__all__ = ["COCOPanopticEvaluator"]

logger = logging.getLogger(__name__)

PREDICTIONS_JSON = "panoptic_predictions.json"
PREDICTIONS_DIR = "panoptic_predictions"


@EVALUATOR_REGISTRY.register()
class COCOPanopticEvaluator(DatasetEvaluator):
    """PQ / SQ / RQ for All, Things and Stuff, and per category.

    Inputs need ``pan_seg_file_name`` and ``segments_info`` (contiguous category ids), as
    the dataset dicts have them, or point into sharded records (``record_file``). Outputs
    need ``panoptic_seg = (id_map, segments_info)``: ``id_map`` ``(H, W)`` int64 at the
    original size with -1 for void, ``segments_info`` listing every other id with its
    contiguous ``category_id`` (or None: categories are then ``id // label_divisor``).

    Args:
        dataset_name: the evaluated dataset (named in messages and logs).
        output_dir: where predictions are written (a folder all ranks can see).
        label_space: the dataset's label space (categories, things, ``label_divisor``).
        write_predictions: also write the predictions in COCO panoptic format (PNGs in
            ``output_dir/panoptic_predictions/`` and ``panoptic_predictions.json``, with the
            dataset's original category ids), e.g. for the official evaluation server.
    """

    @configurable
    def __init__(
        self,
        dataset_name: str,
        output_dir: str | None = None,
        *,
        label_space: LabelSpace,
        write_predictions: bool = False,
    ) -> None:
        if write_predictions and not output_dir:
            raise ValueError("COCOPanopticEvaluator: write_predictions needs an output_dir")
        self._dataset_name = dataset_name
        self._output_dir = output_dir
        self._write_predictions = write_predictions
        self.label_space = label_space
        self._label_divisor = label_space.label_divisor
        self._ignore_label = label_space.ignore_label
        self._thing_ids = set(label_space.thing_ids)
        self._to_dataset_id = label_space.contiguous_id_to_dataset_id
        self._categories = {
            c: {"isthing": int(c in self._thing_ids), "name": label_space.classes[c]}
            for c in sorted(self._to_dataset_id)
        }
        self._lookup = SegmentLookup()
        self.reset()

    @classmethod
    def from_config(cls, cfg: Any, dataset_name: str, output_dir: str | None = None) -> dict:
        return {
            "dataset_name": dataset_name,
            "output_dir": output_dir,
            "label_space": label_space_of_datasets([dataset_name]),
            "write_predictions": cfg.TEST.WRITE_PREDICTIONS,
        }

    def reset(self) -> None:
        self._stat = PQStat()
        self._annotations: list[dict[str, Any]] = []

    def _where(self, inp: Mapping[str, Any]) -> str:
        return (
            f"image_id {inp.get('image_id')!r} ('{inp.get('file_name')}') of dataset "
            f"{self._dataset_name!r}"
        )

    def _ground_truth(self, inp: Mapping[str, Any]) -> tuple[np.ndarray, list, int]:
        if "pan_seg_file_name" in inp:
            if "segments_info" not in inp:
                raise KeyError(f"The input of {self._where(inp)} has no 'segments_info'")
            ids = read_panoptic_png(inp["pan_seg_file_name"])
            if "height" in inp and "width" in inp:
                # The prediction is made at the dict's size; a PNG of another size means
                # the dataset's JSON is wrong about the image.
                check_label_size(
                    ids, (int(inp["height"]), int(inp["width"])), inp["pan_seg_file_name"], inp
                )
            return ids, inp["segments_info"], 0
        if "record_file" in inp:
            from panoptic2.data.records import load_record_dict

            label = load_record_dict(dict(inp)).get("panoptic_label")
            if label is not None:
                return segments_from_label(
                    np.asarray(label),
                    label_divisor=self._label_divisor,
                    ignore_label=self._ignore_label,
                    thing_ids=self._thing_ids,
                )
        raise KeyError(
            f"The input of {self._where(inp)} has no panoptic ground truth: it needs "
            "'pan_seg_file_name' and 'segments_info', or a record with a panoptic label"
        )

    def _prediction(self, inp: Mapping[str, Any], out: Mapping[str, Any]):
        """``(id_map, segments_info or None)``; None: DeepLab2 labels, whose category is
        ``id // label_divisor`` (the statistics find the ids themselves, cheaper)."""
        if "panoptic_seg" not in out:
            raise KeyError(f"The model output for {self._where(inp)} has no 'panoptic_seg'")
        id_map, segments = out["panoptic_seg"]
        if isinstance(id_map, torch.Tensor):
            id_map = id_map.detach().cpu().numpy()
        return np.asarray(id_map), segments

    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
        """Adds the PQ statistics of each image (and writes its PNG when asked)."""
        for inp, out in zip(inputs, outputs):
            gt_ids, gt_segments, gt_void = self._ground_truth(inp)
            pred_ids, pred_segments = self._prediction(inp, out)
            self._stat += pq_stat_single_image(
                gt_ids,
                gt_segments,
                pred_ids,
                pred_segments,
                gt_void_id=gt_void,
                pred_void_id=-1,
                categories=self._categories,
                image=self._where(inp),
                lookup=self._lookup,
                label_divisor=self._label_divisor,
            )
            if self._write_predictions:
                self._annotations.append(self._write_prediction(inp, pred_ids, pred_segments))

    def _write_prediction(self, inp: Mapping[str, Any], id_map: np.ndarray, segments) -> dict:
        """Writes one COCO panoptic PNG (ids 1..N, 0 void) and returns its annotation."""
        stem = os.path.splitext(os.path.basename(inp.get("file_name", str(inp["image_id"]))))[0]
        file_name = f"{stem}.png"
        folder = os.path.join(self._output_dir, PREDICTIONS_DIR)
        os.makedirs(folder, exist_ok=True)
        segments_info = write_panoptic_prediction(
            os.path.join(folder, file_name), id_map, segments, self.label_space
        )
        return {"image_id": inp["image_id"], "file_name": file_name, "segments_info": segments_info}

    def state(self) -> tuple[PQStat, list[dict[str, Any]]]:
        return self._stat, self._annotations

    def compute_metrics(self, states: list[tuple[PQStat, list]]) -> dict[str, Any]:
        """Sums the statistics of all ranks; returns ``{"panoptic_seg": {...}}`` x100."""
        total = PQStat()
        for stat, _ in states:
            total += stat
        results = total.results(self._categories)
        names = {c: info["name"] for c, info in self._categories.items()}
        logger.info("Dataset %s:\n%s", self._dataset_name, format_pq_tables(results, names))
        if self._write_predictions:
            self._write_json([a for _, part in states for a in part])
        metrics = {}
        for group, suffix in (("All", ""), ("Things", "_th"), ("Stuff", "_st")):
            for key in ("pq", "sq", "rq"):
                metrics[key.upper() + suffix] = 100 * results[group][key]
        return {"panoptic_seg": metrics}

    def _write_json(self, annotations: list[dict]) -> None:
        data = {"annotations": annotations, "categories": panoptic_categories(self.label_space)}
        path = os.path.join(self._output_dir, PREDICTIONS_JSON)
        atomic_write(path, lambda f: f.write(json.dumps(data).encode()))
        logger.info("Wrote %d panoptic predictions to %s", len(annotations), path)
