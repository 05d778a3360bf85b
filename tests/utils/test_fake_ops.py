"""Tests of panoptic2.utils._fake_ops: schemas and fake kernels of the segment-map ops."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from panoptic2.utils._fake_ops import segment_ops_available

needs_ops = pytest.mark.skipif(
    not segment_ops_available(), reason="panoptic2._C with the segment-map ops is not available"
)


def _raw_rows(height: int, width: int, channels: int) -> torch.Tensor:
    """Random inflated PNG rows (filter byte + pixels); their decoding is checked against
    an independent encoder in tests/utils/test_panoptic_png.py."""
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
