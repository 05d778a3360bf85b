"""Tests of panoptic2/ops/_fake.py: schemas and fake kernels of all ``panoptic2._C`` ops.

``torch.library.opcheck`` runs on each of the four ops (schema, fake kernel, dispatch);
the post-processing ops also have CUDA cases in tests/ops/test_panoptic_deeplab.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from panoptic2.modeling.postprocessing import find_instance_center
from panoptic2.ops import extension
from panoptic2.testing.synthetic import make_panoptic_deeplab_outputs

needs_ops = pytest.mark.skipif(
    not extension.has_ops(), reason="panoptic2._C is not built (python setup.py build_ext)"
)


def _raw_rows(height: int, width: int, channels: int) -> torch.Tensor:
    """Random inflated PNG rows (filter byte + pixels); their decoding is checked against
    an independent encoder in tests/data/test_panoptic_label.py."""
    rng = np.random.default_rng(0)
    rows = rng.integers(0, 256, size=(height, 1 + width * channels), dtype=np.uint8)
    rows[:, 0] = np.arange(height) % 5  # every filter type
    return torch.from_numpy(rows.ravel().copy())


@needs_ops
def test_opcheck_png_unfilter_to_ids():
    for channels in (3, 4):
        raw = _raw_rows(5, 7, channels)
        torch.library.opcheck(
            torch.ops.panoptic2.png_unfilter_to_ids.default, (raw, 5, 7, channels)
        )
    # Inputs that break the schema's promises are errors, not silent reads past the buffer.
    with pytest.raises(
        RuntimeError, match="has 109 bytes, but a 7x5 image with 3 channels needs 110"
    ):
        torch.ops.panoptic2.png_unfilter_to_ids(_raw_rows(5, 7, 3)[:-1], 5, 7, 3)
    with pytest.raises(RuntimeError, match="channels must be 3"):
        torch.ops.panoptic2.png_unfilter_to_ids(_raw_rows(5, 7, 3), 5, 7, 2)


@needs_ops
def test_opcheck_count_segment_pairs():
    gt = torch.tensor([[1, 1, 2], [2, 2, 3]], dtype=torch.int32)
    pred = torch.tensor([[5, 5, 5], [7, 7, 7]], dtype=torch.int64)
    torch.library.opcheck(torch.ops.panoptic2.count_segment_pairs.default, (gt, pred))
    values = torch.ops.panoptic2.count_segment_pairs(gt, pred)
    assert [v.tolist() for v in values] == [[1, 2, 2, 3], [5, 5, 7, 7], [2, 1, 2, 1]]
    with pytest.raises(RuntimeError, match="same shape"):
        torch.ops.panoptic2.count_segment_pairs(gt, pred[:, :2])
    with pytest.raises(RuntimeError, match="int32 or int64"):
        torch.ops.panoptic2.count_segment_pairs(gt.float(), pred)


@needs_ops
def test_fake_kernels_give_output_shapes():
    with FakeTensorMode(allow_non_fake_inputs=False) as mode:
        raw = mode.from_tensor(_raw_rows(4, 6, 4))
        ids = torch.ops.panoptic2.png_unfilter_to_ids(raw, 4, 6, 4)
        assert ids.shape == (4, 6) and ids.dtype == torch.int32
    with FakeTensorMode(shape_env=torch.fx.experimental.symbolic_shapes.ShapeEnv()) as mode:
        gt = mode.from_tensor(torch.zeros(3, 4, dtype=torch.int32))
        pred = mode.from_tensor(torch.zeros(3, 4, dtype=torch.int64))
        outputs = torch.ops.panoptic2.count_segment_pairs(gt, pred)
        assert [tuple(o.dtype for o in outputs)] == [(torch.int64,) * 3]
        assert outputs[0].shape == outputs[1].shape == outputs[2].shape
        assert not isinstance(outputs[0].shape[0], int)  # data-dependent length


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
def test_all_fake_kernels_come_from_the_one_module():
    """``set_python_module`` in csrc/ops.cpp names panoptic2.ops._fake for every op, and that
    module (imported by the extension's load) registered their fake kernels."""
    import sys

    assert "panoptic2.ops._fake" in sys.modules
    _fake = sys.modules["panoptic2.ops._fake"]
    for name in ("group_pixels", "merge_semantic_and_instance"):
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"panoptic2::{name}", "Meta")
    for name in extension.REQUIRED_OPS:
        assert torch._C._dispatch_pystub(f"panoptic2::{name}", "") == ("panoptic2.ops._fake", "")
    for name in ("png_unfilter_to_ids", "count_segment_pairs", "group_pixels"):
        entry = torch._library.simple_registry.singleton.find(f"panoptic2::{name}")
        assert entry.fake_impl.kernel is not None
        assert entry.fake_impl.kernel.source.startswith(_fake.__file__ + ":")
