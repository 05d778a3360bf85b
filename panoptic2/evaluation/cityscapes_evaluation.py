"""Cityscapes' official metrics, computed by ``cityscapesscripts`` itself.

Each evaluator writes the predictions in the format the official script reads, under
``output_dir`` (normally ``OUTPUT_DIR/inference/<dataset>``, which every rank must see: in a
multi-machine job it has to be on a shared filesystem). Every rank writes the files of its own
images in ``process``; ``evaluate`` waits for all ranks, then the main process runs the script
on the union of the files and returns its numbers on the 0-100 scale:

* :class:`CityscapesSemSegEvaluator` -> ``evalPixelLevelSemanticLabeling``: one label-id PNG
  per image; ``{"sem_seg": {"IoU", "iIoU", "IoU_sup", "iIoU_sup"}}``.
* :class:`CityscapesInstanceEvaluator` -> ``evalInstanceLevelSemanticLabeling``: one binary
  mask PNG per instance and one ``{image}_pred.txt`` listing ``mask label_id score`` per
  image; ``{"segm": {"AP", "AP50"}}``.
* :class:`CityscapesPanopticEvaluator` -> ``evalPanopticSemanticLabeling``: COCO panoptic
  PNGs + JSON with the ground truth JSON's category ids; ``{"panoptic_seg": {"PQ", "SQ",
  "RQ", "PQ_th", ..., "PQ_st", ...}}``.

The scripts' options are set on a private copy of their module-level ``args`` object, so
neither the ``CITYSCAPES_*`` environment variables nor an earlier evaluation leak in. Ground
truth is named by the constructor (``from_config`` reads the dataset metadata's ``gt_dir``,
``panoptic_json`` and ``panoptic_root``).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import os
import shutil
import tempfile
import types
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch
from PIL import Image
from tabulate import tabulate

from panoptic2.config import configurable
from panoptic2.data.label_space import LabelSpace, label_space_of_datasets
from panoptic2.data.panoptic_label import check_segments, read_panoptic_png, write_panoptic_png
from panoptic2.layers.argmax import argmax_over_classes
from panoptic2.utils import comm
from panoptic2.utils.file_io import atomic_write

from .build import EVALUATOR_REGISTRY
from .evaluator import DatasetEvaluator

__all__ = [
    "CityscapesInstanceEvaluator",
    "CityscapesPanopticEvaluator",
    "CityscapesSemSegEvaluator",
    "cityscapes_numpy_compat",
]

logger = logging.getLogger(__name__)

_IMAGE_SUFFIX = "_leftImg8bit"
# PIL modes of the ground truth the official scripts read correctly: 8-bit label ids, and
# 16- or 32-bit instance ids (labelId * 1000 + k).
_LABEL_ID_MODES = ("L",)
_INSTANCE_ID_MODES = ("I", "I;16", "I;16B")
# Private key of a prediction record: the image size, for checking the ground truth.
_SIZE_KEY = "_size"


def cityscapes_stem(file_name: str) -> str:
    """``.../frankfurt_000000_000019_leftImg8bit.png`` -> ``frankfurt_000000_000019``."""
    stem = os.path.splitext(os.path.basename(file_name))[0]
    return stem[: -len(_IMAGE_SUFFIX)] if stem.endswith(_IMAGE_SUFFIX) else stem


@contextlib.contextmanager
def _official_script(what: str, dataset_name: str) -> Iterator[io.StringIO]:
    """Captures the script's prints (logged at debug) and turns its failures into errors.

    ``cityscapesscripts`` reports problems with ``printError``, which prints and exits the
    process; inside a training job that must become an exception naming the dataset. Any
    other exception of the script is re-raised with the dataset named too.
    """
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            yield out
    except SystemExit as e:
        tail = "\n".join(out.getvalue().strip().splitlines()[-5:])
        raise RuntimeError(
            f"cityscapesscripts' {what} failed on dataset {dataset_name!r}:\n{tail}"
        ) from e
    except _GroundTruthError:
        raise
    except Exception as e:
        raise RuntimeError(
            f"cityscapesscripts' {what} failed on dataset {dataset_name!r}: {type(e).__name__}: {e}"
        ) from e
    finally:
        if out.getvalue():
            logger.debug("cityscapesscripts %s output:\n%s", what, out.getvalue())


class _GroundTruthError(ValueError):
    """A ground-truth file the official scripts would misread, named with its image."""


@contextlib.contextmanager
def _naming_each_pair(cs_eval: types.ModuleType, dataset_name: str) -> Iterator[None]:
    """Makes the pixel-level script's per-image ``evaluatePair`` name the image it failed on.

    The script evaluates image after image and its errors (``printError`` exits, numpy
    errors) do not say which image; the wrapper re-raises them with both file names.
    """
    original = cs_eval.evaluatePair

    def evaluate_pair(prediction: str, ground_truth: str, *args: Any) -> Any:
        try:
            return original(prediction, ground_truth, *args)
        except (Exception, SystemExit) as e:
            raise _GroundTruthError(
                f"Dataset {dataset_name!r}: the official pixel-level evaluation failed on "
                f"ground truth '{ground_truth}' (prediction '{prediction}'): "
                f"{type(e).__name__}: {e}"
            ) from e

    cs_eval.evaluatePair = evaluate_pair
    try:
        yield
    finally:
        cs_eval.evaluatePair = original


class _NumpyCompat:
    """numpy as ``cityscapesscripts`` 2.x expects it: NumPy 2.4 removed ``np.in1d``."""

    def __getattr__(self, name: str) -> Any:
        return getattr(np, name)

    @staticmethod
    def in1d(ar1: Any, ar2: Any, assume_unique: bool = False, invert: bool = False) -> Any:
        return np.isin(np.ravel(ar1), ar2, assume_unique=assume_unique, invert=invert)


@contextlib.contextmanager
def cityscapes_numpy_compat(*modules: types.ModuleType) -> Iterator[None]:
    """Gives the ``np`` of the given ``cityscapesscripts`` modules the removed ``in1d``.

    Only those modules' global name is swapped, for the duration of the block; numpy itself
    is left untouched. A no-op where numpy still has ``in1d``.

    Args:
        modules: modules that call ``np.in1d`` (the evaluation scripts).
    """
    if hasattr(np, "in1d"):
        yield
        return
    saved = [(m, m.np) for m in modules]
    for m in modules:
        m.np = _NumpyCompat()
    try:
        yield
    finally:
        for m, original in saved:
            m.np = original


def _save_png(path: str, array: np.ndarray) -> None:
    def write(f) -> None:
        Image.fromarray(array).save(f, format="PNG")

    atomic_write(path, write)


def _save_json(path: str, obj: Any) -> None:
    atomic_write(path, lambda f: f.write(json.dumps(obj).encode("utf-8")))


class CityscapesEvaluator(DatasetEvaluator):
    """Shared plumbing: the prediction folder, per-rank writing and the final gather.

    Args:
        dataset_name: the evaluated dataset (named in messages and logs).
        output_dir: where the predictions go (``{output_dir}/{subdir}``), visible to every
            rank. None: a temporary directory, allowed in single-process runs only.
        label_space: the dataset's label space; its class names must be Cityscapes label
            names.
        gt_dir: the ``gtFine/<split>`` folder of the ground truth PNGs.
        panoptic_json: the ground truth panoptic JSON (panoptic evaluation).
        panoptic_root: the folder of the ground truth panoptic PNGs (panoptic evaluation).
    """

    _SUBDIR = "cityscapes"

    @configurable
    def __init__(
        self,
        dataset_name: str,
        output_dir: str | None = None,
        *,
        label_space: LabelSpace,
        gt_dir: str | None = None,
        panoptic_json: str | None = None,
        panoptic_root: str | None = None,
    ):
        self._dataset_name = dataset_name
        self.label_space = label_space
        self._gt_dir = gt_dir
        self._panoptic_json = panoptic_json
        self._panoptic_root = panoptic_root
        self._output_dir = output_dir
        self._pred_dir = ""
        self._records: list[Any] = []

    @classmethod
    def from_config(cls, cfg, dataset_name: str, output_dir: str | None = None) -> dict:
        from panoptic2.data import MetadataCatalog

        meta = MetadataCatalog.get(dataset_name)
        return {
            "dataset_name": dataset_name,
            "output_dir": output_dir,
            "label_space": label_space_of_datasets([dataset_name]),
            "gt_dir": meta.get("gt_dir"),
            "panoptic_json": meta.get("panoptic_json"),
            "panoptic_root": meta.get("panoptic_root"),
        }

    def _class_label(self, contiguous_id: int) -> Any:
        """The ``cityscapesscripts`` label of a contiguous class, looked up by its name."""
        from cityscapesscripts.helpers.labels import name2label

        classes = self.label_space.classes
        if not 0 <= contiguous_id < len(classes):
            raise ValueError(
                f"Dataset {self._dataset_name!r}: class {contiguous_id} is outside the "
                f"label space's {len(classes)} classes."
            )
        name = classes[contiguous_id]
        if name not in name2label:
            raise ValueError(
                f"Dataset {self._dataset_name!r}: class {contiguous_id} ({name!r}) is not a "
                "Cityscapes label name; the Cityscapes evaluators need Cityscapes classes."
            )
        return name2label[name]

    def reset(self) -> None:
        self._records = []
        if self._output_dir is None:
            if comm.get_world_size() > 1:
                raise ValueError(
                    f"{type(self).__name__} of {self._dataset_name!r} needs an output_dir "
                    "that every rank can see when running in several processes."
                )
            self._pred_dir = tempfile.mkdtemp(prefix=f"{self._SUBDIR}_")
            return
        self._pred_dir = os.path.abspath(os.path.join(self._output_dir, self._SUBDIR))
        if comm.is_main_process():
            # Files of an earlier round (other images) must not reach the script.
            shutil.rmtree(self._pred_dir, ignore_errors=True)
            os.makedirs(self._pred_dir, exist_ok=True)
        comm.synchronize()

    def state(self) -> list[Any]:
        return self._records

    def _all_records(self, states: list[list[Any]]) -> list[Any]:
        """Every rank's records (their files are written: ranks gathered after writing)."""
        records = [r for part in states for r in part]
        if not records:
            logger.warning(
                "%s of %r received no predictions.", type(self).__name__, self._dataset_name
            )
        return records

    def _script_args(self, cs_eval: types.ModuleType) -> Any:
        """A copy of an official script's module-level ``args``, set up for our predictions.

        Args:
            cs_eval: the ``cityscapesscripts.evaluation`` script module.

        Returns:
            Its ``args``, copied (the module's own stay untouched), reading predictions from
            ``self._pred_dir`` without a directory walk, quiet and with no JSON or colours.
        """
        args = copy.copy(cs_eval.args)
        args.predictionPath = self._pred_dir
        args.predictionWalk = None
        args.JSONOutput = False
        args.quiet = True
        args.colorized = False
        return args

    def _check_gt_image(
        self, path: str, stem: str, size: tuple[int, int], modes: tuple[str, ...]
    ) -> None:
        """Decodes a ground-truth PNG the script will read and checks it against the image.

        Args:
            path: the ground-truth PNG.
            stem: the image's Cityscapes id, for messages.
            size: ``(height, width)`` of the image (and of its prediction).
            modes: the PIL modes the script reads correctly.

        Raises:
            ValueError: the file cannot be decoded (e.g. truncated), has another mode or
                another size; the message names the file, the image and the dataset.
        """
        where = f"Ground truth '{path}' of image '{stem}' (dataset {self._dataset_name!r})"
        try:
            with Image.open(path) as img:
                img.load()  # decode now: a truncated file fails here, named
                mode, (width, height) = img.mode, img.size
        except (OSError, SyntaxError, ValueError) as e:
            raise _GroundTruthError(f"{where} cannot be decoded: {e}") from None
        if mode not in modes:
            raise _GroundTruthError(f"{where} has PIL mode {mode!r}, expected one of {modes}")
        if (height, width) != tuple(size):
            raise _GroundTruthError(
                f"{where} is {width}x{height} (WxH) but the image is {size[1]}x{size[0]}"
            )

    def _gt_file(self, stem: str, suffix: str) -> str:
        gt_dir = self._gt_dir
        if not gt_dir:
            raise KeyError(
                f"Dataset {self._dataset_name!r} has no 'gt_dir' metadata (gtFine/<split>); "
                f"{type(self).__name__} needs it."
            )
        path = os.path.abspath(os.path.join(gt_dir, stem.split("_")[0], stem + suffix))
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"Ground truth '{path}' of image '{stem}' (dataset {self._dataset_name!r}) "
                "does not exist."
            )
        return path


@EVALUATOR_REGISTRY.register()
class CityscapesSemSegEvaluator(CityscapesEvaluator):
    """Pixel-level semantic labeling: IoU and iIoU over classes and categories.

    ``process`` reads ``output["sem_seg"]`` ((C, H, W) scores over the contiguous classes,
    at the original size), takes the argmax and writes it as Cityscapes label ids.
    """

    _SUBDIR = "cityscapes_sem_seg"

    def _label_id_lut(self, num_classes: int) -> np.ndarray:
        if not hasattr(self, "_lut") or len(self._lut) != num_classes:
            self._lut = np.array(
                [self._class_label(c).id for c in range(num_classes)], dtype=np.uint8
            )
        return self._lut

    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
        for inp, out in zip(inputs, outputs):
            stem = cityscapes_stem(inp["file_name"])
            pred = argmax_over_classes(out["sem_seg"]).cpu().numpy()
            label_ids = self._label_id_lut(out["sem_seg"].shape[0])[pred]
            _save_png(os.path.join(self._pred_dir, stem + "_pred.png"), label_ids)
            self._records.append((stem, tuple(label_ids.shape)))

    def compute_metrics(self, states: list[list[Any]]) -> dict[str, Any]:
        stems = self._all_records(states)
        import cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling as cs_eval

        args = self._script_args(cs_eval)
        args.evalInstLevelScore = True
        args.evalPixelAccuracy = False
        args.bold = args.nocol = ""
        sizes = dict(stems)
        stems = sorted(sizes)
        gts = [self._gt_file(s, "_gtFine_labelIds.png") for s in stems]
        for stem, gt in zip(stems, gts):
            self._check_gt_image(gt, stem, sizes[stem], _LABEL_ID_MODES)
            # Its instance scores also read the instanceIds PNG.
            instance_gt = self._gt_file(stem, "_gtFine_instanceIds.png")
            self._check_gt_image(instance_gt, stem, sizes[stem], _INSTANCE_ID_MODES)
        preds = [os.path.join(self._pred_dir, s + "_pred.png") for s in stems]
        with (
            _official_script("pixel-level evaluation", self._dataset_name),
            cityscapes_numpy_compat(cs_eval),
            _naming_each_pair(cs_eval, self._dataset_name),
        ):
            res = cs_eval.evaluateImgLists(preds, gts, args)
        classes = sorted(res["classScores"].items(), key=lambda kv: kv[0])
        table = [(name, 100 * iou, 100 * res["classInstScores"][name]) for name, iou in classes]
        logger.info(
            "Cityscapes pixel-level results of %s:\n%s",
            self._dataset_name,
            tabulate(table, headers=["class", "IoU", "iIoU"], floatfmt=".3f"),
        )
        return {
            "sem_seg": {
                "IoU": 100.0 * float(res["averageScoreClasses"]),
                "iIoU": 100.0 * float(res["averageScoreInstClasses"]),
                "IoU_sup": 100.0 * float(res["averageScoreCategories"]),
                "iIoU_sup": 100.0 * float(res["averageScoreInstCategories"]),
            }
        }


def _instances_of(output: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(masks (N, H, W) bool, classes (N,) int64 contiguous, scores (N,) float64)``.

    From ``output["instances"]`` when the model predicts them, else from the thing segments
    of ``output["panoptic_seg"]`` (score from ``segments_info``, 1.0 when absent).
    """
    if "instances" in output:
        ins = output["instances"]
        return (
            ins.pred_masks.to(torch.bool).cpu().numpy(),
            ins.pred_classes.to(torch.int64).cpu().numpy(),
            ins.scores.to(torch.float64).cpu().numpy(),
        )
    if "panoptic_seg" not in output:
        raise KeyError(
            "CityscapesInstanceEvaluator needs 'instances' or 'panoptic_seg' in the model "
            f"outputs; got keys {sorted(output)}"
        )
    id_map, segments = output["panoptic_seg"]
    id_map = torch.as_tensor(id_map).cpu().numpy()
    things = [s for s in segments if s.get("isthing", False)]
    masks = np.stack([id_map == s["id"] for s in things]) if things else np.zeros((0, 1, 1), bool)
    return (
        masks,
        np.array([s["category_id"] for s in things], dtype=np.int64),
        np.array([float(s.get("score", 1.0)) for s in things], dtype=np.float64),
    )


def _output_size(inp: Mapping[str, Any], out: Mapping[str, Any]) -> tuple[int, int]:
    """``(height, width)`` of an image's outputs: the input's original size when it has one,
    else the size of its instances or panoptic map."""
    if "height" in inp and "width" in inp:
        return int(inp["height"]), int(inp["width"])
    if "instances" in out:
        return tuple(int(v) for v in out["instances"].image_size)
    return tuple(int(v) for v in out["panoptic_seg"][0].shape[-2:])


@EVALUATOR_REGISTRY.register()
class CityscapesInstanceEvaluator(CityscapesEvaluator):
    """Instance-level semantic labeling: AP (IoU 0.5:0.95) and AP50, official script.

    ``process`` reads ``output["instances"]`` (an ``Instances`` with ``pred_masks`` (N, H, W)
    bool, ``pred_classes`` (N,) int64 contiguous, ``scores`` (N,) float) or, for box-free models
    without it, the thing segments of ``output["panoptic_seg"]``.
    """

    _SUBDIR = "cityscapes_instance"

    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
        for inp, out in zip(inputs, outputs):
            stem = cityscapes_stem(inp["file_name"])
            masks, classes, scores = _instances_of(out)
            lines = []
            for i, (mask, cls, score) in enumerate(zip(masks, classes, scores)):
                label = self._class_label(int(cls))
                png = f"{stem}_{i}_{label.name.replace(' ', '_')}.png"
                _save_png(os.path.join(self._pred_dir, png), mask.astype(np.uint8) * 255)
                # repr keeps the score exact: the ranking must be the model's.
                lines.append(f"{png} {label.id} {float(score)!r}\n")
            txt = os.path.join(self._pred_dir, stem + "_pred.txt")
            atomic_write(txt, lambda f, lines=lines: f.write("".join(lines).encode("utf-8")))
            self._records.append((stem, _output_size(inp, out)))

    def compute_metrics(self, states: list[list[Any]]) -> dict[str, Any]:
        stems = self._all_records(states)
        import cityscapesscripts.evaluation.evalInstanceLevelSemanticLabeling as cs_eval
        from cityscapesscripts.evaluation.instances2dict import instances2dict

        args = self._script_args(cs_eval)
        args.distanceAvailable = False
        sizes = dict(stems)
        stems = sorted(sizes)
        gts = [self._gt_file(s, "_gtFine_instanceIds.png") for s in stems]
        for stem, gt in zip(stems, gts):
            self._check_gt_image(gt, stem, sizes[stem], _INSTANCE_ID_MODES)
        preds = [os.path.join(self._pred_dir, s + "_pred.txt") for s in stems]
        # The script's evaluateImgLists would cache the ground truth in a JSON inside the
        # installed package and write "matches.json" to the working directory; run its steps
        # directly instead, with the ground truth read fresh.
        with (
            _official_script("instance-level evaluation", self._dataset_name),
            cityscapes_numpy_compat(cs_eval),
        ):
            cs_eval.setInstanceLabels(args)
            gt_instances = instances2dict(gts, False)
            matches = cs_eval.matchGtWithPreds(preds, gts, gt_instances, args)
            aps = cs_eval.evaluateMatches(matches, args)
            averages = cs_eval.computeAverages(aps, args)
        table = [(name, 100 * v["ap"], 100 * v["ap50%"]) for name, v in averages["classes"].items()]
        logger.info(
            "Cityscapes instance-level results of %s:\n%s",
            self._dataset_name,
            tabulate(table, headers=["class", "AP", "AP50"], floatfmt=".3f"),
        )
        return {
            "segm": {
                "AP": 100.0 * float(averages["allAp"]),
                "AP50": 100.0 * float(averages["allAp50%"]),
            }
        }


def _renumber(id_map: np.ndarray, seg_ids: list[int]) -> np.ndarray:
    """Maps ``seg_ids[k]`` to ``k + 1`` and every other value (void, unlisted ids) to 0.

    Model ids such as ``class * label_divisor + 0`` can be 0, which is void in the COCO
    panoptic format, so the PNG never reuses them.

    Args:
        id_map: (H, W) int64 segment ids.
        seg_ids: the ids listed in ``segments_info``, in order.

    Returns:
        (H, W) int64 map with values in ``0..len(seg_ids)``.
    """
    if not seg_ids:
        return np.zeros_like(id_map)
    ids = np.asarray(seg_ids, dtype=np.int64)
    order = np.argsort(ids)
    pos = np.searchsorted(ids[order], id_map).clip(0, len(ids) - 1)
    return np.where(ids[order][pos] == id_map, order[pos] + 1, 0)


@EVALUATOR_REGISTRY.register()
class CityscapesPanopticEvaluator(CityscapesEvaluator):
    """Cityscapes panoptic quality through ``evalPanopticSemanticLabeling``.

    Predictions are written in COCO panoptic format: one RGB PNG per image (segment ids
    renumbered ``1..N``, 0 void) and one JSON, with the category ids of the ground truth
    JSON (metadata ``panoptic_json``: label ids or, for ``*_trainId.json``, train ids),
    matched by class name. Ground truth images without a prediction are left out (the
    evaluated set is the set of images that went through ``process``).
    """

    _SUBDIR = "cityscapes_panoptic"

    def reset(self) -> None:
        super().reset()
        self._category_ids: dict[int, int] | None = None

    def _gt_json(self) -> dict:
        path = self._panoptic_json
        if not path or not os.path.isfile(path):
            raise FileNotFoundError(
                f"Dataset {self._dataset_name!r}: panoptic ground truth JSON {path!r} "
                "(metadata 'panoptic_json') does not exist."
            )
        with open(path) as f:
            return json.load(f)

    def _category_map(self) -> dict[int, int]:
        """Contiguous class -> category id of the ground truth JSON (by class name)."""
        if self._category_ids is None:
            by_name = {c["name"]: int(c["id"]) for c in self._gt_json()["categories"]}
            classes = self.label_space.classes
            self._category_ids = {i: by_name[n] for i, n in enumerate(classes) if n in by_name}
        return self._category_ids

    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
        category_map = self._category_map()
        for inp, out in zip(inputs, outputs):
            stem = cityscapes_stem(inp["file_name"])
            id_map, segments = out["panoptic_seg"]
            id_map = torch.as_tensor(id_map).cpu().numpy().astype(np.int64)
            new_map = _renumber(id_map, [int(s["id"]) for s in segments])
            present = np.bincount(new_map.ravel(), minlength=len(segments) + 1)
            infos = []
            for k, seg in enumerate(segments):
                if present[k + 1] == 0:
                    continue  # the script rejects JSON segments absent from the PNG
                cls = int(seg["category_id"])
                if cls not in category_map:
                    raise ValueError(
                        f"Segment {seg['id']} of image '{inp['file_name']}' (dataset "
                        f"{self._dataset_name!r}) has class {cls}, which has no category in "
                        f"the ground truth JSON {self._panoptic_json!r}."
                    )
                infos.append({"id": k + 1, "category_id": category_map[cls]})
            write_panoptic_png(os.path.join(self._pred_dir, stem + ".png"), new_map)
            self._records.append(
                {
                    "image_id": stem,
                    "file_name": stem + ".png",
                    "segments_info": infos,
                    _SIZE_KEY: list(new_map.shape),
                }
            )

    def _check_panoptic_gt(self, ann: Mapping[str, Any], size: tuple[int, int]) -> None:
        """The checks the COCO panoptic evaluator makes on its ground truth: the PNG decodes
        as 8-bit RGB, has the image's size, and holds exactly the JSON's segments."""
        if not self._panoptic_root:
            raise KeyError(
                f"Dataset {self._dataset_name!r} has no 'panoptic_root' metadata (the folder "
                "of its ground-truth panoptic PNGs)."
            )
        path = os.path.join(self._panoptic_root, ann["file_name"])
        context = f" (image '{ann['image_id']}', dataset {self._dataset_name!r})"
        try:
            ids = read_panoptic_png(path)
        except (FileNotFoundError, ValueError) as e:
            raise _GroundTruthError(f"{e}{context}") from None
        if ids.shape != tuple(size):
            raise _GroundTruthError(
                f"Ground truth '{path}'{context} is {ids.shape[1]}x{ids.shape[0]} (WxH) but "
                f"the image is {size[1]}x{size[0]}"
            )
        try:
            check_segments(ids, ann["segments_info"], name=path, context=context)
        except ValueError as e:
            raise _GroundTruthError(str(e)) from None

    def compute_metrics(self, states: list[list[Any]]) -> dict[str, Any]:
        annotations = self._all_records(states)
        from cityscapesscripts.evaluation.evalPanopticSemanticLabeling import evaluatePanoptic

        gt = self._gt_json()
        predicted = {a["image_id"] for a in annotations}
        unknown = predicted - {a["image_id"] for a in gt["annotations"]}
        if unknown:
            raise ValueError(
                f"Dataset {self._dataset_name!r}: predicted images {sorted(unknown)[:5]} are "
                f"not in the ground truth JSON {self._panoptic_json!r}."
            )
        gt_subset = dict(
            gt, annotations=[a for a in gt["annotations"] if a["image_id"] in predicted]
        )
        sizes = {a["image_id"]: tuple(a.pop(_SIZE_KEY)) for a in annotations}
        for ann in gt_subset["annotations"]:
            self._check_panoptic_gt(ann, sizes[ann["image_id"]])
        gt_json = os.path.join(self._pred_dir, "gt_panoptic.json")
        pred_json = os.path.join(self._pred_dir, "pred_panoptic.json")
        _save_json(gt_json, gt_subset)
        _save_json(pred_json, {"annotations": annotations, "categories": gt["categories"]})
        with _official_script("panoptic evaluation", self._dataset_name):
            res = evaluatePanoptic(
                gt_json,
                os.path.abspath(self._panoptic_root),
                pred_json,
                self._pred_dir,
                os.path.join(self._pred_dir, "results.json"),
            )
        names = {int(c["id"]): c["name"] for c in gt["categories"]}
        table = [
            (names[int(k)], 100 * v["pq"], 100 * v["sq"], 100 * v["rq"])
            for k, v in sorted(res["per_class"].items(), key=lambda kv: int(kv[0]))
        ]
        logger.info(
            "Cityscapes panoptic results of %s:\n%s",
            self._dataset_name,
            tabulate(table, headers=["category", "PQ", "SQ", "RQ"], floatfmt=".3f"),
        )
        metrics = {}
        for group, suffix in (("All", ""), ("Things", "_th"), ("Stuff", "_st")):
            for key in ("pq", "sq", "rq"):
                metrics[key.upper() + suffix] = 100.0 * float(res[group][key])
        return {"panoptic_seg": metrics}
