"""Box coding (Detectron2 semantics) and the dense box regression loss, on hand-built boxes."""

import math

import pytest
import torch

from panoptic2.modeling.box_regression import (
    Box2BoxTransform,
    dense_box_regression_loss,
    smooth_l1_loss,
)


def _random_boxes(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 100
    wh = torch.rand(n, 2, generator=g) * 50 + 1
    return torch.cat([xy, xy + wh], dim=1)


def test_get_deltas_hand_computed():
    # Source centre (5, 5), size 10x10; target centre (15, 10), size 20x10.
    src = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    tgt = torch.tensor([[5.0, 5.0, 25.0, 15.0]])
    deltas = Box2BoxTransform().get_deltas(src, tgt)
    torch.testing.assert_close(deltas, torch.tensor([[1.0, 0.5, math.log(2.0), 0.0]]))
    weighted = Box2BoxTransform(weights=(10, 10, 5, 5)).get_deltas(src, tgt)
    torch.testing.assert_close(weighted, torch.tensor([[10.0, 5.0, 5 * math.log(2.0), 0.0]]))


def test_apply_deltas_hand_computed():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 20.0]])  # centre (5, 10), size 10x20
    deltas = torch.tensor([[0.5, -0.25, math.log(3.0), 0.0]])
    out = Box2BoxTransform().apply_deltas(deltas, boxes)
    # centre (5 + 5, 10 - 5) = (10, 5), size 30x20.
    torch.testing.assert_close(out, torch.tensor([[-5.0, -5.0, 25.0, 15.0]]))


@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)])
def test_round_trip(weights):
    src, tgt = _random_boxes(50, 0), _random_boxes(50, 1)
    transform = Box2BoxTransform(weights=weights)
    decoded = transform.apply_deltas(transform.get_deltas(src, tgt), src)
    torch.testing.assert_close(decoded, tgt, rtol=1e-5, atol=1e-4)


def test_class_specific_deltas_apply_each_group_to_the_same_box():
    boxes = _random_boxes(4, 2)
    targets = [_random_boxes(4, s) for s in (3, 4, 5)]
    transform = Box2BoxTransform(weights=(10, 10, 5, 5))
    deltas = torch.cat([transform.get_deltas(boxes, t) for t in targets], dim=1)  # (4, 12)
    out = transform.apply_deltas(deltas, boxes)
    assert out.shape == (4, 12)
    for k, t in enumerate(targets):
        torch.testing.assert_close(out[:, 4 * k : 4 * k + 4], t, rtol=1e-5, atol=1e-4)


def test_scale_clamp_bounds_width_and_height():
    boxes = torch.tensor([[0.0, 0.0, 16.0, 16.0]])
    deltas = torch.tensor([[0.0, 0.0, 100.0, 100.0]])  # exp(100) would be ~2.7e43
    out = Box2BoxTransform().apply_deltas(deltas, boxes)
    # Default clamp log(1000 / 16): a 16-pixel box grows to at most 1000 pixels.
    torch.testing.assert_close(out, torch.tensor([[-492.0, -492.0, 508.0, 508.0]]))
    small = Box2BoxTransform(scale_clamp=math.log(2.0)).apply_deltas(deltas, boxes)
    torch.testing.assert_close(small, torch.tensor([[-8.0, -8.0, 24.0, 24.0]]))
    # The clamp only bounds growth: a large negative delta still shrinks the box.
    shrunk = Box2BoxTransform().apply_deltas(torch.tensor([[0.0, 0.0, -math.log(4.0), 0.0]]), boxes)
    torch.testing.assert_close(shrunk, torch.tensor([[6.0, 0.0, 10.0, 16.0]]))


def test_invalid_inputs_raise():
    with pytest.raises(ValueError, match="positive width"):
        Box2BoxTransform().get_deltas(
            torch.tensor([[5.0, 0, 5, 10]]), torch.tensor([[0.0, 0, 1, 1]])
        )
    with pytest.raises(ValueError, match="4 weights"):
        Box2BoxTransform(weights=(1, 1))
    with pytest.raises(ValueError, match="k\\*4"):
        Box2BoxTransform().apply_deltas(torch.zeros(2, 3), torch.zeros(2, 4))


def test_smooth_l1_values():
    x = torch.tensor([0.5, -2.0, 0.0])
    zero = torch.zeros(3)
    # beta = 1: 0.5 * 0.25 = 0.125 inside; 2 - 0.5 = 1.5 outside.
    torch.testing.assert_close(smooth_l1_loss(x, zero, 1.0), torch.tensor([0.125, 1.5, 0.0]))
    # beta = 0 is the L1 loss.
    torch.testing.assert_close(smooth_l1_loss(x, zero, 0.0, reduction="sum"), torch.tensor(2.5))


def test_dense_box_regression_loss_sums_foreground_l1():
    transform = Box2BoxTransform()
    anchors = [torch.tensor([[0.0, 0.0, 10.0, 10.0]]), torch.tensor([[0.0, 0.0, 20.0, 20.0]])]
    gt = [torch.tensor([[5.0, 5.0, 25.0, 15.0], [0.0, 0.0, 20.0, 20.0]])]
    # Target deltas: anchor 0 -> (1, 0.5, log 2, 0); anchor 1 -> (0, 0, 0, 0).
    pred = [torch.tensor([[[1.0, 0.0, 0.0, 0.0]]]), torch.tensor([[[0.1, 0.2, 0.3, 0.4]]])]
    fg = torch.tensor([[True, False]])
    loss = dense_box_regression_loss(anchors, transform, pred, gt, fg, "smooth_l1", 0.0)
    torch.testing.assert_close(loss, torch.tensor(0.5 + math.log(2.0)))
    both = dense_box_regression_loss(anchors, transform, pred, gt, torch.tensor([[True, True]]))
    torch.testing.assert_close(both, torch.tensor(0.5 + math.log(2.0) + 1.0))


def test_dense_box_regression_giou_is_zero_for_exact_predictions():
    transform = Box2BoxTransform()
    anchors = [torch.tensor([[0.0, 0.0, 10.0, 10.0], [2.0, 2.0, 8.0, 9.0]])]
    gt = [torch.tensor([[5.0, 5.0, 25.0, 15.0], [0.0, 0.0, 4.0, 4.0]])]
    exact = transform.get_deltas(anchors[0], gt[0])[None]
    fg = torch.tensor([[True, True]])
    loss = dense_box_regression_loss(anchors, transform, [exact], gt, fg, "giou")
    assert abs(loss.item()) < 1e-5
    off = dense_box_regression_loss(anchors, transform, [exact + 0.5], gt, fg, "giou")
    assert off.item() > 0.1
    with pytest.raises(ValueError, match="Unknown box regression loss"):
        dense_box_regression_loss(anchors, transform, [exact], gt, fg, "l2")
