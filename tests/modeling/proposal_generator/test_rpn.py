"""RPN: anchor labelling, regression targets and losses on hand-built cases; proposal
selection (top-k, clipping, small boxes, NMS per level); forward wiring; config build."""

import math

import pytest
import torch
from torch import nn

from panoptic2.config import get_cfg
from panoptic2.layers import ShapeSpec
from panoptic2.modeling import PROPOSAL_GENERATOR_REGISTRY, build_proposal_generator
from panoptic2.modeling.anchor_generator import DefaultAnchorGenerator
from panoptic2.modeling.box_regression import Box2BoxTransform
from panoptic2.modeling.matcher import Matcher
from panoptic2.modeling.proposal_generator.rpn import (
    RPN,
    StandardRPNHead,
    find_top_rpn_proposals,
)
from panoptic2.structures import Boxes, Instances
from panoptic2.utils.events import EventStorage

# One GT box and six anchors with hand-computed IoUs against it.
_GT = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
_ANCHORS = torch.tensor(
    [
        [0.0, 0.0, 10.0, 10.0],  # IoU 1          -> positive
        [0.0, 0.0, 10.0, 12.0],  # 100/120 = 0.83 -> positive
        [5.0, 0.0, 15.0, 10.0],  # 50/150 = 0.33  -> ignored
        [20.0, 20.0, 30.0, 30.0],  # 0            -> negative
        [1.0, 1.0, 9.0, 9.0],  # 64/100 = 0.64    -> ignored
        [0.0, 0.0, 20.0, 20.0],  # 100/400 = 0.25 -> negative
    ]
)


def _rpn(**kwargs) -> RPN:
    args = dict(
        in_features=["p2"],
        head=StandardRPNHead(in_channels=4, num_anchors=1),
        anchor_generator=DefaultAnchorGenerator(sizes=[[8]], aspect_ratios=[[1.0]], strides=[4]),
        anchor_matcher=Matcher([0.3, 0.7], [0, -1, 1], allow_low_quality_matches=True),
        box2box_transform=Box2BoxTransform(),
        batch_size_per_image=256,
        positive_fraction=0.5,
        pre_nms_topk=(2000, 1000),
        post_nms_topk=(1000, 1000),
    )
    args.update(kwargs)
    return RPN(**args)


def test_anchor_labels_hand_built():
    labels, matched = _rpn().label_and_sample_anchors([_ANCHORS], [(40, 40)], [_GT])
    assert labels[0].tolist() == [1, 1, -1, 0, -1, 0]
    torch.testing.assert_close(matched[0], _GT.expand(6, 4))


def test_low_quality_match_and_empty_image():
    anchors = torch.tensor([[0.0, 0.0, 10.0, 20.0], [30.0, 30.0, 40.0, 40.0]])  # IoU 0.5, 0
    rpn = _rpn()
    labels, _ = rpn.label_and_sample_anchors([anchors], [(50, 50)], [_GT])
    assert labels[0].tolist() == [1, 0]  # the GT's best anchor is positive despite 0.5 < 0.7
    labels, matched = rpn.label_and_sample_anchors([anchors], [(50, 50)], [torch.zeros(0, 4)])
    assert labels[0].tolist() == [0, 0]
    assert torch.equal(matched[0], torch.zeros(2, 4))


def test_boundary_threshold_ignores_anchors_off_the_image():
    anchors = torch.tensor([[-3.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0], [25.0, 25.0, 35, 35]])
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    labels, _ = _rpn(anchor_boundary_thresh=0).label_and_sample_anchors([anchors], [(30, 30)], [gt])
    assert labels[0].tolist() == [-1, 1, -1]
    labels, _ = _rpn(anchor_boundary_thresh=5).label_and_sample_anchors([anchors], [(30, 30)], [gt])
    assert labels[0].tolist() == [1, 1, -1]  # anchor 0 (IoU 100/130) now counts
    labels, _ = _rpn().label_and_sample_anchors([anchors], [(30, 30)], [gt])
    assert labels[0].tolist() == [1, 1, 0]  # -1 keeps every anchor


def test_sampling_caps_the_anchors_per_image():
    g = torch.Generator().manual_seed(0)
    xy = torch.randint(0, 3, (200, 2), generator=g).float()
    anchors = torch.cat([xy, xy + 10], dim=1)  # all overlap the GT a lot
    far = torch.tensor([[50.0, 50.0, 60.0, 60.0]]).expand(100, 4)
    labels, _ = _rpn(batch_size_per_image=8).label_and_sample_anchors(
        [torch.cat([anchors, far])], [(100, 100)], [_GT]
    )
    assert (labels[0] == 1).sum() == 4 and (labels[0] == 0).sum() == 4
    assert (labels[0] == -1).sum() == 300 - 8


def test_losses_match_a_direct_formula():
    rpn = _rpn()
    labels, matched = rpn.label_and_sample_anchors([_ANCHORS], [(40, 40)], [_GT])
    logits = torch.tensor([[2.0, -1.0, 0.3, 0.5, -0.7, -2.0]], requires_grad=True)
    deltas = torch.tensor(
        [[[0.1, 0.0, 0.0, -0.2], [0.0, 0.0, 0.0, 0.0], [9.0, 9, 9, 9], [1, 1, 1, 1],
          [9, 9, 9, 9], [2, 2, 2, 2]]],
        requires_grad=True,
    )  # fmt: skip
    losses = rpn.losses([_ANCHORS], [logits], labels, [deltas], matched)

    # Objectness: BCE over the 4 labelled anchors (2 positive, 2 negative), summed / 256.
    def bce(x, y):
        return -(
            y * math.log(1 / (1 + math.exp(-x))) + (1 - y) * math.log(1 - 1 / (1 + math.exp(-x)))
        )

    expected_cls = (bce(2.0, 1) + bce(-1.0, 1) + bce(0.5, 0) + bce(-2.0, 0)) / 256
    # Regression targets by hand: anchor 0 -> (0, 0, 0, 0); anchor 1 (centre (5, 6), 10x12)
    # -> (0, (5 - 6) / 12, 0, log(10 / 12)). L1 over the positives, summed / 256.
    target1 = [0.0, -1.0 / 12, 0.0, math.log(10.0 / 12.0)]
    gt_deltas = rpn.box2box_transform.get_deltas(_ANCHORS[:2], _GT.expand(2, 4))
    torch.testing.assert_close(gt_deltas[1], torch.tensor(target1))
    expected_loc = (0.1 + 0.2 + sum(abs(t) for t in target1)) / 256
    torch.testing.assert_close(
        losses["loss_rpn_cls"], torch.tensor(expected_cls, dtype=torch.float32)
    )
    torch.testing.assert_close(
        losses["loss_rpn_loc"], torch.tensor(expected_loc, dtype=torch.float32)
    )

    sum(losses.values()).backward()
    # Unlabelled anchors get no gradient; only positives drive the regression.
    assert logits.grad[0, 2] == 0 and logits.grad[0, 4] == 0 and logits.grad[0, 0] != 0
    assert (deltas.grad[0, 2:] == 0).all() and (deltas.grad[0, 0] != 0).any()

    weighted = _rpn(loss_weight={"loss_rpn_cls": 2.0, "loss_rpn_loc": 0.5}).losses(
        [_ANCHORS], [logits], labels, [deltas], matched
    )
    torch.testing.assert_close(weighted["loss_rpn_cls"], 2.0 * losses["loss_rpn_cls"])
    torch.testing.assert_close(weighted["loss_rpn_loc"], 0.5 * losses["loss_rpn_loc"])


def test_losses_log_anchor_counts_in_a_training_storage():
    rpn = _rpn()
    labels, matched = rpn.label_and_sample_anchors([_ANCHORS], [(40, 40)], [_GT])
    with EventStorage() as storage:
        rpn.losses([_ANCHORS], [torch.zeros(1, 6)], labels, [torch.zeros(1, 6, 4)], matched)
        assert storage.latest()["rpn/num_pos_anchors"][0] == 2
        assert storage.latest()["rpn/num_neg_anchors"][0] == 2


def _two_level_case():
    level0 = torch.tensor(
        [
            [0.0, 0.0, 10.0, 10.0],  # logit 5
            [0.0, 0.0, 10.0, 9.5],  # logit 4: IoU 0.95 with the first -> suppressed
            [12.0, 12.0, 30.0, 30.0],  # logit 3: clipped to (12, 12, 20, 20)
            [1.0, 1.0, 5.0, 5.0],  # logit 1: beyond pre_nms_topk = 3
        ]
    )
    level1 = torch.tensor(
        [
            [0.0, 0.0, 10.0, 10.0],  # logit 4.5: same box, other level -> kept
            [5.0, 5.0, 5.0, 15.0],  # logit 6: zero width -> dropped
            [-5.0, -5.0, -1.0, -1.0],  # logit 2: clipped to zero size -> dropped
        ]
    )
    boxes = [level0[None], level1[None]]
    logits = [torch.tensor([[5.0, 4.0, 3.0, 1.0]]), torch.tensor([[4.5, 6.0, 2.0]])]
    return boxes, logits


def test_find_top_proposals_hand_built():
    boxes, logits = _two_level_case()
    (out,) = find_top_rpn_proposals(boxes, logits, [(20, 20)], 0.7, 3, 10)
    expected = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10], [12, 12, 20, 20]])
    torch.testing.assert_close(out["proposal_boxes"], expected)
    torch.testing.assert_close(out["objectness_logits"], torch.tensor([5.0, 4.5, 3.0]))
    # post-NMS top-k is per image, over all levels.
    (top2,) = find_top_rpn_proposals(boxes, logits, [(20, 20)], 0.7, 3, 2)
    torch.testing.assert_close(top2["objectness_logits"], torch.tensor([5.0, 4.5]))
    # pre-NMS top-k 4 lets the fourth level-0 box in.
    (all4,) = find_top_rpn_proposals(boxes, logits, [(20, 20)], 0.7, 4, 10)
    torch.testing.assert_close(all4["objectness_logits"], torch.tensor([5.0, 4.5, 3.0, 1.0]))
    # min_box_size drops sides <= 8 (the clipped 8x8 box and the 4x4 box).
    (big,) = find_top_rpn_proposals(boxes, logits, [(20, 20)], 0.7, 4, 10, min_box_size=8)
    torch.testing.assert_close(big["objectness_logits"], torch.tensor([5.0, 4.5]))


def test_find_top_proposals_non_finite():
    boxes, logits = _two_level_case()
    boxes[0][0, 0, 2] = float("nan")
    (out,) = find_top_rpn_proposals(boxes, logits, [(20, 20)], 0.7, 3, 10)
    torch.testing.assert_close(out["objectness_logits"], torch.tensor([4.5, 4.0, 3.0]))
    with pytest.raises(FloatingPointError, match="diverged"):
        find_top_rpn_proposals(boxes, logits, [(20, 20)], 0.7, 3, 10, training=True)


class _FixedHead(nn.Module):
    """Returns preset outputs, to check how the RPN flattens them against its anchors."""

    def __init__(self, logits, deltas):
        super().__init__()
        self.logits, self.deltas = logits, deltas

    def forward(self, features):
        return self.logits, self.deltas


def test_forward_flattens_head_outputs_in_anchor_order():
    # Level p3 (stride 8), 2x3 cells, A = 2 anchors (sizes 8 and 16).
    gen = DefaultAnchorGenerator(sizes=[[8, 16]], aspect_ratios=[[1.0]], strides=[8])
    logits = torch.full((1, 2, 2, 3), -5.0)
    logits[0, 1, 1, 2] = 5.0  # anchor a = 1 (size 16) at row 1, column 2
    deltas = torch.zeros(1, 2 * 4, 2, 3)
    deltas[0, 4:8, 1, 2] = torch.tensor([0.25, 0.0, math.log(0.5), 0.0])  # anchor a = 1
    rpn = _rpn(in_features=["p3"], head=_FixedHead([logits], [deltas]), anchor_generator=gen)
    rpn.eval()
    proposals, losses = rpn([(16, 24)], {"p3": torch.zeros(1, 4, 2, 3)})
    assert losses == {}
    # The anchor (8, 0, 24, 16): centre (16, 8), 16x16; dx = 0.25 moves the centre by 4 and
    # dw = log 0.5 halves the width -> (16, 0, 24, 16). Any other flattening order would
    # pair the top logit with another anchor or other deltas.
    torch.testing.assert_close(proposals[0]["proposal_boxes"][0], torch.tensor([16.0, 0, 24, 16]))
    torch.testing.assert_close(proposals[0]["objectness_logits"][0], torch.tensor(5.0))


def _cfg():
    cfg = get_cfg()
    cfg.MODEL.RPN.IN_FEATURES = ["p2", "p3"]
    cfg.MODEL.ANCHOR_GENERATOR.SIZES = [[8], [16]]
    cfg.MODEL.RPN.PRE_NMS_TOPK_TRAIN = 50
    cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN = 20
    cfg.MODEL.RPN.PRE_NMS_TOPK_TEST = 40
    cfg.MODEL.RPN.POST_NMS_TOPK_TEST = 10
    return cfg


def test_build_from_config_and_train_forward():
    assert "RPN" in {name for name, _ in PROPOSAL_GENERATOR_REGISTRY}
    shapes = {"p2": ShapeSpec(channels=8, stride=4), "p3": ShapeSpec(channels=8, stride=8)}
    torch.manual_seed(0)
    rpn = build_proposal_generator(_cfg(), shapes, "RPN")
    assert isinstance(rpn, RPN) and isinstance(rpn.rpn_head, StandardRPNHead)
    assert rpn.pre_nms_topk == {True: 50, False: 40}
    features = {"p2": torch.randn(2, 8, 16, 16), "p3": torch.randn(2, 8, 8, 8)}
    gt = [
        Instances((64, 64), gt_boxes=Boxes(torch.tensor([[4.0, 4.0, 30.0, 20.0]]))),
        Instances((60, 50), gt_boxes=Boxes(torch.zeros(0, 4))),
    ]
    rpn.train()
    proposals, losses = rpn([(64, 64), (60, 50)], features, gt)
    assert set(losses) == {"loss_rpn_cls", "loss_rpn_loc"}
    # Fresh head: logits ~0, so the objectness loss is ~log 2 per sampled anchor; every
    # anchor of image 2 is negative and 256 are sampled, image 1 samples up to 256.
    assert abs(losses["loss_rpn_cls"].item() - math.log(2.0)) < 0.05
    sum(losses.values()).backward()
    assert rpn.rpn_head.anchor_deltas.weight.grad.abs().sum() > 0
    assert all(len(p["proposal_boxes"]) <= 20 for p in proposals)
    assert not proposals[0]["proposal_boxes"].requires_grad
    assert proposals[1]["proposal_boxes"][:, 2].max() <= 50  # clipped to the image width
    with pytest.raises(ValueError, match="gt_instances"):
        rpn([(64, 64), (60, 50)], features)
    rpn.eval()
    proposals, losses = rpn([(64, 64), (60, 50)], features)
    assert losses == {} and all(len(p["proposal_boxes"]) <= 10 for p in proposals)
    scores = proposals[0]["objectness_logits"]
    assert torch.equal(scores, scores.sort(descending=True).values)


def test_standard_head_shapes_and_config_errors():
    head = StandardRPNHead(in_channels=8, num_anchors=3, conv_dims=[16, 16])
    logits, deltas = head([torch.randn(1, 8, 5, 7), torch.randn(1, 8, 3, 4)])
    assert [tuple(x.shape) for x in logits] == [(1, 3, 5, 7), (1, 3, 3, 4)]
    assert [tuple(x.shape) for x in deltas] == [(1, 12, 5, 7), (1, 12, 3, 4)]
    # Detectron2's parameter names, so its RPN weights load by name.
    assert set(head.state_dict()) == {
        "conv.conv0.weight", "conv.conv0.bias", "conv.conv1.weight", "conv.conv1.bias",
        "objectness_logits.weight", "objectness_logits.bias",
        "anchor_deltas.weight", "anchor_deltas.bias",
    }  # fmt: skip
    single = StandardRPNHead(in_channels=8, num_anchors=3)
    assert {k for k in single.state_dict() if k.startswith("conv.")} == {
        "conv.weight",
        "conv.bias",
    }
    # The shared conv is followed by a ReLU: zero weights and a negative bias give zeros,
    # so the 1x1 outputs are their biases.
    with torch.no_grad():
        single.conv.weight.zero_()
        single.conv.bias.fill_(-1.0)
        single.objectness_logits.bias.fill_(0.25)
    logits, _ = single([torch.randn(1, 8, 2, 2)])
    torch.testing.assert_close(logits[0], torch.full((1, 3, 2, 2), 0.25))
    with pytest.raises(ValueError, match="IN_FEATURES"):
        RPN(_cfg(), {"p2": ShapeSpec(channels=8, stride=4)})


def test_giou_loss_type_runs_through_the_rpn():
    rpn = _rpn(box_reg_loss_type="giou")
    labels, matched = rpn.label_and_sample_anchors([_ANCHORS], [(40, 40)], [_GT])
    exact = rpn.box2box_transform.get_deltas(_ANCHORS, _GT.expand(6, 4))[None]
    losses = rpn.losses([_ANCHORS], [torch.zeros(1, 6)], labels, [exact], matched)
    assert abs(losses["loss_rpn_loc"].item()) < 1e-6
    assert losses["loss_rpn_cls"].item() > 0
