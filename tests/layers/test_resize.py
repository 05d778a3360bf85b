"""Tests of panoptic2/layers/resize.py: the matrix form of bilinear resizing against
``F.interpolate`` (values and gradients) and a hand-computed matrix."""

import pytest
import torch
from torch.nn import functional as F

from panoptic2.layers.resize import interpolation_matrix, resize_bilinear

CASES = [
    ((2, 3, 8, 10), {"scale_factor": 4}),
    ((1, 2, 5, 7), {"size": (13, 29)}),
    ((1, 2, 1, 1), {"size": (4, 5)}),  # ASPP image pooling: a 1 x 1 map spread out
    ((1, 2, 9, 9), {"size": (4, 5)}),  # downsampling (no antialiasing, as F.interpolate)
    ((1, 1, 6, 8), {"scale_factor": 2.5}),
    ((1, 1, 6, 8), {"scale_factor": (2, 3)}),
    ((1, 1, 4, 6), {"size": (4, 6)}),
]


@pytest.mark.parametrize(("shape", "kwargs"), CASES)
def test_matrix_resize_equals_interpolate_with_gradients(shape, kwargs):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    a = x.clone().requires_grad_(True)
    b = x.clone().requires_grad_(True)
    ref = F.interpolate(a, mode="bilinear", align_corners=False, **kwargs)
    got = resize_bilinear(b, use_matmul=True, **kwargs)
    assert got.shape == ref.shape
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)
    upstream = torch.randn(ref.shape, generator=torch.Generator().manual_seed(1))
    ref.backward(upstream)
    got.backward(upstream)
    torch.testing.assert_close(b.grad, a.grad, rtol=1e-5, atol=1e-5)


def test_eager_path_is_interpolate_itself():
    x = torch.randn(2, 3, 7, 9)
    for kwargs in ({"scale_factor": 4}, {"size": (11, 5)}):
        ref = F.interpolate(x, mode="bilinear", align_corners=False, **kwargs)
        assert torch.equal(resize_bilinear(x, **kwargs), ref)


def test_interpolation_matrix_by_hand():
    # 2 -> 4, scale 2: src = (o + 0.5) / 2 - 0.5 = -0.25 (clamped to 0), 0.25, 0.75, 1.25.
    expected = torch.tensor(
        [[1.0, 0.0], [0.75, 0.25], [0.25, 0.75], [0.0, 1.0]]  # last: i0 = 1, neighbour 1
    )
    assert torch.equal(interpolation_matrix(2, 4), expected)
    assert torch.equal(interpolation_matrix(2, 4, scale_factor=2.0), expected)
    weights = interpolation_matrix(37, 91, dtype=torch.float64)
    assert weights.dtype == torch.float64
    torch.testing.assert_close(weights.sum(1), torch.ones(91, dtype=torch.float64))


def test_bad_arguments():
    x = torch.zeros(1, 1, 4, 4)
    with pytest.raises(ValueError, match="exactly one"):
        resize_bilinear(x)
    with pytest.raises(ValueError, match="exactly one"):
        resize_bilinear(x, size=(2, 2), scale_factor=2)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        resize_bilinear(torch.zeros(4, 4), size=(2, 2))
    with pytest.raises(ValueError, match="positive"):
        interpolation_matrix(0, 3)
