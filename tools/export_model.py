#!/usr/bin/env python
"""Exports a trained model for deployment: ``torch.export``, TorchScript or ONNX.

    python tools/export_model.py --config-file CFG --format export --output DIR \\
        MODEL.WEIGHTS model_final.pth
    python tools/export_model.py --config-file CFG --format torchscript --output DIR \\
        --sample-image img.png MODEL.WEIGHTS model_final.pth
    python tools/export_model.py --config-file CFG --format onnx --output DIR MODEL.WEIGHTS W

``DIR`` receives ``model.pt2`` / ``model.pt`` / ``model.onnx`` and ``export_info.json`` (the
input contract, the output names, the label space). The exported function takes one
(1, 3, H, W) float32 image, 0-255, in ``INPUT.FORMAT`` channel order, resized as the test
transform does and padded (bottom, right, with ``MODEL.PIXEL_MEAN``) so that H and W are
multiples of ``size_divisibility``; H and W are dynamic, its outputs are at the input size.

What each model exports (see ``panoptic2.export``):

* Panoptic-DeepLab: ``sem_seg``, ``center_heatmap``, ``offsets`` and, in the ``export``
  format, the post-processing through the ``panoptic2._C`` ops: ``panoptic_seg`` (the
  model's id map) and ``centers``. ``--no-postprocess`` drops it. TorchScript and ONNX hold
  the network: a trace would fix the number of centers seen at export.
* DeepLabV3 / V3+ (``projects.DeepLab.deeplab``): ``sem_seg`` and, except in ONNX,
  ``sem_seg_ids`` (argmax).
* Panoptic FPN / Mask R-CNN: the dense network only: ``sem_seg`` and the RPN head's
  objectness logits and anchor deltas per level. Not exported: proposal selection (per-level
  top-k, box decoding, NMS), the ROI box and mask heads, detector post-processing (box
  scaling, mask pasting) and panoptic fusion, whose branches and loops depend on the data
  (``if not valid.all()``, per-instance Python loops).

The sample image (``--sample-image``, else the first image of ``DATASETS.TEST[0]``) is the
example input (traced padded by one more ``size_divisibility`` block per side); after saving,
the artifact is loaded back and compared with the eager model on the sample and on the sample
padded by two more blocks, i.e. on two sizes that were not traced.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

# The repository root, so that plugins living in it (``projects.DeepLab.deeplab``) import
# when this script is run by path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from panoptic2.checkpoint import Checkpointer, require_loaded_weights  # noqa: E402
from panoptic2.config import load_config  # noqa: E402
from panoptic2.data import DatasetCatalog  # noqa: E402
from panoptic2.data.transforms import AugInput, build_augmentation  # noqa: E402
from panoptic2.export import (  # noqa: E402
    ARTIFACT_NAMES,
    EXPORT_FORMATS,
    ExportAdapter,
    export_adapter,
    load_artifact,
    max_abs_differences,
    save_artifact,
)
from panoptic2.modeling import build_model  # noqa: E402
from panoptic2.registry import EXPORT_ADAPTER_REGISTRY  # noqa: E402
from panoptic2.utils.file_io import atomic_write  # noqa: E402
from panoptic2.utils.logger import setup_logger  # noqa: E402

logger = logging.getLogger("panoptic2.export_model")

# Largest difference accepted between the artifact and the eager model on float outputs
# (relative to the output's largest magnitude, at least 1); integer outputs must be equal.
FLOAT_TOLERANCE = 1e-4


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parses the command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument("--format", choices=EXPORT_FORMATS, default="export")
    parser.add_argument("--output", required=True, help="output directory")
    parser.add_argument("--sample-image", help="example input (default: first test image)")
    parser.add_argument(
        "--no-postprocess", action="store_true", help="export the network outputs only"
    )
    parser.add_argument(
        "--allow-partial-weights",
        action="store_true",
        help="export even when MODEL.WEIGHTS does not fill the model (e.g. a random init)",
    )
    parser.add_argument("--plugin", action="append", default=[], metavar="MODULE")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="KEY VALUE overrides")
    return parser.parse_args(argv)


def build_eager_model(cfg: Any, allow_partial_weights: bool) -> torch.nn.Module:
    """The model in eval mode with ``MODEL.WEIGHTS`` loaded; never compiled."""
    if cfg.MODEL.COMPILE:
        logger.info("MODEL.COMPILE is ignored: the export traces the eager model")
        cfg = cfg.clone()
        cfg.defrost()
        cfg.MODEL.COMPILE = False
    model = build_model(cfg).eval()
    checkpointer = Checkpointer(model, allow_partial_weights=allow_partial_weights)
    checkpointer.load(cfg.MODEL.WEIGHTS)
    if not allow_partial_weights:
        require_loaded_weights(
            checkpointer.last_load_report,
            how_to_allow="Set MODEL.WEIGHTS to this model's checkpoint, or pass "
            "--allow-partial-weights to export it anyway.",
        )
    return model


def read_sample(cfg: Any, path: str | None) -> np.ndarray:
    """The example image, (H, W, 3) uint8 in ``INPUT.FORMAT`` order, test-resized."""
    if path is None:
        if not cfg.DATASETS.TEST:
            raise ValueError("No --sample-image and no DATASETS.TEST to take the first image from")
        dataset = cfg.DATASETS.TEST[0]
        records = DatasetCatalog.get(dataset)
        if not records:
            raise ValueError(f"Dataset {dataset!r} has no images; give --sample-image")
        path = records[0]["file_name"]
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"Cannot read the sample image {path}")
    if cfg.INPUT.FORMAT == "RGB":
        image = image[:, :, ::-1]
    aug = AugInput(np.ascontiguousarray(image))
    aug.apply_augmentations(build_augmentation(cfg, is_train=False))
    logger.info("Sample image %s, %s after the test resize", path, aug.image.shape[:2])
    return aug.image


def sample_tensor(adapter: ExportAdapter, image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> the adapter's (1, 3, H', W') padded float input."""
    tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float()[None]
    return adapter.pad(tensor.to(adapter.model.pixel_mean.device))


def verify(adapter: ExportAdapter, path: str, sample: torch.Tensor) -> dict[str, dict]:
    """Runs the saved artifact against the eager adapter on the sample and on the sample
    padded by two more blocks per side (the export traced it padded by one).

    Returns:
        ``{"HxW": {output: max abs difference}}``.

    Raises:
        RuntimeError: an integer output differs, or a float one by more than
            :data:`FLOAT_TOLERANCE` (relative).
    """
    run = load_artifact(path)
    report = {}
    for image in (sample, adapter.pad(sample, extra_blocks=2)):
        with torch.no_grad():
            expected = [t.cpu() for t in adapter(image)]
        produced = run(image.cpu())
        diffs = max_abs_differences(expected, produced, adapter.output_names)
        size = f"{image.shape[2]}x{image.shape[3]}"
        report[size] = diffs
        for (name, diff), ref in zip(diffs.items(), expected):
            scale = max(1.0, float(ref.abs().max())) if ref.numel() else 1.0
            bad = diff > 0 if not ref.is_floating_point() else diff > FLOAT_TOLERANCE * scale
            if bad:
                raise RuntimeError(
                    f"{path}: output {name!r} differs from the eager model at {size} "
                    f"(max abs difference {diff})"
                )
    return report


def write_info(path: str, cfg: Any, args: argparse.Namespace, adapter: ExportAdapter, report):
    """``export_info.json``: what a deployment needs to feed and read the artifact."""
    model = adapter.model
    space = getattr(model, "label_space", None)
    info = {
        "format": args.format,
        "artifact": ARTIFACT_NAMES[args.format],
        "meta_architecture": cfg.MODEL.META_ARCHITECTURE,
        "config_file": args.config_file,
        "weights": cfg.MODEL.WEIGHTS,
        "torch": torch.__version__,
        "input": {
            "name": "image",
            "shape": [1, 3, "H", "W"],
            "dtype": "float32",
            "range": [0, 255],
            "channel_order": cfg.INPUT.FORMAT,
            "size_divisibility": adapter.size_divisibility,
            "pad_value": model.pixel_mean.flatten().tolist(),
            "min_size_test": cfg.INPUT.MIN_SIZE_TEST,
            "max_size_test": cfg.INPUT.MAX_SIZE_TEST,
        },
        "outputs": list(adapter.output_names),
        "postprocess": adapter.postprocess,
        "label_space": space.to_dict() if space is not None else None,
        "check_max_abs_differences": report,
    }
    text = json.dumps(info, indent=2)
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def main(args: argparse.Namespace) -> dict[str, dict]:
    setup_logger(name="panoptic2")
    cfg = load_config(args.config_file, args.opts, plugins=args.plugin)
    model = build_eager_model(cfg, args.allow_partial_weights)
    adapter_cls = EXPORT_ADAPTER_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE)
    # ONNX holds the network only, TorchScript too where a trace would fix the
    # post-processing's data-dependent sizes; some adapters have no post-processing.
    postprocess = (
        args.format != "onnx"
        and (args.format != "torchscript" or adapter_cls.postprocess_traceable)
        and not args.no_postprocess
        and bool(adapter_cls.postprocess_output_names)
    )
    adapter = adapter_cls(model, postprocess=postprocess)
    sample = sample_tensor(adapter, read_sample(cfg, args.sample_image))
    logger.info(
        "Exporting %s (%s) to %s, outputs %s",
        cfg.MODEL.META_ARCHITECTURE,
        args.format,
        args.output,
        list(adapter.output_names),
    )
    # Traced one block larger than the sample: a feature map of size 1 in the example (e.g.
    # ASPP's pooled map when the sample matches its pooling kernel) would fix that size.
    artifact = export_adapter(adapter, adapter.pad(sample, extra_blocks=1), args.format)
    os.makedirs(args.output, exist_ok=True)
    path = os.path.join(args.output, ARTIFACT_NAMES[args.format])
    save_artifact(artifact, args.format, path)
    report = verify(adapter, path, sample)
    for size, diffs in report.items():
        logger.info("Artifact vs eager model at %s, max abs differences: %s", size, diffs)
    write_info(os.path.join(args.output, "export_info.json"), cfg, args, adapter, report)
    logger.info("Wrote %s and export_info.json", path)
    return report


if __name__ == "__main__":
    main(parse_args())
