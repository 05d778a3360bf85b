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
# The fused CPU kernel (centers + grouping + merge) against the reference steps.
# --------------------------------------------------------------------------------------------


def _fused_and_reference(
    sem: torch.Tensor,
    heat: torch.Tensor,
    offsets: torch.Tensor,
    thing_mask: torch.Tensor | None,
    is_thing_class: torch.Tensor,
    nms_kernel: int = 3,
    top_k: int | None = None,
    stuff_area: int = 3,
    threshold: float = 0.1,
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """(panoptic, centers) of the fused op and of the reference steps, label_divisor 1000."""
    fused = ops.panoptic_deeplab_postprocess(
        sem, heat, offsets, thing_mask, is_thing_class, threshold, nms_kernel, top_k, 1000,
        stuff_area, 255,
    )  # fmt: skip
    centers = find_instance_center(heat, threshold, nms_kernel, top_k)
    mask = is_thing_class[sem] if thing_mask is None else thing_mask
    ins = group_pixels_reference(centers, offsets, mask)
    things = torch.nonzero(is_thing_class).flatten().tolist()
    pan = merge_semantic_and_instance_reference(sem, ins, mask, things, 1000, stuff_area, 255)
    return fused, (pan, centers)


def _assert_fused_matches(*args, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    (pan, centers), (ref_pan, ref_centers) = _fused_and_reference(*args, **kwargs)
    assert torch.equal(centers, ref_centers)
    assert torch.equal(pan, ref_pan)
    return pan, centers


def _synthetic(height, width, num_instances, seed=0, sigma=3.0, num_classes=19):
    things = list(range(11, 19)) if num_classes == 19 else list(range(0, num_classes, 2))
    data = make_panoptic_deeplab_outputs(
        height, width, num_classes, things, num_instances, seed=seed, sigma=sigma
    )
    table = torch.zeros(num_classes, dtype=torch.bool)
    table[things] = True
    return data["sem_seg"][0], data["center_heatmap"][0], data["offsets"], table


@needs_ops
@pytest.mark.parametrize("top_k", [None, 1, 3, 200])
@pytest.mark.parametrize("given_mask", [False, True])
@pytest.mark.parametrize("size", [(33, 47), (1, 1), (1, 40), (37, 1), (64, 97)])
def test_fused_kernel_matches_reference_steps(size, given_mask, top_k):
    sem, heat, offsets, table = _synthetic(*size, num_instances=12, seed=size[0] + size[1])
    mask = None
    if given_mask:
        gen = torch.Generator().manual_seed(1)
        mask = torch.rand(size, generator=gen) < 0.5
    _assert_fused_matches(sem, heat, offsets, mask, table, nms_kernel=5, top_k=top_k)


@needs_ops
@pytest.mark.parametrize("num_peaks", [0, 1, 200])
def test_fused_kernel_zero_one_and_many_centers(num_peaks):
    # Isolated peaks at distinct random pixels (nms_kernel 1): exactly num_peaks centers.
    gen = torch.Generator().manual_seed(num_peaks)
    height, width = 45, 61
    sem = torch.randint(0, 6, (height, width), generator=gen)
    table = torch.tensor([False, False, True, True, False, True])
    heat = torch.zeros(height, width)
    heat.view(-1)[torch.randperm(height * width, generator=gen)[:num_peaks]] = 0.5
    offsets = torch.randn(2, height, width, generator=gen) * 4
    _, centers = _assert_fused_matches(sem, heat, offsets, None, table, nms_kernel=1)
    assert centers.shape == (num_peaks, 2)


@needs_ops
@pytest.mark.parametrize("spacing", [1, 2, 3, 8])
def test_fused_kernel_ties_at_equal_distance_go_to_the_first_center(spacing):
    # Centers on a lattice (index order is row-major, not the order of any scan); every vote
    # lands on a midpoint between lattice rows, and in every other column also between
    # lattice columns: each has 2 or 4 nearest centers at exactly equal float32 distances.
    # 1 x 3, 5 x 7 and 15 x 15 lattices run both the exhaustive and the grid search.
    for rows, cols in ((1, 3), (5, 7), (15, 15)):
        height, width = (rows - 1) * spacing + 1, (cols - 1) * spacing + 1
        heat = torch.zeros(height, width)
        heat[::spacing, ::spacing] = 0.9
        sem = torch.ones(height, width, dtype=torch.long)
        table = torch.tensor([False, True])
        ys, xs = torch.arange(height), torch.arange(width)
        vote_y = (ys // spacing).clamp(max=max(rows - 2, 0)) * spacing
        vote_y = vote_y + (0.5 * spacing if rows > 1 else 0.0)
        vote_x = (xs // spacing).clamp(max=cols - 2) * spacing
        vote_x = torch.where((xs // spacing) % 2 == 0, vote_x + 0.5 * spacing, vote_x)
        offsets = torch.stack(
            [
                (vote_y - ys)[:, None].expand(height, width),
                (vote_x - xs)[None, :].expand(height, width),
            ]
        ).float()
        pan, centers = _assert_fused_matches(
            sem, heat, offsets, None, table, nms_kernel=1, stuff_area=0
        )
        assert centers.shape[0] == rows * cols
        # The case has ties: votes with several centers at the smallest distance.
        votes = torch.stack([ys[:, None] + offsets[0], xs[None, :] + offsets[1]], -1)
        distance = ((votes.reshape(-1, 1, 2) - centers.float()) ** 2).sum(-1)
        ties = (distance == distance.min(1, keepdim=True).values).sum(1)
        assert (ties >= 2).float().mean() > 0.4


@needs_ops
def test_fused_kernel_centers_at_borders_and_offsets_outside_the_image():
    gen = torch.Generator().manual_seed(3)
    height, width = 23, 31
    heat = torch.zeros(height, width)
    for y, x in ((0, 0), (0, width - 1), (height - 1, 0), (height - 1, width - 1), (0, 15)):
        heat[y, x] = 0.8
    for count in (5, 40):  # the exhaustive search (<= 4 kept after top_k) and the grid
        extra = torch.randperm(height * width, generator=gen)[:count]
        heat.view(-1)[extra] = torch.rand(count, generator=gen) * 0.5 + 0.2
        sem = torch.randint(0, 4, (height, width), generator=gen)
        table = torch.tensor([True, False, True, False])
        offsets = torch.randn(2, height, width, generator=gen) * 50  # far outside
        offsets[0, 0, :5] = torch.tensor([1e30, -1e30, float("inf"), float("-inf"), float("nan")])
        offsets[1, 1, :3] = torch.tensor([3e38, float("nan"), float("inf")])
        for top_k in (None, 4):
            _assert_fused_matches(sem, heat, offsets, None, table, nms_kernel=3, top_k=top_k)


@needs_ops
def test_fused_kernel_heatmap_nan_inf_and_plateaus():
    heat = torch.zeros(9, 11)
    heat[1, 1] = heat[1, 2] = 0.7  # a plateau: both are centers
    heat[4, 4] = float("inf")
    heat[7, 8] = float("nan")  # suppresses its neighbours
    heat[7, 9] = 0.9
    heat[4, 9] = 0.1  # at the threshold: not above it
    sem = torch.full((9, 11), 2, dtype=torch.long)
    table = torch.tensor([False, False, True])
    offsets = torch.zeros(2, 9, 11)
    for kernel in (1, 3, 5, 31):
        _assert_fused_matches(sem, heat, offsets, None, table, nms_kernel=kernel)


@needs_ops
@pytest.mark.parametrize("nms_kernel", [1, 3, 7, 15])
def test_fused_kernel_dense_and_sparse_heatmap_rows(nms_kernel):
    # Rows with few candidates are checked by reading their windows, rows with many against
    # cached row maxima (more than 4 * width / kernel^2 candidates); this map has both kinds,
    # with NaN, inf, plateaus and values at the threshold in each.
    gen = torch.Generator().manual_seed(nms_kernel)
    height, width = 48, 300
    heat = torch.rand(height, width, generator=gen)  # dense: ~90 % above the threshold
    sparse_rows = torch.arange(height) % 3 != 0
    heat[sparse_rows] = 0.0
    sparse_points = torch.randint(0, width, (int(sparse_rows.sum()), 3), generator=gen)
    heat[sparse_rows.nonzero()[:, 0, None], sparse_points] = torch.rand(
        int(sparse_rows.sum()), 3, generator=gen
    )
    heat[0, 10:14] = 0.95  # a plateau in a dense row
    heat[4, 50:53] = 0.95  # and in a sparse one
    heat[3, 100] = float("nan")
    heat[10, 7] = float("nan")
    heat[6, 200] = float("inf")
    heat[13, 201] = float("inf")
    heat[9, 30] = 0.1
    sem = torch.randint(0, 4, (height, width), generator=gen)
    table = torch.tensor([True, False, True, False])
    offsets = torch.randn(2, height, width, generator=gen) * 3
    _, centers = _assert_fused_matches(sem, heat, offsets, None, table, nms_kernel=nms_kernel)
    assert centers.shape[0] > 0


@needs_ops
def test_fused_kernel_many_centers_and_classes_with_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        sem, heat, offsets, table = _synthetic(96, 130, 500, sigma=1.0, num_classes=300)
        _, centers = _assert_fused_matches(sem, heat, offsets, None, table, nms_kernel=1)
        assert centers.shape[0] > 256 and int(sem.max()) > 256
        sem, heat, offsets, table = _synthetic(200, 300, 60, seed=1, sigma=2.0)
        mask = torch.rand(200, 300, generator=torch.Generator().manual_seed(0)) < 0.5
        _assert_fused_matches(sem, heat, offsets, mask, table, nms_kernel=3, stuff_area=50)
    finally:
        torch.set_num_threads(previous)


@needs_ops
def test_fused_kernel_rejects_bad_inputs():
    table = torch.zeros(3, dtype=torch.bool)
    heat = torch.zeros(1, 2)
    offsets = torch.zeros(2, 1, 2)
    with pytest.raises(RuntimeError, match=r"sem_seg value 7 at \(0, 1\) is outside \[0, 3\)"):
        ops.panoptic_deeplab_postprocess(
            torch.tensor([[0, 7]]), heat, offsets, None, table, 0.1, 3, None, 10, 0, -1
        )
    with pytest.raises(RuntimeError, match="nms_kernel must be a positive odd"):
        ops.panoptic_deeplab_postprocess(
            torch.tensor([[0, 1]]), heat, offsets, None, table, 0.1, 4, None, 10, 0, -1
        )


@needs_ops
def test_opcheck_fused_kernel():
    sem, heat, offsets, table = _synthetic(33, 47, 12)
    op = torch.ops.panoptic2.panoptic_deeplab_postprocess.default
    for mask, top_k in ((None, 200), (table[sem], None)):
        torch.library.opcheck(op, (sem, heat, offsets, mask, table, 0.1, 5, top_k, 1000, 10, 255))


def test_fused_kernel_needs_cpu_and_the_extension(monkeypatch):
    monkeypatch.setattr(extension, "has_ops", lambda: True)
    assert ops.uses_fused_kernel(torch.device("cpu"))
    assert ops.uses_fused_kernel(torch.device("meta"))
    assert not ops.uses_fused_kernel(torch.device("cuda"))
    monkeypatch.setattr(extension, "has_ops", lambda: False)
    assert not ops.uses_fused_kernel(torch.device("cpu"))
    with pytest.raises(RuntimeError, match="no fused kernel"):
        ops.panoptic_deeplab_postprocess(
            torch.zeros(1, 1, dtype=torch.long), torch.zeros(1, 1), torch.zeros(2, 1, 1), None,
            torch.zeros(1, dtype=torch.bool), 0.1, 3, None, 10, 0, -1,
        )  # fmt: skip


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
