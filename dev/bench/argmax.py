"""Benchmark the per-pixel class argmax: ``torch.argmax`` against ``torch.max(...).indices``.

Prints the time of each on ``(C, H, W)`` float32 scores along dim 0 (what the semantic
evaluators and the panoptic post-processing compute) and checks they agree::

    python dev/bench/argmax.py [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import torch
from tabulate import tabulate

from panoptic2.layers.argmax import argmax_over_classes


def _ms(fn, repeat: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return 1000 * (time.perf_counter() - start) / repeat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for shape in ((9, 128, 160), (19, 480, 640), (19, 1024, 2048), (133, 480, 640)):
        scores = torch.randn(shape, generator=torch.Generator().manual_seed(0))
        if not torch.equal(scores.argmax(dim=0), argmax_over_classes(scores)):
            raise SystemExit(f"results differ for {shape}")
        repeat = max(2, args.repeat * 307200 // (shape[1] * shape[2]))
        reference = _ms(lambda x=scores: x.argmax(dim=0), repeat)
        ours = _ms(lambda x=scores: argmax_over_classes(x), repeat)
        rows.append([str(shape), reference, ours, reference / ours])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    print(
        tabulate(
            rows,
            headers=["scores (C, H, W)", "argmax ms", "max().indices ms", "speed-up"],
            tablefmt="pipe",
            floatfmt=".2f",
        )
    )


if __name__ == "__main__":
    main()
