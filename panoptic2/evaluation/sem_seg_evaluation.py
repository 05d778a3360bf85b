"""Semantic segmentation evaluator: confusion matrix, mIoU, fwIoU, mACC, pACC, per class.

Metrics follow Detectron2's ``SemSegEvaluator``: averages run over the classes that have
ground-truth pixels; ignored pixels are left out; everything is on the 0-100 scale.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np
import torch
from tabulate import tabulate

from panoptic2.config import configurable
from panoptic2.data.label_space import PANOPTIC_FPN_IGNORE, LabelSpace, label_space_of_datasets
from panoptic2.layers.argmax import argmax_over_classes
from panoptic2.utils.file_io import atomic_write

from .build import EVALUATOR_REGISTRY
from .evaluator import DatasetEvaluator

__all__ = ["SemSegEvaluator", "semantic_metrics"]

logger = logging.getLogger(__name__)


def semantic_metrics(confusion: np.ndarray) -> dict[str, np.ndarray | float]:
    """Metrics of a ``(C, C)`` confusion matrix indexed ``[ground truth, prediction]``.

    Args:
        confusion: ``(C, C)`` int64 pixel counts.

    Returns:
        ``iou`` and ``acc`` ``(C,)`` float64 (NaN for classes without ground-truth pixels),
        and the floats ``mIoU``, ``fwIoU``, ``mACC``, ``pACC`` (fractions).
    """
    tp = np.diag(confusion).astype(np.float64)
    pos_gt = confusion.sum(axis=1).astype(np.float64)
    pos_pred = confusion.sum(axis=0).astype(np.float64)
    valid = pos_gt > 0
    acc = np.full(len(tp), np.nan)
    iou = np.full(len(tp), np.nan)
    acc[valid] = tp[valid] / pos_gt[valid]
    iou[valid] = tp[valid] / (pos_gt + pos_pred - tp)[valid]
    total = pos_gt.sum()
    if not valid.any():
        return {"iou": iou, "acc": acc, "mIoU": 0.0, "fwIoU": 0.0, "mACC": 0.0, "pACC": 0.0}
    return {
        "iou": iou,
        "acc": acc,
        "mIoU": float(iou[valid].mean()),
        "fwIoU": float((iou[valid] * pos_gt[valid] / total).sum()),
        "mACC": float(acc[valid].mean()),
        "pACC": float(tp.sum() / total),
    }


@EVALUATOR_REGISTRY.register()
class SemSegEvaluator(DatasetEvaluator):
    """Semantic segmentation metrics from the model's ``sem_seg`` scores.

    The ground truth of each input is its ``sem_seg_file_name`` (read like the mappers do)
    or, for panoptic datasets, the category of each segment of ``pan_seg_file_name`` /
    ``segments_info`` (void -> ignored); record inputs (``record_file``) work too. Outputs
    need ``sem_seg`` ``(C, H, W)`` scores at the original size.

    Args:
        dataset_name: the evaluated dataset (named in messages and logs).
        output_dir: unused (kept for the registry's call signature).
        label_space: the dataset's label space: the classes of its semantic and panoptic
            ground truth.
        stuff_map_classes: for Panoptic FPN's separated datasets, whose inputs carry both a
            panoptic PNG and a stuff-only ``sem_seg_file_name``: the classes of the stuff
            maps (``"things"``, then the stuff classes), which are evaluated instead.
        stuff_map_ignore_label: the ignored label of those stuff maps.
        write_predictions: also write each image's predicted classes as a PNG (uint8, or
            uint16 beyond 256 classes) in ``output_dir/sem_seg_predictions/``.
    """

    @configurable
    def __init__(
        self,
        dataset_name: str,
        output_dir: str | None = None,
        *,
        label_space: LabelSpace,
        stuff_map_classes: Sequence[str] | None = None,
        stuff_map_ignore_label: int = PANOPTIC_FPN_IGNORE,
        write_predictions: bool = False,
    ) -> None:
        if write_predictions and not output_dir:
            raise ValueError("SemSegEvaluator: write_predictions needs an output_dir")
        self._dataset_name = dataset_name
        self._output_dir = output_dir
        self._write_predictions = write_predictions
        self.label_space = label_space
        self._stuff_map_classes = None if stuff_map_classes is None else list(stuff_map_classes)
        self._stuff_map_ignore_label = int(stuff_map_ignore_label)
        self.reset()

    @classmethod
    def from_config(cls, cfg: Any, dataset_name: str, output_dir: str | None = None) -> dict:
        from panoptic2.data import MetadataCatalog

        meta = MetadataCatalog.get(dataset_name)
        return {
            "dataset_name": dataset_name,
            "output_dir": output_dir,
            "label_space": label_space_of_datasets([dataset_name]),
            "stuff_map_classes": meta.get("sem_seg_classes"),
            "stuff_map_ignore_label": meta.get("sem_seg_ignore_label", PANOPTIC_FPN_IGNORE),
            "write_predictions": cfg.TEST.WRITE_PREDICTIONS,
        }

    def reset(self) -> None:
        self._confusion: np.ndarray | None = None
        self._space: tuple[str, int, int, list[str]] | None = None

    def _ground_truth_space(self, inp: Mapping[str, Any]) -> tuple[str, int, int, list[str]]:
        """``(source, num_classes, ignore_label, class names)`` for this input's ground truth."""
        separated = "sem_seg_file_name" in inp and "pan_seg_file_name" in inp
        if separated and self._stuff_map_classes is not None:
            names = self._stuff_map_classes
            return "semantic", len(names), self._stuff_map_ignore_label, names
        source = "semantic" if "sem_seg_file_name" in inp or "record_file" in inp else "panoptic"
        space = self.label_space
        return source, space.num_classes, space.ignore_label, list(space.classes)

    def _where(self, inp: Mapping[str, Any]) -> str:
        return (
            f"image_id {inp.get('image_id')!r} ('{inp.get('file_name')}') of dataset "
            f"{self._dataset_name!r}"
        )

    def _ground_truth(self, inp: Mapping[str, Any], source: str, ignore: int) -> np.ndarray:
        from panoptic2.data.panoptic_label import read_panoptic_label
        from panoptic2.data.reading import read_sem_seg
        from panoptic2.data.records import load_record_dict

        hw = (int(inp["height"]), int(inp["width"]))
        d = load_record_dict(dict(inp)) if "record_file" in inp else inp
        if source == "semantic":
            if d.get("sem_seg") is None and "sem_seg_file_name" not in d:
                if d.get("panoptic_label") is not None:  # a panoptic record
                    divisor = self.label_space.label_divisor
                    return np.asarray(d["panoptic_label"], np.int64) // divisor
                raise KeyError(f"The input of {self._where(inp)} has no semantic ground truth")
            return read_sem_seg(d, hw)
        space = self.label_space
        panoptic = read_panoptic_label(
            d,
            hw,
            label_divisor=space.label_divisor,
            ignore_label=ignore,
            thing_ids=space.thing_ids,
        )
        return panoptic.astype(np.int64) // space.label_divisor

    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
        """Adds each image's pixels to the confusion matrix."""
        for inp, out in zip(inputs, outputs):
            space = self._ground_truth_space(inp)
            if self._space is None:
                self._space = space
                self._confusion = np.zeros((space[1], space[1]), dtype=np.int64)
            elif space[:3] != self._space[:3]:
                raise ValueError(
                    f"{self._where(inp)}: its ground truth ({space[0]}) differs in kind from "
                    f"the earlier images' ({self._space[0]})"
                )
            source, n, ignore, _ = self._space
            if "sem_seg" not in out:
                raise KeyError(f"The model output for {self._where(inp)} has no 'sem_seg'")
            scores = out["sem_seg"]
            if scores.ndim != 3 or scores.shape[0] != n:
                raise ValueError(
                    f"{self._where(inp)}: sem_seg must be (C={n}, H, W), got {tuple(scores.shape)}"
                )
            pred = argmax_over_classes(torch.as_tensor(scores)).cpu().numpy()  # int64
            if self._write_predictions:
                self._write_prediction(inp, pred, n)
            gt = self._ground_truth(inp, source, ignore)
            if gt.shape != pred.shape:
                raise ValueError(
                    f"{self._where(inp)}: prediction size {pred.shape} differs from the ground "
                    f"truth's {gt.shape}"
                )
            valid = gt != ignore
            gt, pred = gt[valid], pred[valid]
            if len(gt) and (gt.min() < 0 or gt.max() >= n):
                bad = np.unique(gt[(gt < 0) | (gt >= n)])[:10].tolist()
                raise ValueError(
                    f"{self._where(inp)}: ground-truth labels {bad} are outside [0, {n}) and "
                    f"not the ignore label {ignore}"
                )
            self._confusion += np.bincount(gt * n + pred, minlength=n * n).reshape(n, n)

    def _write_prediction(self, inp: Mapping[str, Any], pred: np.ndarray, n: int) -> None:
        folder = os.path.join(self._output_dir, "sem_seg_predictions")
        os.makedirs(folder, exist_ok=True)
        stem = os.path.splitext(os.path.basename(str(inp.get("file_name", inp["image_id"]))))[0]
        ok, data = cv2.imencode(".png", pred.astype(np.uint8 if n <= 256 else np.uint16))
        if not ok:
            raise RuntimeError(f"Cannot encode the prediction of {self._where(inp)}")
        atomic_write(os.path.join(folder, f"{stem}.png"), lambda f: f.write(data.tobytes()))

    def state(self) -> tuple[tuple | None, np.ndarray | None]:
        return self._space, self._confusion

    def compute_metrics(self, states: list[tuple]) -> dict[str, Any]:
        """Sums the confusion matrices of all ranks; returns ``{"sem_seg": {...}}`` x100."""
        parts = [p for p in states if p[0] is not None]
        if not parts:
            logger.warning("SemSegEvaluator on %s received no images", self._dataset_name)
            return {}
        space = parts[0][0]
        if any(p[0][:3] != space[:3] for p in parts):
            raise ValueError(f"Ranks evaluated {self._dataset_name!r} in different label spaces")
        confusion = sum(p[1] for p in parts)
        metrics = semantic_metrics(confusion)
        names = space[3]
        results = {k: 100 * metrics[k] for k in ("mIoU", "fwIoU", "mACC", "pACC")}
        rows = []
        for i, name in enumerate(names):
            if np.isnan(metrics["iou"][i]):
                continue  # no ground-truth pixel: not averaged, not reported
            results[f"IoU-{name}"] = 100 * float(metrics["iou"][i])
            results[f"ACC-{name}"] = 100 * float(metrics["acc"][i])
            rows.append([name, results[f"IoU-{name}"], results[f"ACC-{name}"]])
        summary = tabulate(
            [[results["mIoU"], results["fwIoU"], results["mACC"], results["pACC"]]],
            headers=["mIoU", "fwIoU", "mACC", "pACC"],
            tablefmt="pipe",
            floatfmt=".3f",
        )
        per_class = tabulate(rows, headers=["class", "IoU", "ACC"], tablefmt="pipe", floatfmt=".3f")
        logger.info(
            "Semantic segmentation on %s:\n%s\nPer class:\n%s",
            self._dataset_name,
            summary,
            per_class,
        )
        return {"sem_seg": results}
