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


def _reference_scores(pan, probs, heat, centers, rule):
    """Straightforward loops: mean probability over the mask times the heatmap at the first
    center inside the mask ("center") or at the truncated mean pixel ("centroid")."""
    h, w = pan.shape
    scores = {}
    for label in sorted({int(v) for v in pan.flatten()}):
        if label % 100 == 0 or label < 0:
            continue
        pixels = [(y, x) for y in range(h) for x in range(w) if pan[y, x] == label]
        cls = label // 100
        semantic = sum(float(probs[cls, y, x]) for y, x in pixels) / len(pixels)
        inside = [(y, x) for y, x in centers if (y, x) in pixels]
        if rule == "center" and inside:
            point = inside[0]
        else:
            point = (
                sum(y for y, _ in pixels) // len(pixels),
                sum(x for _, x in pixels) // len(pixels),
            )
        scores[label] = semantic * float(heat[point])
    return scores


@pytest.mark.parametrize("rule", ["center", "centroid"])
def test_score_rules_against_reference(rule):
    pan = torch.tensor(
        [
            [101, 101, 101, 0, 202, 202],
            [101, 0, 0, 0, 202, 202],
            [101, 0, 0, 0, 0, 202],
            [101, 0, 0, 0, 0, 0],
        ]
    )
    generator = torch.Generator().manual_seed(0)
    probs = torch.rand(3, 4, 6, generator=generator)
    heat = torch.arange(24, dtype=torch.float32).view(4, 6) / 24
    # 101: center (0, 2), centroid (1.0, 0.5) -> (1, 0); 202: center (1, 5), centroid
    # (0.8, 4.6) -> (0, 4). A center outside every mask comes first and is skipped.
    centers = [(3, 3), (0, 2), (1, 5)]
    preds = get_instance_predictions(
        pan[None], probs, heat[None], torch.tensor([centers]), [1, 2], 100, score_rule=rule
    )
    expected = _reference_scores(pan, probs, heat, centers, rule)
    assert [p["class"] for p in preds] == [1, 2]
    assert [p["score"] for p in preds] == pytest.approx(list(expected.values()), rel=1e-6)
    read_at = {"center": [(0, 2), (1, 5)], "centroid": [(1, 0), (0, 4)]}[rule]
    for pred, point in zip(preds, read_at):
        semantic = probs[pred["class"]][pred["mask"]].mean()
        assert pred["score"] == pytest.approx(float(semantic * heat[point]), rel=1e-6)


def test_unknown_score_rule_is_an_error():
    with pytest.raises(ValueError, match="score_rule"):
        get_instance_predictions(
            torch.zeros(1, 2, 2, dtype=torch.long),
            torch.ones(2, 2, 2),
            torch.ones(1, 2, 2),
            torch.zeros(0, 2, dtype=torch.long),
            [1],
            100,
            score_rule="mean",
        )
