"""Tests of panoptic2/testing/synthetic.py."""

import torch

from panoptic2.testing.synthetic import make_panoptic_deeplab_outputs


def test_synthetic_outputs_are_deterministic_and_well_formed():
    a = make_panoptic_deeplab_outputs(30, 41, 7, [4, 5, 6], 5, seed=3)
    b = make_panoptic_deeplab_outputs(30, 41, 7, [4, 5, 6], 5, seed=3)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert a["sem_seg"].shape == (1, 30, 41) and a["sem_seg"].dtype == torch.int64
    assert a["offsets"].shape == (2, 30, 41) and a["center_heatmap"].shape == (1, 30, 41)
    assert int(a["sem_seg"].max()) < 7 and bool(
        torch.isin(a["sem_seg"], torch.tensor([4, 5, 6])).any()
    )
    assert torch.allclose(a["sem_probs"].sum(0), torch.ones(30, 41))
    assert float(a["center_heatmap"].max()) > 0.3  # peaks above the usual 0.1 threshold
