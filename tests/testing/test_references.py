"""Tests of panoptic2/testing/references.py: the plain target reference on a hand-made map."""

import numpy as np

from panoptic2.testing.references import panoptic_deeplab_targets_reference


def test_one_instance_by_hand():
    # Stuff 3 everywhere, a 2x2 thing (class 11, instance 1) at rows 1-2, cols 1-2, void row 3.
    pan = np.full((4, 4), 3 * 1000, np.int64)
    pan[1:3, 1:3] = 11 * 1000 + 1
    pan[3] = 255 * 1000
    out = panoptic_deeplab_targets_reference(
        pan, ignore_label=255, thing_ids=[11], label_divisor=1000, sigma=1.0
    )
    assert out["sem_seg"][0, 0] == 3 and out["sem_seg"][1, 1] == 11 and out["sem_seg"][3, 0] == 255
    # Centre of mass (1.5, 1.5) rounds to (2, 2): the heatmap peak.
    assert out["center"][0, 2, 2] == 1.0 and out["center"].max() == 1.0
    np.testing.assert_allclose(out["offset"][:, 1, 1], [0.5, 0.5])
    np.testing.assert_allclose(out["offset"][:, 2, 2], [-0.5, -0.5])
    assert out["offset"][:, 0, 0].tolist() == [0.0, 0.0]  # stuff: no offset
    assert out["sem_seg_weights"][1, 1] == 3 and out["sem_seg_weights"][0, 0] == 1
    assert out["sem_seg_weights"][3, 0] == 0 and out["center_weights"][3, 0] == 0
    assert out["offset_weights"][0, 0] == 0 and out["offset_weights"][1, 1] == 1
