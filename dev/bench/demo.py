"""Benchmark ``tools/demo.py`` against the bare model on the same images, as whole processes.

Each round runs, interleaved, three processes on the same ``N`` images:

* ``demo``: ``tools/demo.py`` (reads, predicts, draws, writes the overlay PNGs);
* ``demo --output-json``: the same plus the COCO panoptic PNGs and JSON;
* ``bare``: this file with ``--bare``: reads the images with OpenCV and calls the model
  (``model([{"image": ...}])`` at the test size), nothing drawn or written.

It prints the median wall time of each process, the images per second of the image loop
(each process times its own loop, startup excluded) and the ratios to ``bare``::

    python dev/bench/demo.py --config-file CFG --weights model_final.pth \\
        --input 'datasets/shapes/val2017/*.jpg' [--num 20] [--rounds 3]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def bare(args: argparse.Namespace) -> None:
    """The model alone on the images (what the demo adds to is measured against this)."""
    import cv2
    import numpy as np
    import torch

    from panoptic2.checkpoint import Checkpointer
    from panoptic2.config import load_config
    from panoptic2.data.transforms import AugInput, build_augmentation
    from panoptic2.modeling import build_model

    cfg = load_config(args.config_file, ["MODEL.WEIGHTS", args.weights])
    model = build_model(cfg).eval()
    Checkpointer(model).load(cfg.MODEL.WEIGHTS)
    augmentations = build_augmentation(cfg, is_train=False)
    files = sorted(glob.glob(args.input))[: args.num]
    start = time.perf_counter()
    with torch.no_grad():
        for path in files:
            bgr = cv2.imread(path, cv2.IMREAD_COLOR)
            height, width = bgr.shape[:2]
            aug = AugInput(
                np.ascontiguousarray(bgr[:, :, ::-1] if cfg.INPUT.FORMAT == "RGB" else bgr)
            )
            aug.apply_augmentations(augmentations)
            image = torch.from_numpy(np.ascontiguousarray(aug.image.transpose(2, 0, 1)))
            model([{"image": image, "height": height, "width": width}])
    rate = len(files) / (time.perf_counter() - start)
    print(json.dumps({"images_per_s": rate}))


def _run(cmd: list[str]) -> tuple[float, float]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    text = proc.stdout + proc.stderr
    if '"images_per_s"' in text:
        rate = json.loads(text.strip().splitlines()[-1])["images_per_s"]
    else:
        line = next(x for x in text.splitlines() if "images/s)" in x)
        rate = float(line.split("(")[-1].split(" images/s")[0])
    return wall, rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--input", required=True, help="a glob of images (quote it)")
    parser.add_argument("--num", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--bare", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare:
        bare(args)
        return

    files = sorted(glob.glob(args.input))[: args.num]
    if len(files) < args.num:
        raise SystemExit(f"--input {args.input!r} has {len(files)} images, --num is {args.num}")
    with tempfile.TemporaryDirectory() as tmp:
        inputs = os.path.join(tmp, "inputs")
        os.makedirs(inputs)
        for path in files:
            os.symlink(os.path.abspath(path), os.path.join(inputs, os.path.basename(path)))
        pattern = os.path.join(inputs, "*")
        demo = [
            sys.executable,
            "tools/demo.py",
            "--config-file",
            args.config_file,
            "--input",
            pattern,
            "--output",
            os.path.join(tmp, "out"),
        ]
        weights = ["MODEL.WEIGHTS", args.weights]
        commands = {
            "bare": [sys.executable, __file__, "--bare", *sys.argv[1:]],
            "demo": [*demo, *weights],
            "demo --output-json": [*demo, "--output-json", *weights],
        }
        walls: dict[str, list[float]] = {name: [] for name in commands}
        rates: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.rounds):
            for name, cmd in commands.items():
                wall, rate = _run(cmd)
                walls[name].append(wall)
                rates[name].append(rate)

    from tabulate import tabulate

    base_wall = statistics.median(walls["bare"])
    base_rate = statistics.median(rates["bare"])
    rows = []
    for name in commands:
        wall = statistics.median(walls[name])
        rate = statistics.median(rates[name])
        rows.append([name, wall, wall / base_wall, rate, rate / base_rate])
    print(f"{len(files)} images, {args.rounds} rounds, medians")
    headers = ["process", "wall s", "wall / bare", "loop images/s", "images/s / bare"]
    print(tabulate(rows, headers=headers, tablefmt="pipe", floatfmt=".2f"))


if __name__ == "__main__":
    main()
