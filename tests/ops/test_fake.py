"""Tests of panoptic2/ops/_fake.py: schemas and fake kernels of all ``panoptic2._C`` ops.

``torch.library.opcheck`` runs on each op that returns tensors (schema, fake kernel,
dispatch); the post-processing ops also have CUDA cases in tests/ops/test_panoptic_deeplab.py.
"""

from __future__ import annotations

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from panoptic2.modeling.postprocessing import find_instance_center
from panoptic2.ops import extension
from panoptic2.testing.synthetic import make_panoptic_deeplab_outputs

FAKE_OPS = ("group_pixels", "merge_semantic_and_instance", "panoptic_deeplab_postprocess")

needs_ops = pytest.mark.skipif(
    not extension.has_ops(), reason="panoptic2._C is not built (python setup.py build_ext)"
)


def _postprocessing_inputs() -> dict:
    things = list(range(11, 19))
    data = make_panoptic_deeplab_outputs(33, 47, 19, things, 12, seed=0)
    sem = data["sem_seg"][0]
    is_thing_class = torch.zeros(19, dtype=torch.bool)
    is_thing_class[things] = True
    return {
        "sem": sem,
        "offsets": data["offsets"],
        "centers": find_instance_center(data["center_heatmap"], 0.1, 7, 200),
        "thing_mask": is_thing_class[sem],
        "is_thing_class": is_thing_class,
    }


@needs_ops
def test_opcheck_group_pixels():
    case = _postprocessing_inputs()
    centers, offsets, mask = case["centers"], case["offsets"], case["thing_mask"]
    assert centers.shape[0] > 1
    torch.library.opcheck(torch.ops.panoptic2.group_pixels.default, (centers, offsets, mask))
    no_centers = centers[:0]
    torch.library.opcheck(torch.ops.panoptic2.group_pixels.default, (no_centers, offsets, mask))


@needs_ops
def test_opcheck_merge_semantic_and_instance():
    case = _postprocessing_inputs()
    centers, mask = case["centers"], case["thing_mask"]
    ins = torch.ops.panoptic2.group_pixels(centers, case["offsets"], mask)
    maps = (case["sem"], ins, mask, case["is_thing_class"])
    for stuff_area in (0, 10):
        args = (*maps, centers.shape[0], 1000, stuff_area, 255)
        torch.library.opcheck(torch.ops.panoptic2.merge_semantic_and_instance.default, args)


@needs_ops
def test_postprocessing_fake_kernels_give_output_shapes():
    with FakeTensorMode() as mode:
        offsets = mode.from_tensor(torch.zeros(2, 6, 7))
        mask = mode.from_tensor(torch.zeros(6, 7, dtype=torch.bool))
        centers = mode.from_tensor(torch.zeros(3, 2, dtype=torch.long))
        ins = torch.ops.panoptic2.group_pixels(centers, offsets, mask)
        assert ins.shape == (6, 7) and ins.dtype == torch.int64
        sem = mode.from_tensor(torch.zeros(6, 7, dtype=torch.long))
        table = mode.from_tensor(torch.zeros(4, dtype=torch.bool))
        pan = torch.ops.panoptic2.merge_semantic_and_instance(sem, ins, mask, table, 3, 10, 0, -1)
        assert pan.shape == (6, 7) and pan.dtype == torch.int64


@needs_ops
def test_fused_postprocessing_fake_kernel_gives_a_data_dependent_number_of_centers():
    from torch.fx.experimental.symbolic_shapes import ShapeEnv

    with FakeTensorMode(shape_env=ShapeEnv()) as mode:
        sem = mode.from_tensor(torch.zeros(6, 7, dtype=torch.long))
        heat = mode.from_tensor(torch.zeros(6, 7))
        offsets = mode.from_tensor(torch.zeros(2, 6, 7))
        table = mode.from_tensor(torch.zeros(4, dtype=torch.bool))
        pan, centers = torch.ops.panoptic2.panoptic_deeplab_postprocess(
            sem, heat, offsets, None, table, 0.1, 3, None, 1000, 0, 255
        )
        assert pan.shape == (6, 7) and pan.dtype == torch.int64
        assert centers.dim() == 2 and centers.shape[1] == 2 and centers.dtype == torch.int64
        assert isinstance(centers.shape[0], torch.SymInt)  # unbacked: known only at run time


@needs_ops
def test_all_fake_kernels_come_from_the_one_module():
    """``set_python_module`` in csrc/ops.cpp names panoptic2.ops._fake for every op, and that
    module (imported by the extension's load) registered their fake kernels."""
    import sys

    assert "panoptic2.ops._fake" in sys.modules
    _fake = sys.modules["panoptic2.ops._fake"]
    for name in FAKE_OPS:
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"panoptic2::{name}", "Meta")
    for name in extension.REQUIRED_OPS:
        assert torch._C._dispatch_pystub(f"panoptic2::{name}", "") == ("panoptic2.ops._fake", "")
    for name in FAKE_OPS:
        entry = torch._library.simple_registry.singleton.find(f"panoptic2::{name}")
        assert entry.fake_impl.kernel is not None
        assert entry.fake_impl.kernel.source.startswith(_fake.__file__ + ":")
