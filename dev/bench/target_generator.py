"""Benchmark the vectorised Panoptic-DeepLab target generator against the per-instance one.

Builds realistic synthetic panoptic maps (Cityscapes-like 1024x2048 with 40 instances and
COCO-like 512x512 with 20), times both implementations in the same run, checks that they
agree exactly and prints the speed-up::

    python dev/bench/target_generator.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from tabulate import tabulate

from panoptic2.data.mappers.panoptic_deeplab_targets import PanopticDeepLabTargetGenerator
from panoptic2.testing.references import panoptic_deeplab_targets_reference

# (name, height, width, instances, label_divisor, ignore_label, stuff ids, thing ids)
CASES = [
    ("cityscapes 1024x2048", 1024, 2048, 40, 1000, 255, list(range(11)), list(range(11, 19))),
    ("coco 512x512", 512, 512, 20, 256, 0, list(range(81, 134)), list(range(1, 81))),
]


def make_map(h, w, n_inst, div, ignore, stuff, things, seed=0) -> np.ndarray:
    """Horizontal stuff bands, ``n_inst`` overlapping ellipses of thing classes, a crowd
    ellipse and a void border, as ``semantic * div + instance`` int32."""
    rng = np.random.default_rng(seed)
    sem = np.asarray(stuff)[(np.arange(h) * len(stuff) // h) % len(stuff)]
    pan = np.repeat((sem * div)[:, None], w, axis=1).astype(np.int32)
    yy, xx = np.mgrid[0:h, 0:w]
    counters: dict[int, int] = {}
    for i in range(n_inst + 1):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = rng.uniform(0.02, 0.15) * h, rng.uniform(0.02, 0.15) * w
        cls = int(rng.choice(things))
        inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        if i == n_inst:  # the last one is a crowd region
            pan[inside] = cls * div
            continue
        counters[cls] = counters.get(cls, 0) + 1
        pan[inside] = cls * div + counters[cls]
    pan[:8] = ignore * div
    return pan


def _time(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="best-of repeats per timing")
    args = parser.parse_args()
    rows = []
    for name, h, w, n, div, ignore, stuff, things in CASES:
        pan = make_map(h, w, n, div, ignore, stuff, things)
        kwargs = dict(ignore_label=ignore, thing_ids=things, label_divisor=div)
        gen = PanopticDeepLabTargetGenerator(**kwargs)
        fast, ref = gen(pan), panoptic_deeplab_targets_reference(pan, **kwargs)
        for key in ref:
            if not np.array_equal(fast[key], ref[key]):
                raise AssertionError(f"{name}: '{key}' differs between the two versions")
        t_fast = _time(lambda pan=pan, gen=gen: gen(pan), args.repeats)
        t_ref = _time(
            lambda pan=pan, kwargs=kwargs: panoptic_deeplab_targets_reference(pan, **kwargs),
            args.repeats,
        )
        rows.append(
            [name, n, f"{t_ref * 1e3:.1f}", f"{t_fast * 1e3:.1f}", f"{t_ref / t_fast:.1f}x"]
        )
    print(tabulate(rows, headers=["map", "instances", "reference ms", "vectorised ms", "speed-up"]))


if __name__ == "__main__":
    main()
