"""Tests of panoptic2/modeling/postprocessing/_ops.py: the _C kernels against the reference.

CPU kernels always run (when _C is built); CUDA cases are marked ``cuda`` and skipped
without a GPU.
"""

import pytest
import torch

from panoptic2 import extension
from panoptic2.modeling.postprocessing import _fake, find_instance_center
from panoptic2.modeling.postprocessing._ops import uses_kernels
from panoptic2.modeling.postprocessing.reference import (
    group_pixels_reference,
    merge_semantic_and_instance_reference,
)
from panoptic2.modeling.postprocessing.synthetic import make_panoptic_deeplab_outputs

assert _fake  # imported for its fake-kernel registrations (opcheck, meta tensors)

needs_ops = pytest.mark.skipif(
    not extension.has_ops(), reason="panoptic2._C is not built (python setup.py build_ext)"
)
needs_cuda = pytest.mark.skipif(
    not (torch.cuda.is_available() and extension.has_cuda_kernels()),
    reason="needs a CUDA GPU and _C built with its CUDA kernels",
)

# (height, width, num_classes, thing_ids, num_instances, nms_kernel, top_k)
CASES = {
    "odd": (33, 47, 19, list(range(11, 19)), 12, 7, 200),
    "tiny_topk_larger_than_image": (3, 5, 5, [1, 2], 2, 3, 200),
    "no_centers": (16, 9, 6, [3, 4], 0, 3, None),
    "all_stuff": (21, 30, 7, [], 5, 3, 200),
    "single_pixel_thing": (1, 1, 3, [2], 1, 1, None),
    "wide": (40, 129, 19, list(range(11, 19)), 30, 5, 50),
    "many_centers_and_classes": (96, 130, 300, list(range(0, 300, 2)), 500, 1, None),
}


def _case(name: str, seed: int = 0) -> dict:
    height, width, num_classes, things, num_instances, nms_kernel, top_k = CASES[name]
    sigma = 1.0 if name == "many_centers_and_classes" else 4.0
    data = make_panoptic_deeplab_outputs(
        height, width, num_classes, things, num_instances, seed=seed, sigma=sigma
    )
    if name == "single_pixel_thing":
        data["sem_seg"].fill_(2)
        data["center_heatmap"].fill_(0.9)
    sem = data["sem_seg"][0]
    centers = find_instance_center(data["center_heatmap"], 0.1, nms_kernel, top_k)
    is_thing_class = torch.zeros(num_classes, dtype=torch.bool)
    is_thing_class[things] = True
    return {
        "sem": sem,
        "offsets": data["offsets"],
        "centers": centers,
        "thing_mask": is_thing_class[sem],
        "things": things,
        "is_thing_class": is_thing_class,
    }


def _compare(case: dict, device: str) -> None:
    sem, offsets, centers, mask = case["sem"], case["offsets"], case["centers"], case["thing_mask"]
    ins_ref = group_pixels_reference(centers, offsets, mask)
    ins = torch.ops.panoptic2.group_pixels(centers.to(device), offsets.to(device), mask.to(device))
    assert torch.equal(ins.cpu(), ins_ref)
    for stuff_area in (0, 37):
        pan_ref = merge_semantic_and_instance_reference(
            sem, ins_ref, mask, case["things"], 1000, stuff_area, 255
        )
        pan = torch.ops.panoptic2.merge_semantic_and_instance(
            sem.to(device),
            ins_ref.to(device),
            mask.to(device),
            case["is_thing_class"].to(device),
            centers.shape[0],
            1000,
            stuff_area,
            255,
        )
        assert torch.equal(pan.cpu(), pan_ref)


@needs_ops
@pytest.mark.parametrize("name", sorted(CASES))
def test_cpu_kernels_match_reference(name):
    case = _case(name)
    if name == "many_centers_and_classes":  # no caps: more than 256 of each
        assert case["centers"].shape[0] > 256
        assert case["is_thing_class"].numel() > 256 and int(case["sem"].max()) > 256
    if name == "no_centers":
        assert case["centers"].shape[0] == 0
    _compare(case, "cpu")


@needs_ops
def test_cpu_kernels_match_reference_with_several_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for seed in range(2):
            _compare(_case("wide", seed=seed), "cpu")
    finally:
        torch.set_num_threads(previous)


@needs_ops
def test_group_pixels_kernel_equidistant_centers_go_to_first():
    # Centers in an order that is not sorted by y, so the kernel's y-sorted scan must still
    # resolve ties by the original index: pixel (2, 2) is 2 away from all four centers.
    centers = torch.tensor([[4, 2], [2, 0], [0, 2], [2, 4]])
    offsets = torch.zeros(2, 5, 5)
    mask = torch.ones(5, 5, dtype=torch.bool)
    ins = torch.ops.panoptic2.group_pixels(centers, offsets, mask)
    assert torch.equal(ins, group_pixels_reference(centers, offsets, mask))
    assert ins[2, 2] == 1


@needs_ops
def test_kernels_reject_bad_inputs():
    sem = torch.tensor([[0, 7]])
    ins = torch.zeros_like(sem)
    mask = torch.zeros_like(sem, dtype=torch.bool)
    table = torch.zeros(3, dtype=torch.bool)
    with pytest.raises(RuntimeError, match=r"sem_seg value 7 at \(0, 1\) is outside \[0, 3\)"):
        torch.ops.panoptic2.merge_semantic_and_instance(sem, ins, mask, table, 0, 10, 0, -1)
    with pytest.raises(RuntimeError, match="ins_seg value 2"):
        torch.ops.panoptic2.merge_semantic_and_instance(
            torch.zeros_like(sem), ins + 2, mask, table, 1, 10, 0, -1
        )
    with pytest.raises(RuntimeError, match="offsets must be float32"):
        torch.ops.panoptic2.group_pixels(
            torch.zeros(1, 2, dtype=torch.long), torch.zeros(2, 1, 2, dtype=torch.float64), mask
        )


@needs_ops
def test_opcheck_cpu():
    case = _case("odd")
    centers, offsets, mask = case["centers"], case["offsets"], case["thing_mask"]
    torch.library.opcheck(torch.ops.panoptic2.group_pixels.default, (centers, offsets, mask))
    ins = torch.ops.panoptic2.group_pixels(centers, offsets, mask)
    torch.library.opcheck(
        torch.ops.panoptic2.merge_semantic_and_instance.default,
        (case["sem"], ins, mask, case["is_thing_class"], centers.shape[0], 1000, 10, 255),
    )


@needs_ops
def test_fake_kernels_give_output_shapes():
    assert uses_kernels(torch.device("cpu"))
    offsets = torch.empty(2, 6, 7, device="meta")
    mask = torch.empty(6, 7, dtype=torch.bool, device="meta")
    centers = torch.empty(3, 2, dtype=torch.long, device="meta")
    ins = torch.ops.panoptic2.group_pixels(centers, offsets, mask)
    assert ins.shape == (6, 7) and ins.dtype == torch.int64 and ins.device.type == "meta"
    sem = torch.empty(6, 7, dtype=torch.long, device="meta")
    table = torch.empty(4, dtype=torch.bool, device="meta")
    pan = torch.ops.panoptic2.merge_semantic_and_instance(sem, ins, mask, table, 3, 10, 0, -1)
    assert pan.shape == (6, 7) and pan.dtype == torch.int64


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("name", sorted(CASES))
def test_cuda_kernels_match_reference(name):
    _compare(_case(name), "cuda")


@pytest.mark.cuda
@needs_cuda
def test_opcheck_cuda():
    case = _case("odd")
    centers, offsets, mask = (case[k].cuda() for k in ("centers", "offsets", "thing_mask"))
    torch.library.opcheck(torch.ops.panoptic2.group_pixels.default, (centers, offsets, mask))
    ins = torch.ops.panoptic2.group_pixels(centers, offsets, mask)
    args = (case["sem"].cuda(), ins, mask, case["is_thing_class"].cuda(), centers.shape[0])
    torch.library.opcheck(
        torch.ops.panoptic2.merge_semantic_and_instance.default, (*args, 1000, 10, 255)
    )
