#!/usr/bin/env python
"""Runs a trained model on images or a video and writes the overlays (Detectron2's demo).

    python tools/demo.py --config-file CFG --input a.jpg 'dir/*.png' --output OUT \\
        MODEL.WEIGHTS out/model_final.pth
    python tools/demo.py --config-file CFG --video-input clip.mp4 --output OUT.mp4 \\
        MODEL.WEIGHTS out/model_final.pth
    python tools/demo.py ... --output-json   # also the predictions, in COCO formats

Each image gives ``OUT/<name>.png``, its panoptic (else semantic, else instance) overlay; a
single input with an ``--output`` that ends in an image extension is written there. A video
gives an annotated video with the same frame rate and size (OpenCV reader and writer).
With ``--output-json``, predictions go next to the overlays: panoptic predictions as COCO
panoptic PNGs (``OUT/panoptic/``) + ``OUT/panoptic_predictions.json`` and instance
predictions as ``OUT/instances_predictions.json`` (COCO results), with the dataset's own
category ids. The model needs no registered dataset when its checkpoint stores its label
space.
"""

from __future__ import annotations

import argparse
import glob
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

# The repository root, so that plugins living in it import when run by path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from panoptic2.config import load_config  # noqa: E402
from panoptic2.data.panoptic_label import (  # noqa: E402
    panoptic_categories,
    write_panoptic_prediction,
)
from panoptic2.engine import DefaultPredictor  # noqa: E402
from panoptic2.evaluation.coco_evaluation import instances_to_coco_json  # noqa: E402
from panoptic2.utils.file_io import atomic_write  # noqa: E402
from panoptic2.utils.logger import setup_logger  # noqa: E402
from panoptic2.utils.visualizer import ColorMode, Visualizer  # noqa: E402

logger = logging.getLogger("panoptic2.demo")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parses the command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument(
        "--input", nargs="+", default=[], help="image files or glob patterns (quote them)"
    )
    parser.add_argument("--video-input", help="a video file")
    parser.add_argument("--output", required=True, help="output folder (or file for one input)")
    parser.add_argument(
        "--confidence-threshold",
        type=float,
        default=0.5,
        help="lowest score of a drawn (and, for box-based models, predicted) instance",
    )
    parser.add_argument(
        "--output-json", action="store_true", help="also write the predictions (COCO formats)"
    )
    parser.add_argument("--plugin", action="append", default=[], metavar="MODULE")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="KEY VALUE overrides")
    args = parser.parse_args(argv)
    if bool(args.input) == bool(args.video_input):
        parser.error("give either --input or --video-input")
    return args


def setup_cfg(args: argparse.Namespace) -> Any:
    """The config with the demo's confidence threshold applied to box-based models."""
    threshold = str(args.confidence_threshold)
    opts = [
        "MODEL.ROI_HEADS.SCORE_THRESH_TEST",
        threshold,
        "MODEL.PANOPTIC_FPN.COMBINE.INSTANCES_CONFIDENCE_THRESH",
        threshold,
        *args.opts,
    ]
    return load_config(args.config_file, opts, plugins=args.plugin)


def expand_inputs(patterns: list[str]) -> list[str]:
    """Files named by the patterns (globs expanded, sorted); an empty match is an error."""
    files = []
    for pattern in patterns:
        matches = sorted(glob.glob(os.path.expanduser(pattern)))
        if not matches:
            raise FileNotFoundError(f"--input {pattern!r} matches no file")
        files.extend(m for m in matches if os.path.isfile(m))
    return files


def draw(rgb: np.ndarray, outputs: dict[str, Any], predictor: DefaultPredictor, threshold: float):
    """The overlay of one prediction: panoptic, else semantic, else instances."""
    visualizer = Visualizer(rgb, predictor.model.label_space, instance_mode=ColorMode.IMAGE)
    if "panoptic_seg" in outputs:
        id_map, segments = outputs["panoptic_seg"]
        if segments is not None:
            # Thing segments below the threshold are not drawn (void shows the image).
            low = [s["id"] for s in segments if s.get("score", 1.0) < threshold]
            if low:
                id_map = id_map.clone()
                id_map[torch.isin(id_map, torch.tensor(low, device=id_map.device))] = -1
                segments = [s for s in segments if s["id"] not in low]
        return visualizer.draw_panoptic_seg(id_map.cpu(), segments)
    if "sem_seg" in outputs:
        return visualizer.draw_sem_seg(outputs["sem_seg"].argmax(dim=0).cpu())
    instances = outputs["instances"].to("cpu")
    return visualizer.draw_instance_predictions(instances[instances.scores >= threshold])


class JsonWriter:
    """Collects the predictions of ``--output-json`` and writes them at the end."""

    def __init__(self, output_dir: str, predictor: DefaultPredictor) -> None:
        self.output_dir = output_dir
        self.label_space = predictor.model.label_space
        if self.label_space is None:
            raise ValueError(
                "--output-json needs the model's label space (dataset category ids): name a "
                "dataset in the config or use a checkpoint that stores one"
            )
        self.panoptic: list[dict] = []
        self.instances: list[dict] = []

    def add(self, image_id: str, outputs: dict[str, Any]) -> None:
        if "panoptic_seg" in outputs:
            id_map, segments = outputs["panoptic_seg"]
            folder = os.path.join(self.output_dir, "panoptic")
            os.makedirs(folder, exist_ok=True)
            file_name = f"{image_id}.png"
            infos = write_panoptic_prediction(
                os.path.join(folder, file_name), id_map.cpu().numpy(), segments, self.label_space
            )
            self.panoptic.append(
                {"image_id": image_id, "file_name": file_name, "segments_info": infos}
            )
        if "instances" in outputs:
            to_dataset = self.label_space.contiguous_id_to_dataset_id
            self.instances += instances_to_coco_json(
                outputs["instances"].to("cpu"), image_id, to_dataset
            )

    def close(self) -> None:
        if self.panoptic:
            data = {
                "annotations": self.panoptic,
                "categories": panoptic_categories(self.label_space),
            }
            _write_json(os.path.join(self.output_dir, "panoptic_predictions.json"), data)
        if self.instances:
            _write_json(os.path.join(self.output_dir, "instances_predictions.json"), self.instances)


def _write_json(path: str, data: Any) -> None:
    atomic_write(path, lambda f: f.write(json.dumps(data).encode("utf-8")))
    logger.info("Wrote %s", path)


def run_images(args: argparse.Namespace, predictor: DefaultPredictor) -> float:
    """Overlays for every input image; returns images per second (reading to writing)."""
    files = expand_inputs(args.input)
    single_file = len(files) == 1 and args.output.lower().endswith(IMAGE_EXTENSIONS)
    out_dir = os.path.dirname(args.output) if single_file else args.output
    os.makedirs(out_dir or ".", exist_ok=True)
    writer = JsonWriter(out_dir or ".", predictor) if args.output_json else None
    start = time.perf_counter()
    for path in tqdm(files, desc="demo", disable=not sys.stderr.isatty()):
        bgr = cv2.imread(path, cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"Cannot read image {path!r} (missing, or not an image)")
        outputs = predictor(bgr)
        overlay = draw(bgr[:, :, ::-1], outputs, predictor, args.confidence_threshold)
        stem = os.path.splitext(os.path.basename(path))[0]
        overlay.save(args.output if single_file else os.path.join(out_dir, f"{stem}.png"))
        if writer is not None:
            writer.add(stem, outputs)
    if writer is not None:
        writer.close()
    rate = len(files) / max(time.perf_counter() - start, 1e-9)
    logger.info("Processed %d images (%.2f images/s) into %s", len(files), rate, out_dir or ".")
    return rate


def run_video(args: argparse.Namespace, predictor: DefaultPredictor) -> float:
    """An annotated copy of the video; returns frames per second (reading to writing)."""
    capture = cv2.VideoCapture(args.video_input)
    if not capture.isOpened():
        raise ValueError(f"Cannot open video {args.video_input!r}")
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
    height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    output = args.output
    if not output.lower().endswith((".mp4", ".avi", ".mkv")):
        os.makedirs(output, exist_ok=True)
        output = os.path.join(output, Path(args.video_input).stem + ".mp4")
    # Written to a temp name and renamed at the end: no half-written video under the name.
    tmp = f"{output}.partial{Path(output).suffix}"
    fourcc = cv2.VideoWriter_fourcc(*("XVID" if output.endswith(".avi") else "mp4v"))
    writer = cv2.VideoWriter(tmp, fourcc, fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write the video {output!r}")
    frames = 0
    start = time.perf_counter()
    try:
        with tqdm(total=total, desc="demo video", disable=not sys.stderr.isatty()) as bar:
            while True:
                ok, bgr = capture.read()
                if not ok:
                    break
                outputs = predictor(bgr)
                overlay = draw(bgr[:, :, ::-1], outputs, predictor, args.confidence_threshold)
                writer.write(np.ascontiguousarray(overlay.get_image()[:, :, ::-1]))
                frames += 1
                bar.update(1)
    finally:
        capture.release()
        writer.release()
    os.replace(tmp, output)
    rate = frames / max(time.perf_counter() - start, 1e-9)
    logger.info("Wrote %d frames (%.2f frames/s) to %s", frames, rate, output)
    return rate


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logger()
    predictor = DefaultPredictor(setup_cfg(args))
    if args.video_input:
        run_video(args, predictor)
    else:
        run_images(args, predictor)
    return 0


if __name__ == "__main__":
    sys.exit(main())
