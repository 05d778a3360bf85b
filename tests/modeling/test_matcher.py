"""Matcher (Detectron2 semantics) on hand-built IoU matrices."""

import pytest
import torch

from panoptic2.modeling.matcher import Matcher

# Two ground-truth boxes (rows) against five predictions (columns).
_IOU = torch.tensor(
    [
        [0.9, 0.5, 0.1, 0.0, 0.25],
        [0.1, 0.6, 0.2, 0.29, 0.3],
    ]
)


def test_thresholds_and_labels():
    matches, labels = Matcher([0.3, 0.7], [0, -1, 1])(_IOU)
    # Best gt per prediction: 0.9 (gt 0), 0.6 (gt 1), 0.2 (gt 1), 0.29 (gt 1), 0.3 (gt 1).
    assert matches.tolist() == [0, 1, 1, 1, 1]
    assert matches.dtype == torch.int64
    # [0, 0.3) negative, [0.3, 0.7) ignored (0.3 is included), [0.7, inf) positive.
    assert labels.tolist() == [1, -1, 0, 0, -1]
    assert labels.dtype == torch.int8


def test_low_quality_matches_make_each_gts_best_prediction_positive():
    matches, labels = Matcher([0.3, 0.7], [0, -1, 1], allow_low_quality_matches=True)(_IOU)
    # gt 1's best prediction (column 1, IoU 0.6) becomes positive; gt 0's was already.
    assert labels.tolist() == [1, 1, 0, 0, -1]
    assert matches.tolist() == [0, 1, 1, 1, 1]


def test_low_quality_ties_and_keeping_the_best_gt():
    iou = torch.tensor(
        [
            [0.4, 0.4, 0.1],  # gt 0: tie between predictions 0 and 1
            [0.0, 0.5, 0.2],  # gt 1 overlaps prediction 1 more than gt 0 does
        ]
    )
    matches, labels = Matcher([0.3, 0.7], [0, -1, 1], allow_low_quality_matches=True)(iou)
    assert labels.tolist() == [1, 1, 0]
    # Prediction 1 is positive through gt 0's rule but stays matched to gt 1 (its best).
    assert matches.tolist() == [0, 1, 1]


def test_gt_without_any_overlap_makes_nothing_positive():
    iou = torch.tensor([[0.0, 0.0, 0.0], [0.1, 0.8, 0.0]])
    _, labels = Matcher([0.3, 0.7], [0, -1, 1], allow_low_quality_matches=True)(iou)
    assert labels.tolist() == [0, 1, 0]


def test_three_intervals_with_roi_head_settings():
    # ROI heads: one threshold 0.5, labels [0, 1].
    matches, labels = Matcher([0.5], [0, 1])(_IOU)
    assert labels.tolist() == [1, 1, 0, 0, 0]


def test_no_ground_truth_labels_everything_with_the_first_label():
    matches, labels = Matcher([0.3, 0.7], [0, -1, 1])(torch.zeros(0, 4))
    assert matches.tolist() == [0, 0, 0, 0]
    assert labels.tolist() == [0, 0, 0, 0]


@pytest.mark.parametrize(
    "thresholds, labels, match",
    [
        ([0.0, 0.7], [0, -1, 1], "first > 0"),
        ([0.7, 0.3], [0, -1, 1], "increasing"),
        ([0.3, 0.7], [0, 1], "labels"),
        ([0.3, 0.7], [0, 2, 1], "-1, 0 or 1"),
    ],
)
def test_bad_settings_raise(thresholds, labels, match):
    with pytest.raises(ValueError, match=match):
        Matcher(thresholds, labels)


def test_negative_quality_raises():
    with pytest.raises(ValueError, match="non-negative"):
        Matcher([0.5], [0, 1])(torch.tensor([[-0.1, 0.2]]))
