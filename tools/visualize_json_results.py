#!/usr/bin/env python
"""Draws dumped predictions beside the ground truth of a registered dataset.

    python tools/visualize_json_results.py --input OUT/panoptic_predictions.json \\
        --dataset shapes_panoptic_val --output DIR
    python tools/visualize_json_results.py --input OUT/coco_instances_results.json \\
        --dataset shapes_panoptic_val --output DIR --conf-threshold 0.5

Reads a COCO panoptic prediction JSON (with its PNG folder: ``--pred-folder``, by default
the folder beside the JSON named after it, or ``panoptic_predictions/``, or ``panoptic/``)
or a COCO instance results file (a list of detections), as written by the evaluators
(``TEST.WRITE_PREDICTIONS``) and by ``tools/demo.py --output-json``. Category ids are the
dataset's own. Each image with a prediction gives ``DIR/<name>.png``: ground truth | prediction.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from pycocotools import mask as mask_util  # noqa: E402

from panoptic2.data import DatasetCatalog  # noqa: E402
from panoptic2.data.label_space import LabelSpace, label_space_of_datasets  # noqa: E402
from panoptic2.data.panoptic_label import read_panoptic_png  # noqa: E402
from panoptic2.data.reading import read_image  # noqa: E402
from panoptic2.structures import Boxes, BoxMode, Instances  # noqa: E402
from panoptic2.utils.file_io import atomic_write  # noqa: E402
from panoptic2.utils.plugins import load_plugins  # noqa: E402
from panoptic2.utils.visualizer import Visualizer  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", required=True, help="the prediction JSON")
    parser.add_argument("--dataset", required=True, help="the registered dataset predicted on")
    parser.add_argument("--output", required=True, help="folder of the drawings")
    parser.add_argument("--pred-folder", help="PNG folder of panoptic predictions")
    parser.add_argument("--conf-threshold", type=float, default=0.5, help="instances only")
    parser.add_argument("--num", type=int, default=None, help="draw at most this many images")
    parser.add_argument("--plugin", action="append", default=[], metavar="MODULE")
    return parser.parse_args(argv)


def _key(value: Any) -> str:
    """Matches image ids and file stems across formats (ints in COCO, str elsewhere)."""
    return str(value)


def _prediction_folder(json_path: str, given: str | None) -> str:
    if given:
        return given
    parent = os.path.dirname(os.path.abspath(json_path))
    for name in (Path(json_path).stem, "panoptic_predictions", "panoptic"):
        if os.path.isdir(os.path.join(parent, name)):
            return os.path.join(parent, name)
    raise FileNotFoundError(
        f"No PNG folder found beside {json_path!r} (tried {Path(json_path).stem}/, "
        "panoptic_predictions/, panoptic/); pass --pred-folder"
    )


def panoptic_prediction(
    annotation: dict[str, Any], folder: str, space: LabelSpace
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """A COCO panoptic prediction as the model's output: (H, W) ids (-1 void) and segments
    with contiguous category ids."""
    ids = read_panoptic_png(os.path.join(folder, annotation["file_name"])).astype(np.int64)
    ids[ids == 0] = -1
    to_contiguous = space.dataset_id_to_contiguous_id
    segments = []
    for s in annotation["segments_info"]:
        if int(s["category_id"]) not in to_contiguous:
            raise ValueError(
                f"Segment {s['id']} of {annotation['file_name']!r}: category {s['category_id']} "
                "is not a category of the dataset"
            )
        category = to_contiguous[int(s["category_id"])]
        segments.append(
            {"id": int(s["id"]), "category_id": category, "isthing": space.is_thing(category)}
        )
    return ids, segments


def instance_prediction(
    detections: list[dict[str, Any]], size: tuple[int, int], space: LabelSpace
) -> Instances:
    """COCO result dicts of one image as an :class:`Instances`."""
    to_contiguous = space.dataset_id_to_contiguous_id
    boxes = [BoxMode.convert(d["bbox"], BoxMode.XYWH_ABS, BoxMode.XYXY_ABS) for d in detections]
    out = Instances(
        size,
        pred_boxes=Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)),
        scores=torch.tensor([float(d["score"]) for d in detections], dtype=torch.float32),
        pred_classes=torch.tensor(
            [to_contiguous[int(d["category_id"])] for d in detections], dtype=torch.int64
        ),
    )
    if detections and all("segmentation" in d for d in detections):
        masks = [mask_util.decode(d["segmentation"]).astype(bool) for d in detections]
        out.pred_masks = torch.from_numpy(np.stack(masks))
    return out


def _save_side_by_side(path: str, left: np.ndarray, right: np.ndarray) -> None:
    rgb = np.concatenate([left, right], axis=1)
    ok, data = cv2.imencode(".png", np.ascontiguousarray(rgb[:, :, ::-1]))
    if not ok:
        raise RuntimeError(f"OpenCV cannot encode {path}")
    atomic_write(path, lambda f: f.write(data.tobytes()))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load_plugins(args.plugin)
    with open(args.input) as f:
        predictions = json.load(f)
    space = label_space_of_datasets([args.dataset])
    dicts = DatasetCatalog.get(args.dataset)
    by_key = {_key(d["image_id"]): d for d in dicts}
    by_key.update({Path(d["file_name"]).stem: d for d in dicts})
    os.makedirs(args.output, exist_ok=True)
    if isinstance(predictions, dict) and "annotations" in predictions:
        folder = _prediction_folder(args.input, args.pred_folder)
        items = [(_key(a["image_id"]), a) for a in predictions["annotations"]]
    elif isinstance(predictions, list):
        grouped = collections.defaultdict(list)
        for det in predictions:
            if float(det["score"]) >= args.conf_threshold:
                grouped[_key(det["image_id"])].append(det)
        items = sorted(grouped.items())
    else:
        raise ValueError(
            f"{args.input}: expected a COCO panoptic prediction JSON (with 'annotations') or "
            "a list of COCO instance results"
        )
    written = 0
    for key, prediction in items[: args.num]:
        if key not in by_key:
            raise KeyError(f"Image {key!r} of {args.input} is not in dataset {args.dataset!r}")
        d = by_key[key]
        image = read_image(d, "RGB")
        truth = Visualizer(image, space).draw_dataset_dict(d).get_image()
        drawing = Visualizer(image, space)
        if isinstance(prediction, dict):
            ids, segments = panoptic_prediction(prediction, folder, space)
            predicted = drawing.draw_panoptic_seg(ids, segments).get_image()
        else:
            instances = instance_prediction(prediction, image.shape[:2], space)
            predicted = drawing.draw_instance_predictions(instances).get_image()
        _save_side_by_side(
            os.path.join(args.output, f"{Path(d['file_name']).stem}.png"), truth, predicted
        )
        written += 1
    print(f"Wrote {written} drawings (ground truth | prediction) to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
