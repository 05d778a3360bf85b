"""Tests of panoptic2.layers.argmax against torch.argmax."""

from __future__ import annotations

import pytest
import torch

from panoptic2.layers.argmax import argmax_over_classes


@pytest.mark.parametrize("dim", [0, 1, -1])
@pytest.mark.parametrize("keepdim", [False, True])
def test_equals_torch_argmax_with_ties_and_nan(dim, keepdim):
    generator = torch.Generator().manual_seed(0)
    # Scores from a few levels: many ties, which must go to the smaller index.
    scores = torch.randint(0, 3, (5, 7, 9), generator=generator).float()
    scores[2, 3, 4] = float("nan")  # NaN counts as the maximum in both
    scores[:, 0, 0] = 1.0  # an all-equal column
    got = argmax_over_classes(scores, dim=dim, keepdim=keepdim)
    expected = torch.argmax(scores, dim=dim, keepdim=keepdim)
    assert got.dtype == torch.int64
    assert torch.equal(got, expected)


def test_first_maximum_wins():
    scores = torch.tensor([[1.0, 3.0, 3.0], [3.0, 3.0, 0.0]])
    assert argmax_over_classes(scores, dim=1).tolist() == [1, 0]
    assert argmax_over_classes(scores, dim=0).tolist() == [1, 0, 0]
