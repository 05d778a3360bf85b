"""Benchmark the PQ tool as a whole process against panopticapi's ``pq_compute``.

What a user waits for is the whole command, start-up included, so each measurement is a
fresh process: ``python tools/evaluate_panoptic.py ...`` against ``python -c "from
panopticapi.evaluation import pq_compute; ..."``. The data are generated COCO-format folders
(``--pairs``, default 200 and 2,000 ground-truth / prediction pairs; 640x480 PNGs written by
PIL as COCO's and panopticapi's are, each with 4-6 stuff regions, 10-20 polygonal things,
some crowd, void blobs; the prediction a shifted, sometimes dilated copy with 15 % of the
categories changed). Runs are interleaved (every round runs each command once, in rotating
order, so all see the same machine load) and the medians are compared:

* ``panopticapi x1``: panopticapi's ``pq_compute`` in one worker process
  (``multiprocessing.cpu_count`` patched to 1; its pool still forks that one worker);
* ``panopticapi``: panopticapi as shipped, one process per CPU;
* ``ours --workers 1`` (in the tool's own process) and ``ours --workers N`` (N = CPU count).

It prints each median, the ratios ``panopticapi x1 / ours --workers 1`` and ``panopticapi /
ours --workers N`` per size, and our scaling from 1 to N workers. It exits with status 1
when any PQ / SQ / RQ (All, Things, Stuff, per category) differs from panopticapi's by more
than 1e-12, or when ``--workers N`` differs from ``--workers 1`` at all.

panopticapi is imported from ``--panopticapi`` (a source checkout, put on ``PYTHONPATH``;
default ``$PANOPTICAPI_ROOT``) or else from the installed package; get it with
``pip install git+https://github.com/cocodataset/panopticapi.git``::

    python dev/bench/pq_tool.py [--pairs 200 2000] [--repeat 5] [--panopticapi DIR]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time

import cv2
import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOL = os.path.join(ROOT, "tools", "evaluate_panoptic.py")
H, W = 480, 640
THINGS, STUFF = list(range(1, 81)), list(range(81, 134))
CATEGORIES = [
    {"id": c, "name": f"class{c}", "isthing": int(c in THINGS), "color": [c, c, c]}
    for c in THINGS + STUFF
]
TOLERANCE = 1e-12

# panopticapi in one process: its pool takes the worker count from cpu_count at call time.
PANOPTICAPI = """
import json, multiprocessing, sys
if sys.argv[1] == "1":
    multiprocessing.cpu_count = lambda: 1
from panopticapi.evaluation import pq_compute
result = pq_compute(*sys.argv[2:6])
with open(sys.argv[6], "w") as f:
    json.dump(result, f)
"""


def _polygon(rng: np.random.Generator, cy: float, cx: float, ry: float, rx: float, n: int):
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    radii = rng.uniform(0.6, 1.0, n)
    points = np.stack([cx + rx * radii * np.cos(angles), cy + ry * radii * np.sin(angles)], 1)
    return np.round(points).astype(np.int32)


def make_layout(rng: np.random.Generator) -> tuple[np.ndarray, list[int], list[int]]:
    """``(labels, categories, crowd)``: an (H, W) int32 map of segment indices (0 void)."""
    labels = np.zeros((H, W), np.int32)
    cats, crowd = [0], [0]
    xs = np.arange(W)
    rows = np.arange(H)[:, None]
    num_stuff = int(rng.integers(4, 7))
    bounds = np.sort(rng.uniform(0.1, 0.95, num_stuff - 1)) * H
    top = np.zeros(W)
    for k in range(num_stuff):  # stuff: bands with wavy borders
        if k < num_stuff - 1:
            wave = np.sin(xs / rng.uniform(40, 120) + rng.uniform(0, 6))
            bottom = bounds[k] + 20 * wave + 8 * np.sin(xs / 13.0)
        else:
            bottom = np.full(W, H)
        labels[(rows >= top[None]) & (rows < bottom[None])] = len(cats)
        cats.append(int(rng.choice(STUFF)))
        crowd.append(0)
        top = bottom
    for k in range(int(rng.integers(10, 21))):  # things: polygons, the last ones on top
        ry, rx = rng.uniform(10, 120, 2)
        points = _polygon(rng, rng.uniform(0, H), rng.uniform(0, W), ry, rx, rng.integers(6, 24))
        cv2.fillPoly(labels, [points], len(cats))
        cats.append(int(rng.choice(THINGS)))
        crowd.append(int(k % 11 == 10))
    for _ in range(int(rng.integers(1, 4))):  # void blobs
        ry, rx = rng.uniform(10, 50, 2)
        cv2.fillPoly(labels, [_polygon(rng, rng.uniform(0, H), rng.uniform(0, W), ry, rx, 8)], 0)
    return labels, cats, crowd


def to_png_segments(
    labels: np.ndarray, cats: list[int], crowd: list[int], rng: np.random.Generator
) -> tuple[np.ndarray, list[dict]]:
    """Random 24-bit ids for the present segments and their ``segments_info`` (with area)."""
    areas = np.bincount(labels.ravel(), minlength=len(cats))
    present = np.flatnonzero(areas[1:]) + 1
    ids = np.zeros(len(cats), np.int64)
    ids[present] = rng.choice(np.arange(1, 1 << 24), len(present), replace=False)
    segments = [
        {"id": int(ids[k]), "category_id": cats[k], "iscrowd": crowd[k], "area": int(areas[k])}
        for k in present.tolist()
    ]
    return ids[labels], segments


def _write_png(path: str, ids: np.ndarray) -> None:
    ids = ids.astype(np.uint32)
    rgb = np.stack([ids & 255, (ids >> 8) & 255, (ids >> 16) & 255], -1).astype(np.uint8)
    Image.fromarray(rgb).save(path)


def make_pair(task: tuple[int, str]) -> tuple[dict, dict]:
    """Writes pair ``index`` under ``folder``; returns its two annotations."""
    index, folder = task
    rng = np.random.default_rng(index)
    labels, cats, crowd = make_layout(rng)
    gt_ids, gt_segments = to_png_segments(labels, cats, crowd, rng)
    shift = (int(rng.integers(-6, 7)), int(rng.integers(-6, 7)))
    pred = np.roll(labels, shift, (0, 1))
    if rng.random() < 0.5:  # grown segments, as an over-confident model's
        pred = cv2.dilate(pred.astype(np.float32), np.ones((5, 5), np.uint8)).astype(np.int32)
    pred_cats = [c if rng.random() > 0.15 else int(rng.choice(THINGS)) for c in cats]
    pred_ids, pred_segments = to_png_segments(pred, pred_cats, [0] * len(cats), rng)
    for segment in pred_segments:
        del segment["area"], segment["iscrowd"]
    name = f"{index:012d}.png"
    _write_png(os.path.join(folder, "gt", name), gt_ids)
    _write_png(os.path.join(folder, "pred", name), pred_ids)
    return (
        {"image_id": index, "file_name": name, "segments_info": gt_segments},
        {"image_id": index, "file_name": name, "segments_info": pred_segments},
    )


def make_dataset(folder: str, num_pairs: int) -> dict[str, str]:
    """Writes (or reuses) ``num_pairs`` pairs in ``folder``; returns the four paths."""
    paths = {
        "gt_json": os.path.join(folder, "gt.json"),
        "gt_folder": os.path.join(folder, "gt"),
        "pred_json": os.path.join(folder, "pred.json"),
        "pred_folder": os.path.join(folder, "pred"),
    }
    if os.path.exists(paths["pred_json"]):
        return paths
    os.makedirs(paths["gt_folder"], exist_ok=True)
    os.makedirs(paths["pred_folder"], exist_ok=True)
    start = time.perf_counter()
    with multiprocessing.Pool() as pool:
        pairs = pool.map(make_pair, [(i, folder) for i in range(num_pairs)], chunksize=16)
    images = [
        {"id": i, "file_name": f"{i:012d}.jpg", "height": H, "width": W} for i in range(num_pairs)
    ]
    for key, index in (("gt_json", 0), ("pred_json", 1)):
        data = {"annotations": [p[index] for p in pairs]}
        if key == "gt_json":
            data.update(images=images, categories=CATEGORIES)
        with open(paths[key], "w") as f:
            json.dump(data, f)
    segments = np.mean([len(p[0]["segments_info"]) for p in pairs])
    print(
        f"generated {num_pairs} pairs ({segments:.1f} ground-truth segments per image) in "
        f"{time.perf_counter() - start:.0f} s"
    )
    return paths


def _commands(paths: dict[str, str], out: str, workers: int) -> dict[str, list[str]]:
    files = [paths["gt_json"], paths["pred_json"], paths["gt_folder"], paths["pred_folder"]]
    tool = [
        sys.executable, TOOL, "--gt-json", files[0], "--pred-json", files[1],
        "--gt-folder", files[2], "--pred-folder", files[3],
    ]  # fmt: skip
    return {
        "panopticapi x1": [sys.executable, "-c", PANOPTICAPI, "1", *files, f"{out}/api1.json"],
        "panopticapi": [sys.executable, "-c", PANOPTICAPI, "N", *files, f"{out}/api.json"],
        "ours --workers 1": [*tool, "--workers", "1", "--output", f"{out}/ours1.json"],
        f"ours --workers {workers}": [
            *tool,
            "--workers",
            str(workers),
            "--output",
            f"{out}/oursN.json",
        ],  # fmt: skip
    }


def _run(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{command[:3]} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return elapsed


def _read_result(path: str) -> dict:
    with open(path) as f:
        result = json.load(f)
    result["per_class"] = {int(k): v for k, v in result["per_class"].items()}
    return result


def _largest_difference(a: dict, b: dict) -> float:
    worst = 0.0
    for name in ("All", "Things", "Stuff"):
        if a[name]["n"] != b[name]["n"]:
            return float("inf")
        worst = max(worst, *(abs(a[name][k] - b[name][k]) for k in ("pq", "sq", "rq")))
    if set(a["per_class"]) != set(b["per_class"]):
        return float("inf")
    for cat, values in a["per_class"].items():
        worst = max(worst, *(abs(values[k] - b["per_class"][cat][k]) for k in ("pq", "sq", "rq")))
    return worst


def bench_size(paths: dict[str, str], repeat: int, workers: int, env: dict[str, str]) -> bool:
    """Times every command ``repeat`` times, interleaved; prints medians and ratios.

    Returns:
        Whether all results agree.
    """
    with tempfile.TemporaryDirectory() as out:
        commands = _commands(paths, out, workers)
        names = list(commands)
        times: dict[str, list[float]] = {name: [] for name in names}
        for round_index in range(repeat):
            shift = round_index % len(names)
            for name in names[shift:] + names[:shift]:
                times[name].append(_run(commands[name], env))
        results = {name: _read_result(commands[name][-1]) for name in names}
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name in names:
        runs = ", ".join(f"{t:.2f}" for t in times[name])
        print(f"  {name:18s} median {medians[name]:7.2f} s   (runs: {runs})")
    ours_n = f"ours --workers {workers}"
    print(
        f"  one process:  panopticapi x1 / ours --workers 1 = "
        f"{medians['panopticapi x1'] / medians['ours --workers 1']:.1f}x"
    )
    print(
        f"  all CPUs:     panopticapi / {ours_n} = {medians['panopticapi'] / medians[ours_n]:.1f}x"
    )
    print(
        f"  our scaling:  --workers 1 / --workers {workers} = "
        f"{medians['ours --workers 1'] / medians[ours_n]:.2f}x"
    )
    ok = True
    reference = results["panopticapi x1"]
    print(
        f"  PQ {100 * reference['All']['pq']:.3f}  SQ {100 * reference['All']['sq']:.3f}  "
        f"RQ {100 * reference['All']['rq']:.3f}  ({reference['All']['n']} categories)"
    )
    for name in names[1:]:
        difference = _largest_difference(results[name], reference)
        print(f"  {name} vs panopticapi x1: largest difference {difference:.1e}")
        ok &= difference <= TOLERANCE
    if results[ours_n] != results["ours --workers 1"]:
        print(f"  {ours_n} differs from --workers 1")
        ok = False
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, nargs="+", default=[200, 2000])
    parser.add_argument("--repeat", type=int, default=5, help="runs of each command")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--panopticapi", default=os.environ.get("PANOPTICAPI_ROOT", ""))
    parser.add_argument("--data-dir", help="keep (and reuse) the generated pairs here")
    args = parser.parse_args()

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (ROOT, args.panopticapi) if p)}
    probe = [sys.executable, "-c", "import panopticapi.evaluation"]
    if subprocess.run(probe, env=env, capture_output=True).returncode != 0:
        sys.exit(
            f"panopticapi is not importable (looked in {args.panopticapi!r} and the installed "
            "packages): pip install git+https://github.com/cocodataset/panopticapi.git, or "
            "pass --panopticapi DIR of a source checkout."
        )
    print(f"{os.cpu_count()} CPUs; medians of {args.repeat} runs per command")
    ok = True
    with tempfile.TemporaryDirectory() as scratch:
        for num_pairs in args.pairs:
            folder = os.path.join(args.data_dir or scratch, f"pairs{num_pairs}")
            paths = make_dataset(folder, num_pairs)
            print(f"{num_pairs} pairs:")
            ok &= bench_size(paths, args.repeat, args.workers, env)
    if not ok:
        print("FAILED: results differ")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
