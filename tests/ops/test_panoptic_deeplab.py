"""Tests of panoptic2/ops/panoptic_deeplab.py and panoptic2/ops/_reference.py.

Hand-computed cases pin the PyTorch reference; the _C kernels are compared with it (CPU
kernels always run when _C is built; CUDA cases are marked ``cuda`` and skipped without a
GPU), and the wrappers are checked to dispatch to the kernels or to the reference.
"""

import pytest
import torch

from panoptic2 import ops
from panoptic2.modeling.postprocessing import find_instance_center
from panoptic2.ops import extension, uses_kernels
from panoptic2.ops._reference import (
    group_pixels_reference,
    merge_semantic_and_instance_reference,
)
from panoptic2.testing.synthetic import make_panoptic_deeplab_outputs

needs_ops = pytest.mark.skipif(
    not extension.has_ops(), reason="panoptic2._C is not built (python setup.py build_ext)"
)
needs_cuda = pytest.mark.skipif(
    not (torch.cuda.is_available() and extension.has_cuda_kernels()),
    reason="needs a CUDA GPU and _C built with its CUDA kernels",
)

# --------------------------------------------------------------------------------------------
# The PyTorch reference, by hand.
# --------------------------------------------------------------------------------------------


def test_group_pixels_nearest_center_and_tie_to_first():
    centers = torch.tensor([[0, 0], [0, 4]])
    offsets = torch.zeros(2, 1, 5)
    offsets[1, 0, 4] = -3.0  # (0, 4) points at x = 1: nearer to center 0
    mask = torch.tensor([[True, True, True, False, True]])
    ins = group_pixels_reference(centers, offsets, mask)
    # x = 2 is equidistant (2 and 2): the first center wins; x = 3 is not grouped.
    assert ins.tolist() == [[1, 1, 1, 0, 1]]


def test_group_pixels_without_centers_is_zero():
    ins = group_pixels_reference(
        torch.zeros(0, 2, dtype=torch.long),
        torch.zeros(2, 3, 4),
        torch.ones(3, 4, dtype=torch.bool),
    )
    assert ins.shape == (3, 4) and not ins.any()


def test_group_pixels_resolves_one_ulp_offset_difference():
    centers = torch.tensor([[1, 0], [2, 0]])
    offsets = torch.zeros(2, 1, 1)
    offsets[0, 0, 0] = 1.5 + 2**-23  # one float32 ulp past the midpoint of y = 1 and y = 2
    ins = group_pixels_reference(centers, offsets, torch.ones(1, 1, dtype=torch.bool))
    assert ins.item() == 2


def test_merge_majority_tie_goes_to_smaller_class():
    sem = torch.tensor([[5, 5, 3, 3]])
    ins = torch.tensor([[1, 1, 1, 1]])
    pan = merge_semantic_and_instance_reference(
        sem, ins, torch.ones_like(sem, dtype=torch.bool), [3, 5], 100, 0, -1
    )
    assert pan.tolist() == [[301, 301, 301, 301]]


def test_merge_numbers_each_class_in_center_order_and_skips_empty_instances():
    sem = torch.tensor([[7, 7, 8, 9, 7, 7]])
    ins = torch.tensor([[1, 1, 2, 3, 4, 4]])
    # Instance 3 lies on a pixel outside the thing mask: it has no thing pixels.
    mask = torch.tensor([[True, True, True, False, True, True]])
    pan = merge_semantic_and_instance_reference(sem, ins, mask, [7, 8], 10, 1, 0)
    # Class 7: instances 1 and 4 -> 71, 72; class 8: instance 2 -> 81; pixel 3 is stuff 9.
    assert pan.tolist() == [[71, 71, 81, 90, 72, 72]]


def test_merge_stuff_area_limit_and_void():
    sem = torch.tensor([[0, 0, 0, 1, 1, 2, 2]])
    ins = torch.zeros_like(sem)
    mask = sem == 2  # thing class 2 but no instance: void
    pan = merge_semantic_and_instance_reference(sem, ins, mask, [2], 1000, 3, 255)
    # Class 0 has exactly 3 pixels (kept, >=), class 1 only 2 (void).
    assert pan.tolist() == [[0, 0, 0, 255, 255, 255, 255]]


def test_merge_stuff_area_counts_only_pixels_outside_instances():
    sem = torch.tensor([[4, 4, 4, 4]])
    ins = torch.tensor([[0, 0, 1, 1]])
    mask = torch.ones_like(sem, dtype=torch.bool)
    # Class 4 (stuff) wins the vote of instance 1; only 2 pixels remain as stuff (< 3).
    pan = merge_semantic_and_instance_reference(sem, ins, mask, [], 100, 3, -1)
    assert pan.tolist() == [[-1, -1, 401, 401]]


# --------------------------------------------------------------------------------------------
# The kernels against the reference.
# --------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# The wrappers: kernel or reference, decided at each call.
# --------------------------------------------------------------------------------------------


def _wrapper_outputs(case: dict) -> tuple[torch.Tensor, torch.Tensor]:
    ins = ops.group_pixels(case["centers"], case["offsets"], case["thing_mask"])
    pan = ops.merge_semantic_and_instance(
        case["sem"],
        ins,
        case["thing_mask"],
        case["is_thing_class"],
        case["centers"].shape[0],
        1000,
        37,
        255,
    )
    return ins, pan


@pytest.mark.parametrize("name", ["odd", "no_centers", "all_stuff"])
def test_wrappers_fall_back_to_the_reference(name, monkeypatch):
    monkeypatch.setattr(extension, "has_ops", lambda: False)
    assert not uses_kernels(torch.device("cpu"))

    def no_kernel(*args):
        raise AssertionError("a kernel ran although has_ops() is False")

    monkeypatch.setattr(torch.ops.panoptic2, "group_pixels", no_kernel, raising=False)
    monkeypatch.setattr(
        torch.ops.panoptic2, "merge_semantic_and_instance", no_kernel, raising=False
    )
    case = _case(name)
    ins, pan = _wrapper_outputs(case)
    ins_ref = group_pixels_reference(case["centers"], case["offsets"], case["thing_mask"])
    pan_ref = merge_semantic_and_instance_reference(
        case["sem"], ins_ref, case["thing_mask"], case["things"], 1000, 37, 255
    )
    assert torch.equal(ins, ins_ref) and torch.equal(pan, pan_ref)


@needs_ops
def test_wrappers_use_the_kernels_and_agree_with_the_fallback(monkeypatch):
    case = _case("wide")
    calls: list[str] = []
    real = torch.ops.panoptic2

    class _Counting:
        def __getattr__(self, name: str) -> object:
            calls.append(name)
            return getattr(real, name)

    monkeypatch.setattr(torch.ops, "panoptic2", _Counting())
    kernel_outputs = _wrapper_outputs(case)
    assert {"group_pixels", "merge_semantic_and_instance"} <= set(calls)
    monkeypatch.setattr(extension, "has_ops", lambda: False)
    fallback_outputs = _wrapper_outputs(case)
    for kernel, fallback in zip(kernel_outputs, fallback_outputs):
        assert torch.equal(kernel, fallback)


def test_uses_kernels_by_device(monkeypatch):
    monkeypatch.setattr(extension, "has_ops", lambda: True)
    monkeypatch.setattr(extension, "has_cuda_kernels", lambda: False)
    assert uses_kernels(torch.device("cpu")) and uses_kernels(torch.device("meta"))
    assert not uses_kernels(torch.device("cuda"))
    assert not uses_kernels(torch.device("mps"))
    monkeypatch.setattr(extension, "has_cuda_kernels", lambda: True)
    assert uses_kernels(torch.device("cuda"))
    monkeypatch.setattr(extension, "has_ops", lambda: False)
    assert not any(uses_kernels(torch.device(d)) for d in ("cpu", "meta", "cuda"))
