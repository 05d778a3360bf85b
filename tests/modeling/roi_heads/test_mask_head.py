"""Mask head, mask targets, mask loss and mask pasting (panoptic2/modeling/roi_heads/mask_head.py)."""

import math

import pytest
import torch
import torch.nn.functional as F

from panoptic2.layers import ShapeSpec
from panoptic2.modeling.roi_heads.mask_head import (
    MaskRCNNConvUpsampleHead,
    mask_rcnn_inference,
    mask_rcnn_loss,
    mask_targets,
    paste_masks_in_image,
)


def _reference_paste(mask: torch.Tensor, box, height: int, width: int) -> torch.Tensor:
    """Slow per-pixel bilinear sampling of an (M, M) mask stretched over ``box``, zeros
    outside the mask; pixel (x, y) is sampled at its centre."""
    m = mask.shape[0]
    x0, y0, x1, y1 = box
    out = torch.zeros(height, width)

    def at(r: int, c: int) -> float:
        return float(mask[r, c]) if 0 <= r < m and 0 <= c < m else 0.0

    for y in range(height):
        for x in range(width):
            u = (x + 0.5 - x0) / (x1 - x0) * m - 0.5
            v = (y + 0.5 - y0) / (y1 - y0) * m - 0.5
            c0, r0 = math.floor(u), math.floor(v)
            fu, fv = u - c0, v - r0
            out[y, x] = (
                at(r0, c0) * (1 - fu) * (1 - fv)
                + at(r0, c0 + 1) * fu * (1 - fv)
                + at(r0 + 1, c0) * (1 - fu) * fv
                + at(r0 + 1, c0 + 1) * fu * fv
            )
    return out


def test_paste_matches_slow_reference():
    torch.manual_seed(0)
    masks = torch.rand(3, 1, 7, 7)
    boxes = torch.tensor([[2.3, 1.7, 13.9, 9.2], [-3.0, 4.0, 6.5, 20.0], [10.0, 10.0, 25.0, 14.0]])
    soft = paste_masks_in_image(masks, boxes, (18, 20), threshold=-1)
    for i in range(3):
        ref = _reference_paste(masks[i, 0], boxes[i].tolist(), 18, 20)
        torch.testing.assert_close(soft[i], ref, atol=1e-5, rtol=0)
    hard = paste_masks_in_image(masks, boxes, (18, 20))
    assert hard.dtype == torch.bool
    assert torch.equal(hard, soft >= 0.5)


def test_box_aligned_mask_fills_exactly_the_box():
    masks = torch.ones(1, 28, 28)
    out = paste_masks_in_image(masks, torch.tensor([[3.0, 5.0, 11.0, 9.0]]), (16, 16))
    expected = torch.zeros(16, 16, dtype=torch.bool)
    expected[5:9, 3:11] = True
    assert torch.equal(out[0], expected)


def test_paste_of_empty_and_outside_boxes():
    out = paste_masks_in_image(
        torch.ones(2, 5, 5), torch.tensor([[30.0, 30, 40, 40], [0, 0, 0, 0]]), (8, 8)
    )
    assert out.shape == (2, 8, 8) and not out.any()
    assert paste_masks_in_image(torch.zeros(0, 28, 28), torch.zeros(0, 4), (4, 6)).shape == (
        0,
        4,
        6,
    )


def test_mask_targets_crop_the_ground_truth():
    gt = torch.zeros(2, 20, 20, dtype=torch.bool)
    gt[0, 4:12, 2:10] = True  # box [2, 4, 10, 12]
    gt[1, :, 10:] = True  # right half
    boxes = torch.tensor([[2.0, 4.0, 10.0, 12.0], [0.0, 0.0, 20.0, 20.0]])
    targets = mask_targets(gt, boxes, torch.tensor([0, 1]), 8)
    assert targets.shape == (2, 8, 8) and targets.dtype == torch.float32
    assert torch.equal(targets[0], torch.ones(8, 8))
    expected = torch.zeros(8, 8)
    expected[:, 4:] = 1
    assert torch.equal(targets[1], expected)


def test_mask_loss_uses_the_ground_truth_class_channel():
    torch.manual_seed(0)
    logits = torch.randn(3, 4, 6, 6, requires_grad=True)
    classes = torch.tensor([2, 0, 3])
    targets = (torch.rand(3, 6, 6) > 0.5).float()
    loss = mask_rcnn_loss(logits, classes, targets)
    ref = torch.stack(
        [
            F.binary_cross_entropy_with_logits(logits[i, c], targets[i])
            for i, c in enumerate(classes)
        ]
    ).mean()
    torch.testing.assert_close(loss, ref)
    loss.backward()
    assert logits.grad[0, 1].abs().sum() == 0 and logits.grad[0, 2].abs().sum() > 0
    empty = mask_rcnn_loss(logits[:0], classes[:0], targets[:0])
    assert float(empty.detach()) == 0 and empty.requires_grad


def test_mask_inference_selects_predicted_class():
    logits = torch.randn(3, 4, 5, 5)
    out = mask_rcnn_inference(logits, [torch.tensor([1, 3]), torch.tensor([0])])
    assert [o.shape for o in out] == [(2, 1, 5, 5), (1, 1, 5, 5)]
    torch.testing.assert_close(out[0][1, 0], logits[1, 3].sigmoid())
    torch.testing.assert_close(out[1][0, 0], logits[2, 0].sigmoid())


@pytest.mark.parametrize("agnostic", [False, True])
def test_head_shapes(agnostic):
    head = MaskRCNNConvUpsampleHead(
        ShapeSpec(channels=8, height=14, width=14),
        num_classes=3,
        conv_dims=16,
        num_conv=4,
        cls_agnostic_mask=agnostic,
    )
    assert len(head.convs) == 4
    out = head(torch.randn(5, 8, 14, 14))
    assert out.shape == (5, 1 if agnostic else 3, 28, 28)
