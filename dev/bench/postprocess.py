"""Benchmark of Panoptic-DeepLab post-processing: ours against Detectron2 and the memory floor.

Cityscapes-sized synthetic outputs (1024x2048, 19 classes of which 8 things, offsets
pointing to their centers; ``--instances`` instances drawn per case) go through
``get_panoptic_segmentation`` as users call it: on CPU with ``panoptic2._C`` that is the
fused kernel (centers, grouping and merge in one pass), otherwise the PyTorch fallback.
Per case the script prints, as medians over interleaved rounds (each round runs every
contender once, in turn, so load on a shared machine hits all alike):

* ours, in ms per image;
* Detectron2's ``get_panoptic_segmentation`` (``--detectron2-root``: a Detectron2 source
  tree; its ``projects/Panoptic-DeepLab/panoptic_deeplab/post_processing.py`` is loaded on
  its own, it needs only torch) and the ratio Detectron2 / ours, once as it runs and once
  with its ``torch.norm`` computed as a sum of squares (see ``_norm_as_sum_of_squares``);
* the bandwidth floor: a copy of as many bytes as the post-processing must move (reading
  sem_seg int64, heatmap float32 and offsets float32, writing the int64 panoptic map), and
  the fraction floor / ours (1.0 = at the floor);
* the PyTorch fallback (``--fallback-rounds``, default 1: it is slow), and the CUDA kernels
  when a GPU is present.

Outputs (panoptic map and centers) of ours, of the fallback, of Detectron2 and of CUDA must
be identical; the script exits with status 1 when any differ.

Usage:
    python dev/bench/postprocess.py [--detectron2-root /tmp/d2src] [--instances 8 300]
        [--rounds 3 --repeats 5 --threads 2]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from unittest import mock

import torch

from panoptic2.modeling.postprocessing import get_panoptic_segmentation
from panoptic2.ops import extension
from panoptic2.testing.synthetic import make_panoptic_deeplab_outputs

THING_IDS = list(range(11, 19))  # Cityscapes train ids 11..18 are the 8 thing classes
# label_divisor, stuff_area, void_label, threshold, nms_kernel, top_k (Detectron2's
# Cityscapes Panoptic-DeepLab settings)
SETTINGS = (1000, 2048, 255, 0.1, 7, 200)


def _load_detectron2(root: str) -> ModuleType:
    """Detectron2's Panoptic-DeepLab ``post_processing`` module, loaded from its file."""
    path = Path(root) / "projects" / "Panoptic-DeepLab" / "panoptic_deeplab" / "post_processing.py"
    if not path.is_file():
        sys.exit(f"--detectron2-root: {path} not found (a Detectron2 source tree is needed)")
    spec = importlib.util.spec_from_file_location("detectron2_panoptic_deeplab_pp", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _norm_as_sum_of_squares(x: torch.Tensor, dim: int) -> torch.Tensor:
    """The Euclidean norm Detectron2's grouping takes, as a plain sum of squares.

    On some torch releases ``torch.norm(x, dim=-1)`` over Detectron2's (K, H*W, 2) tensor is
    ~45x slower than this; Detectron2 run with it measures its algorithm rather than that
    regression (its outputs must still equal the reference's, which the script checks).
    """
    return (x * x).sum(dim).sqrt()


def _seconds(fn: Callable[[], object], sync: bool = False) -> float:
    if sync:
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if sync:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def _same(a: tuple[torch.Tensor, torch.Tensor], b: tuple[torch.Tensor, torch.Tensor]) -> bool:
    return torch.equal(a[0].cpu(), b[0].cpu()) and torch.equal(a[1].cpu(), b[1].cpu())


def _bench_case(args: argparse.Namespace, instances: int, detectron2: ModuleType | None) -> bool:
    """Times one case and prints its lines; returns whether all outputs agree."""
    data = make_panoptic_deeplab_outputs(args.height, args.width, 19, THING_IDS, instances, seed=0)
    inputs = (data["sem_seg"], data["center_heatmap"], data["offsets"], THING_IDS)

    def ours() -> tuple[torch.Tensor, torch.Tensor]:
        return get_panoptic_segmentation(*inputs, *SETTINGS)

    def fallback() -> tuple[torch.Tensor, torch.Tensor]:
        with mock.patch.object(extension, "has_ops", return_value=False):
            return get_panoptic_segmentation(*inputs, *SETTINGS)

    # The bytes the post-processing must move at least, as one read + one write of a buffer.
    moved = sum(t.numel() * t.element_size() for t in inputs[:3])
    moved += data["sem_seg"].numel() * 8
    source = torch.ones(moved // 2, dtype=torch.uint8)
    target = torch.zeros_like(source)

    contenders: dict[str, Callable[[], object]] = {"ours": ours}
    if detectron2 is not None:
        contenders["detectron2"] = lambda: detectron2.get_panoptic_segmentation(*inputs, *SETTINGS)

        def detectron2_sum_of_squares() -> tuple[torch.Tensor, torch.Tensor]:
            with mock.patch.object(torch, "norm", _norm_as_sum_of_squares):
                return detectron2.get_panoptic_segmentation(*inputs, *SETTINGS)

        contenders["detectron2_sum_of_squares"] = detectron2_sum_of_squares
    contenders["floor"] = lambda: target.copy_(source)

    expected = fallback()
    ok = True
    outputs = {name: fn() for name, fn in contenders.items() if name != "floor"}  # warm-up
    for name, output in outputs.items():
        if not _same(output, expected):
            print(f"  {name} differs from the PyTorch reference")
            ok = False
    times: dict[str, list[float]] = {name: [] for name in contenders}
    fallback_times = []
    for round_index in range(args.rounds):
        for name, fn in contenders.items():
            repeats = 1 if name.startswith("detectron2") else args.repeats
            times[name] += [_seconds(fn) for _ in range(repeats)]
        if round_index < args.fallback_rounds:
            fallback_times.append(_seconds(fallback))
    median = {name: statistics.median(values) for name, values in times.items()}

    num_centers = expected[1].shape[1]
    print(
        f"{args.height}x{args.width}, {instances} instances drawn, {num_centers} centers kept, "
        f"{len(expected[0].unique())} segments ({args.threads} threads, {args.rounds} rounds)"
    )
    kind = "fused kernel" if extension.has_ops() else "PyTorch fallback (no _C)"
    print(f"  ours ({kind}):            {median['ours'] * 1e3:10.2f} ms/image")
    if detectron2 is not None:
        print(
            f"  Detectron2:                      {median['detectron2'] * 1e3:10.2f} ms/image   "
            f"ours is {median['detectron2'] / median['ours']:6.1f}x faster"
        )
        d2_squares = median["detectron2_sum_of_squares"]
        print(
            f"  Detectron2, norm as sum of squares: {d2_squares * 1e3:7.2f} ms/image   "
            f"ours is {d2_squares / median['ours']:6.1f}x faster"
        )
    print(
        f"  floor ({moved / 2**20:.0f} MiB moved):            {median['floor'] * 1e3:10.2f} ms"
        f"        ours at {median['floor'] / median['ours']:.2f} of the floor's speed"
    )
    t_fallback = statistics.median(fallback_times)
    print(f"  PyTorch fallback:                {t_fallback * 1e3:10.2f} ms/image")

    if torch.cuda.is_available() and extension.has_cuda_kernels():
        cuda_inputs = tuple(t.cuda() for t in inputs[:3])

        def run_cuda() -> tuple[torch.Tensor, torch.Tensor]:
            return get_panoptic_segmentation(*cuda_inputs, THING_IDS, *SETTINGS)

        if not _same(run_cuda(), expected):
            print("  CUDA differs from the PyTorch reference")
            ok = False
        t_cuda = statistics.median(
            _seconds(run_cuda, sync=True) for _ in range(max(args.repeats, 20))
        )
        print(f"  CUDA ({torch.cuda.get_device_name()}): {t_cuda * 1e3:9.3f} ms/image")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=1024)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--instances", type=int, nargs="+", default=[8, 300])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5, help="runs of ours per round")
    parser.add_argument("--fallback-rounds", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--detectron2-root", default=None)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    detectron2 = _load_detectron2(args.detectron2_root) if args.detectron2_root else None
    ok = all([_bench_case(args, n, detectron2) for n in args.instances])
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
