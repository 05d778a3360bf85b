#!/usr/bin/env python
"""Draws a config's training data: the annotations as stored, or the loader's output.

    python tools/visualize_data.py --config-file CFG --source annotation --output DIR
    python tools/visualize_data.py --config-file CFG --source dataloader --output DIR --num 8

``annotation`` draws the ground truth of the first ``--num`` dicts of ``DATASETS.TRAIN``
over their images. ``dataloader`` draws what the model trains on, after the training
mapper (resizing, crops, flips, colour jitter): the augmented image with its targets; for
Panoptic-DeepLab, one row of image | semantic target | centre heatmap | offsets (colour
wheel: hue = direction, brightness = length).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from panoptic2.config import load_config  # noqa: E402
from panoptic2.data import build_train_loader, get_dataset_dicts  # noqa: E402
from panoptic2.data.label_space import label_space_of_datasets  # noqa: E402
from panoptic2.data.reading import read_image  # noqa: E402
from panoptic2.structures import Instances  # noqa: E402
from panoptic2.utils.file_io import atomic_write  # noqa: E402
from panoptic2.utils.visualizer import Visualizer  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument("--source", choices=("annotation", "dataloader"), required=True)
    parser.add_argument("--output", required=True, help="folder of the drawings")
    parser.add_argument("--num", type=int, default=16, help="images (samples) to draw")
    parser.add_argument("--scale", type=float, default=1.0, help="drawing scale")
    parser.add_argument("--plugin", action="append", default=[], metavar="MODULE")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="KEY VALUE overrides")
    return parser.parse_args(argv)


def _save(path: str, rgb: np.ndarray) -> None:
    ok, data = cv2.imencode(".png", np.ascontiguousarray(rgb[:, :, ::-1]))
    if not ok:
        raise RuntimeError(f"OpenCV cannot encode {path}")
    atomic_write(path, lambda f: f.write(data.tobytes()))


def heatmap_image(heatmap: np.ndarray) -> np.ndarray:
    """A (H, W) map in [0, 1] as a (H, W, 3) uint8 RGB colour map (black = 0)."""
    gray = np.clip(heatmap * 255.0, 0, 255).astype(np.uint8)
    return cv2.applyColorMap(gray, cv2.COLORMAP_INFERNO)[:, :, ::-1]


def offset_image(offset: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """(2, H, W) (dy, dx) offsets as an RGB colour wheel: hue the direction, value the length
    (relative to the longest), black where ``weights`` is 0."""
    dy, dx = offset
    magnitude = np.hypot(dx, dy)
    angle = (np.degrees(np.arctan2(dy, dx)) + 360.0) % 360.0
    hsv = np.zeros((*magnitude.shape, 3), np.uint8)
    hsv[..., 0] = (angle / 2).astype(np.uint8)  # OpenCV hue is 0..179
    hsv[..., 1] = 255
    hsv[..., 2] = np.clip(255 * magnitude / max(float(magnitude.max()), 1e-6), 0, 255)
    if weights is not None:
        hsv[..., 2][weights <= 0] = 0
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def _sample_image(sample: dict[str, Any], image_format: str) -> np.ndarray:
    image = sample["image"].permute(1, 2, 0).numpy()
    return np.ascontiguousarray(image[:, :, ::-1] if image_format == "BGR" else image)


def draw_sample(sample: dict[str, Any], label_space: Any, image_format: str, scale: float):
    """The panels of one mapped training sample, as one (H, W * k, 3) RGB image."""
    image = _sample_image(sample, image_format)
    panels = [image]
    if "instances" in sample:
        panels.append(
            Visualizer(image, label_space, scale)
            .draw_instance_predictions(_gt_as_predictions(sample["instances"]))
            .get_image()
        )
    if "sem_seg" in sample:
        sem = sample["sem_seg"].numpy()
        # Panoptic FPN trains its semantic head on the separated map (0 things, 1..S stuff).
        space = label_space.panoptic_fpn_space() if "instances" in sample else label_space
        panels.append(Visualizer(image, space, scale).draw_sem_seg(sem).get_image())
    if "center" in sample:
        panels.append(heatmap_image(sample["center"][0].numpy()))
    if "offset" in sample:
        weights = sample.get("offset_weights")
        panels.append(
            offset_image(sample["offset"].numpy(), None if weights is None else weights.numpy())
        )
    height = max(p.shape[0] for p in panels)
    panels = [cv2.resize(p, (p.shape[1] * height // p.shape[0], height)) for p in panels]
    return np.concatenate(panels, axis=1)


def _gt_as_predictions(instances: Any) -> Any:
    """Ground-truth instances drawn as predictions (boxes, masks, classes, no score)."""
    out = Instances(
        instances.image_size, pred_boxes=instances.gt_boxes, pred_classes=instances.gt_classes
    )
    if instances.has("gt_masks"):
        out.pred_masks = instances.gt_masks.tensor
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = load_config(args.config_file, args.opts, plugins=args.plugin)
    os.makedirs(args.output, exist_ok=True)
    label_space = label_space_of_datasets(cfg.DATASETS.TRAIN)
    written = 0
    if args.source == "annotation":
        for d in get_dataset_dicts(cfg.DATASETS.TRAIN)[: args.num]:
            image = read_image(d, "RGB")
            drawn = Visualizer(image, label_space, args.scale).draw_dataset_dict(d)
            stem = Path(d["file_name"]).stem
            drawn.save(os.path.join(args.output, f"{stem}.png"))
            written += 1
    else:
        cfg.defrost()
        cfg.DATALOADER.NUM_WORKERS = 0
        loader = build_train_loader(cfg)
        for batch in loader:
            for sample in batch:
                stem = Path(str(sample.get("file_name", written))).stem
                panel = draw_sample(sample, label_space, cfg.INPUT.FORMAT, args.scale)
                _save(os.path.join(args.output, f"{written:04d}_{stem}.png"), panel)
                written += 1
                if written >= args.num:
                    break
            if written >= args.num:
                break
    print(f"Wrote {written} drawings to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
