"""Tests of panoptic2/modeling/postprocessing/instances.py."""

import pytest
import torch

from panoptic2.modeling.postprocessing import get_instance_predictions


def test_instance_predictions_by_hand():
    pan = torch.tensor([[[101, 101, 0, 202], [101, -1, 0, 202]]])
    probs = torch.zeros(3, 2, 4)
    probs[1] = torch.tensor([[0.2, 0.4, 0.0, 0.0], [0.6, 0.0, 0.0, 0.0]])
    probs[2] = torch.tensor([[0.0, 0.0, 0.0, 0.5], [0.0, 0.0, 0.0, 0.7]])
    heat = torch.tensor([[[0.9, 0.8, 0.0, 0.3], [0.0, 0.0, 0.0, 0.5]]])
    # Center (0, 1) lies in segment 101 (its score: 0.8, not 0.9 at the mask's corner);
    # no center lies in segment 202: its centroid (0.5, 3) rounds down to (0, 3).
    centers = torch.tensor([[[0, 1], [0, 2]]])
    preds = get_instance_predictions(pan, probs, heat, centers, [1, 2], 100)
    assert [(p["class"], p["mask"].sum().item()) for p in preds] == [(1, 3), (2, 2)]
    assert preds[0]["score"] == pytest.approx(0.4 * 0.8)
    assert preds[1]["score"] == pytest.approx(0.6 * 0.3)
    assert torch.equal(preds[0]["mask"], pan[0] == 101)


def test_instance_predictions_skip_stuff_and_void():
    pan = torch.tensor([[0, 100, -1]])
    probs = torch.ones(2, 1, 3)
    preds = get_instance_predictions(
        pan, probs, torch.ones(1, 3), torch.zeros(0, 2, dtype=torch.long), [1], 100
    )
    assert preds == []
