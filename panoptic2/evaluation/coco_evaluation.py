"""COCO box and mask AP through ``pycocotools`` for any model that outputs ``instances``.

Each rank turns its outputs into COCO results in ``process`` (RLE masks, XYWH boxes,
dataset category ids); ``evaluate`` gathers them on the main process and runs ``COCOeval``
against the dataset's instances JSON (metadata ``instances_json`` or ``json_file``). A dataset
without such a file gets one converted from its dicts, cached in ``output_dir``. Mask AP is
computed when the model predicts masks (its ``instances`` have ``pred_masks``): a box-only
model (Faster R-CNN, ``MODEL.MASK_ON False``) gets box AP only.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_util
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from tabulate import tabulate

from panoptic2.config import configurable
from panoptic2.data.label_space import LabelSpace, label_space_of_datasets
from panoptic2.structures import BoxMode, Instances
from panoptic2.utils.file_io import atomic_write

from .build import EVALUATOR_REGISTRY
from .evaluator import DatasetEvaluator

__all__ = ["COCOEvaluator", "convert_to_coco_dict", "instances_to_coco_json"]

logger = logging.getLogger(__name__)

_METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
_TASKS = ("bbox", "segm")


def instances_to_coco_json(
    instances: Instances, image_id: Any, contiguous_to_dataset: Mapping[int, int]
) -> list[dict]:
    """Converts one image's predicted instances to COCO result dicts.

    Args:
        instances: ``pred_boxes`` (:class:`Boxes`, XYXY), ``scores`` (N,) float,
            ``pred_classes`` (N,) int64 contiguous and optionally ``pred_masks`` (N, H, W)
            bool.
        image_id: the COCO image id.
        contiguous_to_dataset: contiguous class -> dataset category id.

    Returns:
        One dict per instance: ``image_id``, ``category_id``, ``bbox`` (XYWH), ``score`` and,
        with masks, ``segmentation`` (compressed RLE with str counts).

    Raises:
        KeyError: a predicted class has no dataset category.
    """
    boxes = instances.pred_boxes.tensor.detach().to(torch.float64).cpu().numpy().reshape(-1, 4)
    scores = instances.scores.detach().to(torch.float64).cpu().numpy().tolist()
    classes = instances.pred_classes.detach().cpu().numpy().tolist()
    rles = None
    if instances.has("pred_masks"):
        masks = instances.pred_masks.detach().to(torch.bool).cpu().numpy()
        # pycocotools encodes Fortran-ordered (H, W, N) uint8 arrays.
        rles = mask_util.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    results = []
    for k, (box, score, cls) in enumerate(zip(boxes, scores, classes)):
        if cls not in contiguous_to_dataset:
            raise KeyError(
                f"Image {image_id!r}: predicted class {cls} has no dataset category "
                f"(known contiguous ids: {sorted(contiguous_to_dataset)})."
            )
        x0, y0, x1, y1 = box.tolist()
        result = {
            "image_id": image_id,
            "category_id": int(contiguous_to_dataset[cls]),
            "bbox": [x0, y0, x1 - x0, y1 - y0],
            "score": float(score),
        }
        if rles is not None:
            rle = dict(rles[k])
            rle["counts"] = rle["counts"].decode("ascii")
            result["segmentation"] = rle
        results.append(result)
    return results


def _xywh(annotation: Mapping[str, Any]) -> list[float]:
    box = [float(v) for v in annotation["bbox"]]
    return BoxMode.convert(box, annotation.get("bbox_mode", BoxMode.XYWH_ABS), BoxMode.XYWH_ABS)


def convert_to_coco_dict(dataset_name: str, dicts: Sequence[dict], label_space: LabelSpace) -> dict:
    """Converts standard dataset dicts with ``annotations`` to a COCO instances dict.

    Args:
        dataset_name: for messages.
        dicts: dataset dicts (``image_id``, ``height``, ``width``, ``annotations`` with
            ``bbox``/``bbox_mode``, contiguous ``category_id``, ``segmentation``,
            ``iscrowd``, optional ``area``).
        label_space: the dataset's label space (its things are the categories).

    Returns:
        ``{"images", "annotations", "categories"}`` with dataset category ids.
    """
    to_dataset = {c: d for d, c in label_space.thing_dataset_id_to_contiguous_id.items()}
    categories = [
        {"id": to_dataset[c], "name": label_space.classes[c]} for c in label_space.thing_ids
    ]
    images, annotations = [], []
    for d in dicts:
        h, w = int(d["height"]), int(d["width"])
        images.append({"id": d["image_id"], "height": h, "width": w, "file_name": d["file_name"]})
        for ann in d.get("annotations", []):
            cls = int(ann["category_id"])
            if cls not in to_dataset:
                raise ValueError(
                    f"Image '{d['file_name']}' of dataset {dataset_name!r}: annotation class "
                    f"{cls} is not a thing class."
                )
            seg = ann.get("segmentation")
            if isinstance(seg, dict) and isinstance(seg.get("counts"), list):
                seg = mask_util.frPyObjects(seg, h, w)  # uncompressed RLE -> compressed
            if isinstance(seg, dict) and isinstance(seg["counts"], bytes):
                seg = {"size": list(seg["size"]), "counts": seg["counts"].decode("ascii")}
            box = _xywh(ann)
            area = ann.get("area")
            if area is None and seg is None:
                area = box[2] * box[3]  # box-only annotation: COCO's area is the box's
            elif area is None:
                rle = (
                    mask_util.merge(mask_util.frPyObjects(seg, h, w))
                    if isinstance(seg, list)
                    else seg
                )
                area = float(mask_util.area(rle))
            entry = {
                "id": len(annotations) + 1,
                "image_id": d["image_id"],
                "category_id": to_dataset[cls],
                "bbox": box,
                "area": float(area),
                "iscrowd": int(ann.get("iscrowd", 0)),
            }
            if seg is not None:
                entry["segmentation"] = seg
            annotations.append(entry)
    return {"images": images, "annotations": annotations, "categories": categories}


@EVALUATOR_REGISTRY.register()
class COCOEvaluator(DatasetEvaluator):
    """Box and mask AP (AP, AP50, AP75, APs, APm, APl and per category) with ``COCOeval``.

    Args:
        dataset_name: the evaluated dataset (named in messages and logs).
        output_dir: where ``coco_instances_results.json`` (and a converted ground truth
            JSON when the dataset has none) are written; None writes nothing.
        tasks: subset of ``("bbox", "segm")``; None: ``bbox``, and ``segm`` when the
            model's ``instances`` have ``pred_masks``.
        label_space: the dataset's label space (its things are the evaluated categories).
        instances_json: the COCO instances JSON of the ground truth; None or a missing
            file: the ground truth is converted from ``dataset_dicts``.
        dataset_dicts: returns the dataset's standard dicts (with ``annotations``), for
            the conversion.
    """

    @configurable
    def __init__(
        self,
        dataset_name: str,
        output_dir: str | None = None,
        tasks: Sequence[str] | None = None,
        *,
        label_space: LabelSpace,
        instances_json: str | None = None,
        dataset_dicts: Callable[[], list[dict]] | None = None,
    ):
        unknown = set(tasks or ()) - set(_TASKS)
        if unknown:
            raise ValueError(f"COCOEvaluator: unknown tasks {sorted(unknown)}; known {_TASKS}")
        self._dataset_name = dataset_name
        self.label_space = label_space
        self._instances_json = instances_json
        self._dataset_dicts = dataset_dicts
        self._output_dir = output_dir
        self._tasks = None if tasks is None else tuple(tasks)
        self._to_dataset = {c: d for d, c in label_space.thing_dataset_id_to_contiguous_id.items()}
        self._predictions: list[dict] = []
        self._image_ids: list[Any] = []
        self._has_masks = False

    @classmethod
    def from_config(cls, cfg, dataset_name: str, output_dir: str | None = None) -> dict:
        from panoptic2.data import DatasetCatalog, MetadataCatalog

        meta = MetadataCatalog.get(dataset_name)
        return {
            "dataset_name": dataset_name,
            "output_dir": output_dir,
            "label_space": label_space_of_datasets([dataset_name]),
            "instances_json": meta.get("instances_json") or meta.get("json_file"),
            "dataset_dicts": lambda: DatasetCatalog.get(dataset_name),
        }

    def reset(self) -> None:
        self._predictions = []
        self._image_ids = []
        self._has_masks = False

    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
        for inp, out in zip(inputs, outputs):
            self._image_ids.append(inp["image_id"])
            if "instances" in out:
                # The field, not the count: a mask model that detects nothing still has it.
                self._has_masks |= out["instances"].has("pred_masks")
                self._predictions.extend(
                    instances_to_coco_json(out["instances"], inp["image_id"], self._to_dataset)
                )

    def _ground_truth(self) -> COCO:
        path = self._instances_json
        if not path or not os.path.isfile(path):
            if self._dataset_dicts is None:
                raise FileNotFoundError(
                    f"COCOEvaluator of {self._dataset_name!r}: the instances JSON {path!r} does "
                    "not exist and no dataset_dicts were given to convert the ground truth from"
                )
            logger.info(
                "Dataset %r has no COCO instances JSON (%r); converting its dicts.",
                self._dataset_name,
                path,
            )
            coco_dict = convert_to_coco_dict(
                self._dataset_name, self._dataset_dicts(), self.label_space
            )
            if self._output_dir:
                os.makedirs(self._output_dir, exist_ok=True)
                out = os.path.join(self._output_dir, f"{self._dataset_name}_coco_format.json")
                atomic_write(out, lambda f: f.write(json.dumps(coco_dict).encode("utf-8")))
            coco = COCO()
            coco.dataset = coco_dict
            with contextlib.redirect_stdout(io.StringIO()):
                coco.createIndex()
            return coco
        with contextlib.redirect_stdout(io.StringIO()):
            return COCO(path)

    def state(self) -> tuple[list[dict], list[Any], bool]:
        return self._predictions, self._image_ids, self._has_masks

    def _tasks_to_run(self, has_masks: bool) -> tuple[str, ...]:
        if self._tasks is None:
            if not has_masks:
                logger.info(
                    "The predictions of %r have no masks (a box-only model): box AP only.",
                    self._dataset_name,
                )
            return ("bbox", "segm") if has_masks else ("bbox",)
        if "segm" in self._tasks and not has_masks:
            raise ValueError(
                f"COCOEvaluator of {self._dataset_name!r}: task 'segm' was asked for but the "
                "model's instances have no pred_masks"
            )
        return self._tasks

    def compute_metrics(self, states: list[tuple[list[dict], list[Any], bool]]) -> dict[str, Any]:
        predictions = [p for preds, _, _ in states for p in preds]
        image_ids = sorted({i for _, ids, _ in states for i in ids}, key=str)
        tasks = self._tasks_to_run(any(has_masks for _, _, has_masks in states))
        if self._output_dir:
            os.makedirs(self._output_dir, exist_ok=True)
            path = os.path.join(self._output_dir, "coco_instances_results.json")
            atomic_write(path, lambda f: f.write(json.dumps(predictions).encode("utf-8")))
        coco_gt = self._ground_truth()
        missing = [i for i in image_ids if i not in coco_gt.imgs]
        if missing:
            raise KeyError(
                f"Dataset {self._dataset_name!r}: image ids {missing[:5]} are not in its COCO "
                "ground truth."
            )
        return {task: self._evaluate_task(coco_gt, predictions, image_ids, task) for task in tasks}

    def _evaluate_task(
        self, coco_gt: COCO, predictions: list[dict], image_ids: list[Any], task: str
    ) -> dict[str, float]:
        if not predictions:
            logger.warning("No predictions for %r: %s AP is 0.", self._dataset_name, task)
            return dict.fromkeys(_METRICS, 0.0)
        if task == "segm":
            # With a bbox present, loadRes would take areas from boxes; masks must decide.
            predictions = copy.deepcopy(predictions)
            for p in predictions:
                p.pop("bbox", None)
        log = io.StringIO()
        with contextlib.redirect_stdout(log):
            coco_dt = coco_gt.loadRes(predictions)
            coco_eval = COCOeval(coco_gt, coco_dt, task)
            coco_eval.params.imgIds = image_ids
            coco_eval.evaluate()
            coco_eval.accumulate()
            coco_eval.summarize()
        logger.info("COCOeval %s on %s:\n%s", task, self._dataset_name, log.getvalue())
        # COCOeval reports -1 where nothing was evaluated (e.g. no small objects).
        metrics = {
            m: 100.0 * float(coco_eval.stats[i]) if coco_eval.stats[i] >= 0 else float("nan")
            for i, m in enumerate(_METRICS)
        }
        # precision: (iou thresholds, recall points, classes, area ranges, max dets); -1 = absent
        precision = coco_eval.eval["precision"]
        per_category = []
        for k, cat_id in enumerate(coco_eval.params.catIds):
            p = precision[:, :, k, 0, -1]
            ap = 100.0 * float(p[p > -1].mean()) if (p > -1).any() else float("nan")
            name = coco_gt.cats[cat_id].get("name", str(cat_id))
            metrics[f"AP-{name}"] = ap
            per_category.append((name, ap))
        logger.info(
            "Per-category %s AP of %s:\n%s",
            task,
            self._dataset_name,
            tabulate(per_category, headers=["category", "AP"], floatfmt=".3f"),
        )
        return metrics
