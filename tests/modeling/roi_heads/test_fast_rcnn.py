"""Box predictor losses and inference (panoptic2/modeling/roi_heads/fast_rcnn.py)."""

import torch
import torch.nn.functional as F

from panoptic2.modeling.box_regression import Box2BoxTransform
from panoptic2.modeling.roi_heads.fast_rcnn import (
    FastRCNNOutputLayers,
    fast_rcnn_inference_single_image,
)


def _predictor(**kwargs):
    return FastRCNNOutputLayers(
        input_size=4,
        num_classes=3,
        box2box_transform=Box2BoxTransform(weights=(10, 10, 5, 5)),
        **kwargs,
    )


def test_proposal_equal_to_gt_has_zero_box_target():
    pred = _predictor()
    gt = torch.tensor([[10.0, 10.0, 30.0, 40.0]])
    scores = torch.tensor([[0.5, 2.0, -1.0, 0.0]])
    deltas = torch.zeros(1, 12)
    deltas[0, 4:8] = torch.tensor([0.1, -0.2, 0.3, 0.4])  # class 1's deltas
    deltas[0, 0:4] = 5.0  # other classes' deltas are not penalised
    losses = pred.losses((scores, deltas), gt.clone(), torch.tensor([1]), gt)
    torch.testing.assert_close(losses["loss_cls"], F.cross_entropy(scores, torch.tensor([1])))
    # Target deltas are 0, so L1 (beta 0) = sum |deltas of class 1| / 1 sampled proposal.
    torch.testing.assert_close(losses["loss_box_reg"], torch.tensor(1.0))


def test_box_loss_normalised_by_all_samples_and_background_ignored():
    pred = _predictor(box_reg_loss_weight=2.0)
    proposals = torch.tensor([[0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 60.0, 60.0]])
    gt = torch.tensor([[1.0, 0.0, 11.0, 10.0], [0.0, 0.0, 1.0, 1.0]])
    deltas = torch.zeros(2, 12)
    deltas[1] = 7.0  # background: no box loss
    classes = torch.tensor([2, 3])
    losses = pred.losses((torch.zeros(2, 4), deltas), proposals, classes, gt)
    # Target of class 2: dx = 10 * 1 / 10 = 1, others 0 -> |0 - 1| = 1, / 2 samples, x 2.
    torch.testing.assert_close(losses["loss_box_reg"], torch.tensor(1.0))
    torch.testing.assert_close(losses["loss_cls"], torch.tensor(4.0).log())


def test_inference_threshold_nms_topk():
    proposals = torch.tensor(
        [[0.0, 0.0, 10.0, 10.0], [0.5, 0.0, 10.5, 10.0], [20.0, 20.0, 30.0, 30.0]]
    )
    boxes = proposals[:, None, :].expand(3, 2, 4).clone()
    # Columns: class 0, class 1, background.
    scores = torch.tensor([[0.9, 0.05, 0.05], [0.8, 0.15, 0.05], [0.01, 0.6, 0.39]])
    out = fast_rcnn_inference_single_image(boxes, scores, (25, 25), 0.1, 0.5, 100)
    # Box 1 of class 0 is suppressed by box 0 (IoU 0.9); class 1 keeps boxes 1 and 2
    # (box 0's class-1 score 0.05 is under the threshold). Box 2 is clipped to the image.
    assert out["pred_classes"].tolist() == [0, 1, 1]
    torch.testing.assert_close(out["scores"], torch.tensor([0.9, 0.6, 0.15]))
    torch.testing.assert_close(out["pred_boxes"][1], torch.tensor([20.0, 20.0, 25.0, 25.0]))
    top1 = fast_rcnn_inference_single_image(boxes, scores, (25, 25), 0.1, 0.5, 1)
    assert top1["scores"].tolist() == [0.8999999761581421]


def test_inference_decodes_class_specific_boxes():
    pred = _predictor(test_score_thresh=0.0)
    feats = torch.zeros(1, 4)
    with torch.no_grad():
        pred.cls_score.bias.copy_(torch.tensor([0.0, 5.0, 0.0, 0.0]))
        pred.bbox_pred.bias.zero_()
        pred.bbox_pred.bias[4] = 10.0  # class 1: dx = 1 box width
    out = pred.inference(pred(feats), [torch.tensor([[0.0, 0.0, 10.0, 10.0]])], [(100, 100)])
    best = out[0]["scores"].argmax()
    assert int(out[0]["pred_classes"][best]) == 1
    torch.testing.assert_close(out[0]["pred_boxes"][best], torch.tensor([10.0, 0.0, 20.0, 10.0]))
