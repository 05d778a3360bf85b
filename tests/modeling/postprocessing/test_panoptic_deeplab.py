"""Tests of panoptic2/modeling/postprocessing/panoptic_deeplab.py (the public wrappers)."""

import pytest
import torch

from panoptic2.modeling.postprocessing import (
    find_instance_center,
    get_panoptic_segmentation,
    get_panoptic_segmentation_batched,
    group_pixels,
    merge_semantic_and_instance,
)
from panoptic2.ops import extension
from panoptic2.testing.synthetic import make_panoptic_deeplab_outputs

THINGS = list(range(11, 19))

_TORCH_2_9 = torch.__version__.startswith("2.9.")


@pytest.fixture(params=["kernels", "fallback"])
def backend(request, monkeypatch):
    """Runs a test on the compiled kernels (when built) and on the PyTorch fallback."""
    if request.param == "fallback":
        monkeypatch.setattr(extension, "has_ops", lambda: False)
    elif not extension.has_ops():
        pytest.skip("panoptic2._C is not built")
    return request.param


def test_plateau_gives_several_centers_in_row_major_order():
    heat = torch.zeros(1, 4, 6)
    heat[0, 2, 1] = heat[0, 2, 2] = 0.5  # an equal plateau: both are local maxima
    heat[0, 0, 5] = 0.3
    heat[0, 1, 4] = 0.05  # below the threshold
    centers = find_instance_center(heat, threshold=0.1, nms_kernel=3)
    assert centers.tolist() == [[0, 5], [2, 1], [2, 2]]


def test_top_k_keeps_only_scores_strictly_above_the_kth():
    heat = torch.zeros(1, 1, 9)
    heat[0, 0, [0, 2, 4, 6, 8]] = torch.tensor([0.9, 0.8, 0.8, 0.7, 0.6])
    cases = {1: [], 2: [0], 3: [0], 4: [0, 2, 4], 5: [0, 2, 4, 6], 6: [0, 2, 4, 6, 8]}
    for top_k, xs in cases.items():
        centers = find_instance_center(heat, threshold=0.1, nms_kernel=1, top_k=top_k)
        assert centers[:, 1].tolist() == xs, top_k


def test_top_k_larger_than_the_image_keeps_all_centers():
    heat = torch.tensor([[[0.0, 0.5]]])
    assert find_instance_center(heat, 0.1, 1, top_k=200).tolist() == [[0, 1]]


def test_group_pixels_detectron2_shape(backend):
    centers = torch.tensor([[0, 0], [0, 4]])
    ins = group_pixels(centers, torch.zeros(2, 1, 5))
    assert ins.tolist() == [[[1, 1, 1, 2, 2]]]  # x = 2 is a tie: the first center


def test_merge_rules_by_hand(backend):
    # Instance 1: classes 11, 11, 12, 12 -> tie -> 11; instance 2 has no thing pixel;
    # instance 3: class 12; instance 4: class 11 -> second instance of 11.
    sem = torch.tensor([[11, 11, 12, 12, 12, 11, 0, 0, 1]])
    ins = torch.tensor([[1, 1, 1, 1, 3, 4, 0, 2, 0]])
    thing = torch.tensor([[1, 1, 1, 1, 1, 1, 0, 0, 0]])
    pan = merge_semantic_and_instance(sem, ins, thing, 1000, THINGS, 2, 255)
    assert pan.tolist() == [[11001, 11001, 11001, 11001, 12001, 11002, 0, 0, 255]]


def test_no_centers_makes_thing_pixels_void(backend):
    sem = torch.tensor([[[0, 0, 11, 11]]])
    pan, centers = get_panoptic_segmentation(
        sem, torch.zeros(1, 1, 4), torch.zeros(2, 1, 4), THINGS, 1000, 1, 255
    )
    assert centers.shape == (1, 0, 2)
    assert pan.tolist() == [[[0, 0, 255, 255]]]


def test_foreground_mask_defines_thing_pixels(backend):
    sem = torch.tensor([[[3, 3, 3, 3]]])  # a stuff class everywhere
    heat = torch.tensor([[[0.0, 0.0, 0.9, 0.0]]])
    foreground = torch.tensor([[[0, 0, 1, 1]]])
    pan, centers = get_panoptic_segmentation(
        sem,
        heat,
        torch.zeros(2, 1, 4),
        THINGS,
        100,
        1,
        -1,
        nms_kernel=3,
        foreground_mask=foreground,
    )
    assert centers.tolist() == [[[0, 2]]]
    assert pan.tolist() == [[[300, 300, 301, 301]]]


def test_single_pixel_thing(backend):
    pan, centers = get_panoptic_segmentation(
        torch.tensor([[[12]]]), torch.tensor([[[0.7]]]), torch.zeros(2, 1, 1), THINGS, 1000, 1, 0
    )
    assert centers.tolist() == [[[0, 0]]] and pan.tolist() == [[[12001]]]


@pytest.mark.skipif(not extension.has_ops(), reason="panoptic2._C is not built")
@pytest.mark.parametrize("size", [(31, 45), (64, 97)])
def test_kernels_and_fallback_agree(size, monkeypatch):
    data = make_panoptic_deeplab_outputs(*size, 19, THINGS, 25, seed=sum(size), sigma=3.0)
    args = (data["sem_seg"], data["center_heatmap"], data["offsets"], THINGS, 1000, 40, 255)
    kernel_pan, kernel_centers = get_panoptic_segmentation(*args, nms_kernel=5, top_k=20)
    monkeypatch.setattr(extension, "has_ops", lambda: False)
    ref_pan, ref_centers = get_panoptic_segmentation(*args, nms_kernel=5, top_k=20)
    assert kernel_centers.shape[1] > 3  # the case is not trivial
    assert len(kernel_pan.unique()) > 5
    assert torch.equal(kernel_centers, ref_centers) and torch.equal(kernel_pan, ref_pan)


def test_batched_equals_per_image(backend):
    images = [make_panoptic_deeplab_outputs(20, 27, 19, THINGS, 6, seed=s) for s in range(3)]
    stack = {
        k: torch.stack([d[k] for d in images]) for k in ("sem_seg", "center_heatmap", "offsets")
    }
    pan, centers = get_panoptic_segmentation_batched(
        stack["sem_seg"][:, 0], stack["center_heatmap"], stack["offsets"], THINGS, 1000, 5, 255
    )
    assert pan.shape == (3, 20, 27) and len(centers) == 3
    for i, d in enumerate(images):
        single, single_centers = get_panoptic_segmentation(
            d["sem_seg"], d["center_heatmap"], d["offsets"], THINGS, 1000, 5, 255
        )
        assert torch.equal(pan[i], single[0]) and torch.equal(centers[i], single_centers[0])


def test_clear_errors_on_bad_input():
    sem = torch.zeros(1, 4, 5, dtype=torch.long)
    heat = torch.zeros(1, 4, 5)
    offsets = torch.zeros(2, 4, 5)
    with pytest.raises(ValueError, match="offsets must have shape"):
        get_panoptic_segmentation(sem, heat, offsets[:, :3], THINGS, 1000, 1, 255)
    with pytest.raises(ValueError, match="negative class id"):
        get_panoptic_segmentation(sem - 1, heat, offsets, THINGS, 1000, 1, 255)
    with pytest.raises(TypeError, match="integer class ids"):
        get_panoptic_segmentation(sem.float(), heat, offsets, THINGS, 1000, 1, 255)
    with pytest.raises(ValueError, match="nms_kernel must be a positive odd"):
        get_panoptic_segmentation(sem, heat, offsets, THINGS, 1000, 1, 255, nms_kernel=4)
    with pytest.raises(ValueError, match="sem_seg must be"):
        get_panoptic_segmentation(sem[0], heat, offsets, THINGS, 1000, 1, 255)
    with pytest.raises(ValueError, match="negative instance id"):
        merge_semantic_and_instance(sem, sem - 1, sem, 1000, THINGS, 1, 255)


@pytest.mark.parametrize("kernel", [1, 3, 5, 7, 13])
def test_center_nms_pooling_equals_max_pool2d(kernel):
    from panoptic2.modeling.postprocessing.panoptic_deeplab import _max_pool_same

    x = torch.round(torch.rand(23, 41, generator=torch.Generator().manual_seed(kernel)) * 8) / 8
    expected = torch.nn.functional.max_pool2d(x[None], kernel, 1, kernel // 2)[0]
    assert torch.equal(_max_pool_same(x, kernel), expected)


@pytest.mark.skipif(not extension.has_ops(), reason="panoptic2._C is not built")
def test_panoptic_from_maps_compiles_as_one_graph_through_the_fake_kernels():
    """fullgraph=True (a graph break raises), sizes and the number of centers symbolic: one
    graph serves three sizes and top-k cut or not, and equals get_panoptic_segmentation."""
    from torch._dynamo.testing import CompileCounterWithBackend

    from panoptic2.modeling.postprocessing import panoptic_from_maps

    counter = CompileCounterWithBackend("aot_eager")
    compiled = torch.compile(panoptic_from_maps, fullgraph=True, dynamic=True, backend=counter)
    table = torch.zeros(19, dtype=torch.bool)
    table[THINGS] = True
    for size, top_k in (((31, 45), 5), ((64, 97), 200), ((40, 40), 7)):
        data = make_panoptic_deeplab_outputs(*size, 19, THINGS, 12, seed=sum(size), sigma=3.0)
        sem, heat, offsets = data["sem_seg"], data["center_heatmap"], data["offsets"]
        expected, centers = get_panoptic_segmentation(
            sem, heat, offsets, THINGS, 1000, 40, 255, nms_kernel=5, top_k=top_k
        )
        with torch._dynamo.config.patch(capture_dynamic_output_shape_ops=True):
            pan, got_centers = compiled(
                sem[0], heat[0], offsets, None, table, 1000, 40, 255, 0.1, 5, top_k
            )
        assert torch.equal(pan, expected[0]) and torch.equal(got_centers, centers[0])
        assert len(pan.unique()) > 5
    graphs = [g for g in counter.graphs if any(n.op == "call_function" for n in g.graph.nodes)]
    # torch 2.9's Dynamo compiles the first call with static sizes and recompiles once with
    # symbolic ones; torch 2.14's starts symbolic. No graph break either way (fullgraph).
    assert len(graphs) == (2 if _TORCH_2_9 else 1)
    for graph in graphs:
        called = {str(n.target) for n in graph.graph.nodes if n.op == "call_function"}
        # On CPU the graph runs the fused kernel (through its fake kernel while tracing).
        assert any(c.startswith("panoptic2.panoptic_deeplab_postprocess") for c in called)
