"""Benchmark loading COCO-train-sized panoptic annotations: ours against Detectron2's loader.

Registering COCO panoptic train means loading the dicts of 118,287 images before the first
training step. This script writes a panoptic JSON of that size (``--num-images``; the 133
COCO categories, 1 + Poisson(10) segments per image with random 24-bit ids, boxes, areas and
3 % crowd, about COCO's 11 segments per image) and an empty file for every image and PNG
it names, then loads it, each time in a fresh process, alternately with:

* ours: :func:`panoptic2.data.datasets.coco_panoptic.load_coco_panoptic_json` (every
  integrity check on: unique image ids, file names and annotations, every image and PNG
  present, every category known, every segment field present);
* Detectron2's ``load_coco_panoptic_json``, the function of its own source file
  ``detectron2/data/datasets/coco_panoptic.py`` under ``--detectron2-root`` (a source tree;
  nothing is built): the file is loaded by path with its package imports
  (``detectron2.data``, ``.coco``) replaced by empty stand-ins, since importing
  ``detectron2.data`` needs the whole built library; the function itself runs unchanged
  with Detectron2's real ``detectron2.utils.file_io`` (iopath). It checks only that the
  first image and PNG exist.

Both children first import torch (a training process has it, and Detectron2's package
imports it too), then their loader; each reports the load's wall time, its peak RSS
(``resource.getrusage``, the process's high-water mark) and the RSS before loading, so the
growth due to loading is peak minus that. It prints medians (``--repeat`` runs each) and
the ratios Detectron2 / ours for time and peak memory::

    python dev/bench/coco_startup.py --detectron2-root ~/src/detectron2 [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COCO_TRAIN_IMAGES = 118287

# Runs in the child: argv = mode, json, image dir, png dir, detectron2 root, output JSON.
CHILD = r"""
import json, os, resource, sys, time, types, importlib.util
import torch  # noqa: F401  (both frameworks run in a process that has it)
mode, json_file, image_dir, gt_dir, d2_root, out = sys.argv[1:7]
sys.path.insert(0, os.environ["PANOPTIC2_ROOT"])
from panoptic2.data.datasets.metadata import get_coco_panoptic_metadata, load_coco_panoptic_categories
meta = get_coco_panoptic_metadata(load_coco_panoptic_categories())
if mode == "ours":
    from panoptic2.data.datasets.coco_panoptic import load_coco_panoptic_json
    load = lambda: load_coco_panoptic_json(json_file, image_dir, gt_dir, meta)
else:
    sys.path.insert(0, d2_root)
    import detectron2.utils.file_io  # the real one (iopath)
    data = types.ModuleType("detectron2.data")
    data.DatasetCatalog = data.MetadataCatalog = None
    datasets = types.ModuleType("detectron2.data.datasets")
    datasets.__path__ = []
    coco = types.ModuleType("detectron2.data.datasets.coco")
    coco.load_coco_json = coco.load_sem_seg = None
    sys.modules.update({"detectron2.data": data, "detectron2.data.datasets": datasets,
                        "detectron2.data.datasets.coco": coco})
    name = "detectron2.data.datasets.coco_panoptic"
    path = os.path.join(d2_root, "detectron2", "data", "datasets", "coco_panoptic.py")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    load = lambda: module.load_coco_panoptic_json(json_file, image_dir, gt_dir, meta)

def rss_kb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024

before = rss_kb() if os.path.exists("/proc/self/statm") else 0
start = time.perf_counter()
dicts = load()
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
segments = sum(len(d["segments_info"]) for d in dicts)
with open(out, "w") as f:
    json.dump({"seconds": seconds, "peak_kb": peak, "before_kb": before,
               "images": len(dicts), "segments": segments}, f)
"""


def make_dataset(root: str, num_images: int) -> tuple[str, str, str]:
    """Writes (or reuses) the JSON and the empty image and PNG files under ``root``."""
    json_file = os.path.join(root, "annotations", "panoptic_train2017.json")
    image_dir = os.path.join(root, "train2017")
    gt_dir = os.path.join(root, "annotations", "panoptic_train2017")
    if os.path.exists(json_file):
        return json_file, image_dir, gt_dir
    start = time.perf_counter()
    sys.path.insert(0, ROOT)
    from panoptic2.data.datasets.metadata import load_coco_panoptic_categories

    categories = load_coco_panoptic_categories()
    category_ids = np.array([c["id"] for c in categories])
    rng = np.random.default_rng(0)
    os.makedirs(image_dir, exist_ok=True)
    os.makedirs(gt_dir, exist_ok=True)
    images, annotations = [], []
    for k in range(num_images):
        image_id = int(9 + 7 * k)  # sparse ids, as COCO's
        stem = f"{image_id:012d}"
        height, width = int(rng.integers(240, 641)), 640
        images.append(
            {"file_name": f"{stem}.jpg", "height": height, "width": width, "id": image_id}
        )
        n = 1 + int(rng.poisson(10))
        ids = rng.choice(1 << 24, size=n, replace=False)
        cats = rng.choice(category_ids, size=n)
        boxes = rng.integers(0, 300, size=(n, 4))
        areas = rng.integers(50, 40000, size=n)
        crowd = rng.random(n) < 0.03
        segments = [
            {
                "id": int(ids[s]),
                "category_id": int(cats[s]),
                "iscrowd": int(crowd[s]),
                "bbox": boxes[s].tolist(),
                "area": int(areas[s]),
            }
            for s in range(n)
        ]
        annotations.append(
            {"segments_info": segments, "file_name": f"{stem}.png", "image_id": image_id}
        )
        open(os.path.join(image_dir, f"{stem}.jpg"), "wb").close()
        open(os.path.join(gt_dir, f"{stem}.png"), "wb").close()
    data = {"info": {}, "licenses": [], "images": images, "annotations": annotations,
            "categories": categories}  # fmt: skip
    with open(json_file, "w") as f:
        json.dump(data, f)
    size = os.path.getsize(json_file) / 2**20
    print(
        f"generated {num_images} images ({size:.0f} MiB JSON) in {time.perf_counter() - start:.0f} s"
    )
    return json_file, image_dir, gt_dir


def run_child(mode: str, paths: tuple[str, str, str], d2_root: str) -> dict:
    env = {**os.environ, "PANOPTIC2_ROOT": ROOT}
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        command = [sys.executable, "-c", CHILD, mode, *paths, d2_root, out.name]
        proc = subprocess.run(command, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            sys.exit(f"{mode} failed:\n{proc.stderr[-4000:]}")
        with open(out.name) as f:
            return json.load(f)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--detectron2-root", default=os.environ.get("DETECTRON2_ROOT"),
                        help="a Detectron2 source tree (default $DETECTRON2_ROOT)")  # fmt: skip
    parser.add_argument("--num-images", type=int, default=COCO_TRAIN_IMAGES)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--data-dir", help="keep (and reuse) the generated files here")
    args = parser.parse_args()
    source = os.path.join(args.detectron2_root or "", "detectron2", "data", "datasets")
    if not os.path.isfile(os.path.join(source, "coco_panoptic.py")):
        sys.exit("--detectron2-root must be a Detectron2 source tree (git clone of detectron2)")
    with tempfile.TemporaryDirectory() as scratch:
        paths = make_dataset(args.data_dir or scratch, args.num_images)
        runs: dict[str, list[dict]] = {"detectron2": [], "ours": []}
        for index in range(args.repeat):
            for mode in ("detectron2", "ours") if index % 2 == 0 else ("ours", "detectron2"):
                runs[mode].append(run_child(mode, paths, args.detectron2_root))
    medians = {}
    for mode, results in runs.items():
        seconds = statistics.median(r["seconds"] for r in results)
        peak = statistics.median(r["peak_kb"] for r in results) / 2**10
        growth = statistics.median(r["peak_kb"] - r["before_kb"] for r in results) / 2**10
        medians[mode] = (seconds, peak, growth)
        times = ", ".join(f"{r['seconds']:.2f}" for r in results)
        print(
            f"{mode:10s} {results[0]['images']} images, {results[0]['segments']} segments: "
            f"median {seconds:.2f} s (runs {times}), peak RSS {peak:.0f} MiB, "
            f"of which loading {growth:.0f} MiB"
        )
    d2, ours = medians["detectron2"], medians["ours"]
    print(
        f"Detectron2 / ours: time {d2[0] / ours[0]:.2f}x, peak RSS {d2[1] / ours[1]:.2f}x, "
        f"RSS growth while loading {d2[2] / ours[2]:.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
