"""Level assignment, multi-level ROIAlign, proposal sampling and StandardROIHeads
(panoptic2/modeling/roi_heads/roi_heads.py)."""

import torch
from torchvision.ops import roi_align

from panoptic2.config import get_cfg
from panoptic2.layers import ShapeSpec
from panoptic2.modeling import ROI_HEADS_REGISTRY
from panoptic2.modeling.roi_heads.roi_heads import (
    ROIPooler,
    StandardROIHeads,
    assign_boxes_to_levels,
)
from panoptic2.structures import BitMasks, Boxes, Instances

SHAPES = {f"p{i}": ShapeSpec(channels=8, stride=2**i) for i in range(2, 6)}


def _heads(mask_on=True, batch=16):
    cfg = get_cfg()
    cfg.MODEL.MASK_ON = mask_on
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 3
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = batch
    cfg.MODEL.ROI_BOX_HEAD.FC_DIM = 16
    cfg.MODEL.ROI_MASK_HEAD.CONV_DIM = 8
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.0
    return ROI_HEADS_REGISTRY.get("StandardROIHeads")(cfg, SHAPES)


def _features(size=64):
    torch.manual_seed(0)
    return {f"p{i}": torch.randn(1, 8, size >> i, size >> i) for i in range(2, 6)}


def test_assign_boxes_to_levels_canonical():
    def square(s):
        return [0.0, 0.0, s, s]

    boxes = torch.tensor([square(224), square(112), square(448), square(10), square(2000)])
    levels = assign_boxes_to_levels(boxes, 2, 5)
    assert levels.tolist() == [2, 1, 3, 0, 3]


def test_pooler_uses_each_boxes_level():
    feats = [torch.randn(2, 3, 64 >> i, 64 >> i) for i in range(2, 6)]
    pooler = ROIPooler(7, [1 / 4, 1 / 8, 1 / 16, 1 / 32], sampling_ratio=2, aligned=True)
    boxes = [torch.tensor([[0.0, 0.0, 10.0, 10.0]]), torch.tensor([[4.0, 4.0, 60.0, 60.0]])]
    out = pooler(feats, boxes)
    assert out.shape == (2, 3, 7, 7)
    # 10 px -> p2; 56 px -> floor(4 + log2(0.25)) = 2 -> p2 as well; check a p3 box too.
    ref0 = roi_align(feats[0], [boxes[0], boxes[0][:0]], 7, 1 / 4, 2, True)
    torch.testing.assert_close(out[0], ref0[0])
    big = [torch.tensor([[0.0, 0.0, 120.0, 120.0]])]
    ref = roi_align(feats[1][:1], big, 7, 1 / 8, 2, True)
    torch.testing.assert_close(pooler(feats, big), ref)


def _gt(boxes, classes, masks):
    return Instances((64, 64), gt_boxes=Boxes(boxes), gt_classes=classes, gt_masks=BitMasks(masks))


def test_sampling_proposal_equal_to_gt_is_foreground():
    heads = _heads()
    gt = _gt(
        torch.tensor([[10.0, 10.0, 30.0, 30.0]]),
        torch.tensor([2]),
        torch.zeros(1, 64, 64, dtype=torch.bool),
    )
    proposals = [
        {"proposal_boxes": torch.tensor([[10.0, 10.0, 30.0, 30.0], [40.0, 40.0, 60.0, 60.0]])}
    ]
    (sampled,) = heads.label_and_sample_proposals(proposals, [gt])
    assert len(sampled["proposal_boxes"]) == 3  # two proposals + the appended ground truth
    by_box = {
        tuple(b.tolist()): int(c) for b, c in zip(sampled["proposal_boxes"], sampled["gt_classes"])
    }
    assert by_box[(10.0, 10.0, 30.0, 30.0)] == 2
    assert by_box[(40.0, 40.0, 60.0, 60.0)] == 3  # background = num_classes
    fg = sampled["gt_classes"] < 3
    assert torch.equal(sampled["gt_boxes"][fg], gt.gt_boxes.tensor.expand(int(fg.sum()), 4))


def test_sampling_respects_batch_size_and_fraction():
    heads = _heads(batch=8)
    gt = _gt(
        torch.tensor([[0.0, 0.0, 20.0, 20.0]]),
        torch.tensor([0]),
        torch.zeros(1, 64, 64, dtype=torch.bool),
    )
    fg = torch.tensor([[0.0, 0.0, 20.0, 20.0]]).repeat(10, 1)
    bg = torch.tensor([[40.0, 40.0, 60.0, 60.0]]).repeat(20, 1)
    (sampled,) = heads.label_and_sample_proposals([{"proposal_boxes": torch.cat([fg, bg])}], [gt])
    assert len(sampled["gt_classes"]) == 8
    assert int((sampled["gt_classes"] == 0).sum()) == 2  # 8 * 0.25 positives


def test_no_ground_truth_gives_background_only():
    heads = _heads()
    gt = _gt(
        torch.zeros(0, 4),
        torch.zeros(0, dtype=torch.int64),
        torch.zeros(0, 64, 64, dtype=torch.bool),
    )
    heads.train()
    _, losses = heads(
        [(64, 64)], _features(), [{"proposal_boxes": torch.tensor([[0.0, 0, 8, 8]])}], [gt]
    )
    assert float(losses["loss_box_reg"].detach()) == 0 and torch.isfinite(losses["loss_cls"])
    assert float(losses["loss_mask"].detach()) == 0


def test_forward_training_and_inference_formats():
    heads = _heads()
    assert isinstance(heads, StandardROIHeads)
    masks = torch.zeros(2, 64, 64, dtype=torch.bool)
    masks[0, 8:24, 8:24] = True
    masks[1, 30:60, 20:50] = True
    gt = _gt(torch.tensor([[8.0, 8, 24, 24], [20.0, 30, 50, 60]]), torch.tensor([0, 2]), masks)
    proposals = [
        {
            "proposal_boxes": torch.tensor([[6.0, 6, 26, 26], [0.0, 0, 60, 60]]),
            "objectness_logits": torch.zeros(2),
        }
    ]
    heads.train()
    dets, losses = heads([(64, 64)], _features(), proposals, [gt])
    assert dets == [] and set(losses) == {"loss_cls", "loss_box_reg", "loss_mask"}
    sum(losses.values()).backward()
    assert heads.mask_head.predictor.weight.grad.abs().sum() > 0
    heads.eval()
    with torch.no_grad():
        dets, losses = heads([(64, 64)], _features(), proposals)
    assert losses == {}
    (det,) = dets
    n = len(det["scores"])
    assert n > 0
    assert det["pred_boxes"].shape == (n, 4) and det["pred_classes"].dtype == torch.int64
    assert det["pred_masks"].shape == (n, 1, 28, 28)
    assert ((det["pred_masks"] >= 0) & (det["pred_masks"] <= 1)).all()
    assert (det["pred_classes"] < 3).all()
    assert torch.all(det["scores"][:-1] >= det["scores"][1:])


def test_without_masks():
    heads = _heads(mask_on=False)
    assert heads.mask_head is None
    heads.eval()
    with torch.no_grad():
        (det,), _ = heads(
            [(64, 64)], _features(), [{"proposal_boxes": torch.tensor([[0.0, 0, 9, 9]])}]
        )
    assert "pred_masks" not in det
