"""Benchmark of Panoptic-DeepLab post-processing: PyTorch reference, C++ kernel, CUDA kernel.

Cityscapes-sized synthetic outputs (1024x2048, 19 classes of which 8 things, 200 candidate
centers, offsets pointing to their centers) go through ``get_panoptic_segmentation`` on
each backend; the script prints the median time per image and the speed-ups, and checks
that all backends give identical outputs.

Usage:
    python dev/bench/postprocess.py [--height 1024 --width 2048 --repeats 5 --threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from unittest import mock

import torch

from panoptic2.modeling.postprocessing import get_panoptic_segmentation
from panoptic2.ops import extension
from panoptic2.testing.synthetic import make_panoptic_deeplab_outputs

THING_IDS = list(range(11, 19))  # Cityscapes train ids 11..18 are the 8 thing classes


def _time(fn: Callable[[], object], repeats: int, sync: bool = False) -> float:
    """Median wall time of ``fn`` in seconds, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        if sync:
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if sync:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=1024)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--instances", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--reference-repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    data = make_panoptic_deeplab_outputs(
        args.height, args.width, 19, THING_IDS, args.instances, seed=0
    )

    def run(device: str) -> tuple[torch.Tensor, torch.Tensor]:
        return get_panoptic_segmentation(
            data["sem_seg"].to(device),
            data["center_heatmap"].to(device),
            data["offsets"].to(device),
            THING_IDS,
            label_divisor=1000,
            stuff_area=2048,
            void_label=255,
            threshold=0.1,
            nms_kernel=7,
            top_k=200,
        )

    with mock.patch.object(extension, "has_ops", return_value=False):
        ref_pan, ref_centers = run("cpu")
        t_ref = _time(lambda: run("cpu"), args.reference_repeats)
    num_things = int(torch.isin(data["sem_seg"], torch.tensor(THING_IDS)).sum())
    print(
        f"{args.height}x{args.width}, 19 classes (8 things), {args.instances} instances drawn, "
        f"{ref_centers.shape[1]} centers kept, {num_things} thing pixels, "
        f"{len(ref_pan.unique())} segments"
    )
    print(f"PyTorch reference (CPU, {args.threads} threads): {t_ref * 1e3:9.1f} ms")
    if not extension.has_ops():
        print("panoptic2._C is not built: no kernel timings")
        return
    pan, centers = run("cpu")
    assert torch.equal(pan, ref_pan) and torch.equal(centers, ref_centers), "C++ != reference"
    t_cpp = _time(lambda: run("cpu"), args.repeats)
    print(
        f"C++ kernel ({args.threads} threads):          {t_cpp * 1e3:9.1f} ms   "
        f"{t_ref / t_cpp:6.1f}x the reference"
    )
    if torch.cuda.is_available() and extension.has_cuda_kernels():
        pan, centers = run("cuda")
        assert torch.equal(pan.cpu(), ref_pan), "CUDA != reference"
        assert torch.equal(centers.cpu(), ref_centers), "CUDA centers != reference"
        inputs = {k: data[k].cuda() for k in ("sem_seg", "center_heatmap", "offsets")}

        def run_cuda() -> None:
            get_panoptic_segmentation(
                inputs["sem_seg"], inputs["center_heatmap"], inputs["offsets"], THING_IDS,
                1000, 2048, 255, 0.1, 7, 200,
            )  # fmt: skip

        t_cuda = _time(run_cuda, max(args.repeats, 20), sync=True)
        print(
            f"CUDA kernel ({torch.cuda.get_device_name()}): {t_cuda * 1e3:9.3f} ms   "
            f"{t_ref / t_cuda:6.1f}x the reference, {t_cpp / t_cuda:6.1f}x C++"
        )
    else:
        print("CUDA kernel: no GPU (or _C built without CUDA kernels)")


if __name__ == "__main__":
    main()
