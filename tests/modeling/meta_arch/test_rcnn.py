"""GeneralizedRCNN (Mask R-CNN) and detector_postprocess (panoptic2/modeling/meta_arch/rcnn.py)."""

import os

import pytest
import torch

import panoptic2.data.datasets  # noqa: F401  (registers the shapes metadata)
import panoptic2.modeling.backbone.fpn  # noqa: F401  (registers build_resnet_fpn_backbone)
import panoptic2.modeling.proposal_generator.rpn  # noqa: F401  (registers RPN)
import panoptic2.modeling.roi_heads.roi_heads  # noqa: F401  (registers StandardROIHeads)
from panoptic2.config import load_config
from panoptic2.modeling import build_model
from panoptic2.modeling.meta_arch.rcnn import GeneralizedRCNN, detector_postprocess
from panoptic2.structures import BitMasks, Boxes, Instances

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
DATASET = "shapes_panoptic_separated_val"  # thing ids 1, 2, 3; stuff 4, 5, 6


def tiny_cfg(meta_arch: str = "GeneralizedRCNN"):
    """The shapes quick-start narrowed to a few thousand FLOPs per pixel."""
    return load_config(
        os.path.join(ROOT, "configs/shapes/panoptic_fpn_R18_1x.yaml"),
        [
            "MODEL.META_ARCHITECTURE",
            meta_arch,
            "MODEL.FPN.OUT_CHANNELS",
            "32",
            "MODEL.SEM_SEG_HEAD.CONVS_DIM",
            "32",
            "MODEL.ROI_BOX_HEAD.FC_DIM",
            "32",
            "MODEL.ROI_MASK_HEAD.CONV_DIM",
            "8",
            "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE",
            "16",
            "MODEL.ROI_HEADS.SCORE_THRESH_TEST",
            "0.0",
            "MODEL.RPN.POST_NMS_TOPK_TRAIN",
            "50",
            "MODEL.RPN.POST_NMS_TOPK_TEST",
            "20",
            "MODEL.PANOPTIC_FPN.COMBINE.INSTANCES_CONFIDENCE_THRESH",
            "0.0",
        ],
    )


def tiny_inputs(train: bool = True):
    """Two 64 x 80 images with a disk-class and a triangle-class box each."""
    torch.manual_seed(0)
    inputs = []
    for i in range(2):
        masks = torch.zeros(2, 64, 80, dtype=torch.bool)
        masks[0, 8:30, 10:40] = True
        masks[1, 35 + i : 60, 45:75] = True
        d = {
            "image": torch.randint(0, 255, (3, 64, 80), dtype=torch.uint8),
            "height": 128,
            "width": 160,
            "file_name": f"img{i}.png",
            "dataset_name": DATASET,
        }
        if train:
            d["instances"] = Instances(
                (64, 80),
                gt_boxes=Boxes(torch.tensor([[10.0, 8, 40, 30], [45.0, 35 + i, 75, 60]])),
                gt_classes=torch.tensor([1, 3]),
                gt_masks=BitMasks(masks),
            )
            sem = torch.full((64, 80), 2)
            sem[masks.any(0)] = 0
            sem[:4] = 255
            d["sem_seg"] = sem
        inputs.append(d)
    return inputs


def test_detector_postprocess_scales_pastes_and_maps_classes():
    det = {
        "pred_boxes": torch.tensor([[2.0, 4.0, 10.0, 12.0]]),
        "scores": torch.tensor([0.9]),
        "pred_classes": torch.tensor([2]),
        "pred_masks": torch.ones(1, 1, 28, 28),
    }
    out = detector_postprocess(det, (40, 60), (20, 30), [1, 2, 3])
    assert isinstance(out, Instances) and out.image_size == (40, 60)
    torch.testing.assert_close(out.pred_boxes.tensor, torch.tensor([[4.0, 8.0, 20.0, 24.0]]))
    assert out.pred_classes.tolist() == [3]
    expected = torch.zeros(40, 60, dtype=torch.bool)
    expected[8:24, 4:20] = True
    assert torch.equal(out.pred_masks[0], expected)


def test_train_and_eval():
    model = build_model(tiny_cfg())
    assert type(model) is GeneralizedRCNN
    model.train()
    losses = model(tiny_inputs())
    assert set(losses) == {"loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg", "loss_mask"}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    model.eval()
    with torch.no_grad():
        outputs = model(tiny_inputs(train=False))
    assert len(outputs) == 2
    inst = outputs[0]["instances"]
    n = len(inst)
    assert inst.pred_masks.shape == (n, 128, 160) and inst.pred_masks.dtype == torch.bool
    boxes = inst.pred_boxes.tensor
    assert boxes.shape == (n, 4)
    assert set(inst.pred_classes.tolist()) <= {1, 2, 3}  # contiguous dataset ids
    assert (boxes[:, 2] <= 160).all() and (boxes[:, 3] <= 128).all()


def test_non_thing_class_is_a_clear_error():
    model = build_model(tiny_cfg())
    inputs = tiny_inputs()
    inputs[1]["instances"].gt_classes = torch.tensor([1, 5])
    with pytest.raises(ValueError, match=r"img1\.png.*shapes_panoptic_separated_val.*\[5\]"):
        model(inputs)


def test_class_count_mismatch_is_an_error():
    cfg = tiny_cfg()
    cfg.defrost()
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 4
    with pytest.raises(ValueError, match="3 thing classes but the model predicts 4.*NUM_CLASSES"):
        build_model(cfg)


def test_coco_r50_mask_rcnn_parameter_count_matches_torchvision():
    """The COCO R50-FPN config has exactly torchvision's Mask R-CNN R50-FPN parameters,
    up to two documented differences: FrozenBN (no affine parameters; torchvision built
    without weights uses trainable BN) and Detectron2's box regression without a
    background class (torchvision regresses 81 classes, we regress 80)."""
    import os

    import torchvision
    from torch import nn

    from panoptic2.config import load_config
    from panoptic2.modeling import build_model

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    cfg = load_config(
        os.path.join(repo, "configs", "coco", "panoptic_fpn_R_50_1x.yaml"),
        ["MODEL.DEVICE", "cpu", "MODEL.META_ARCHITECTURE", "GeneralizedRCNN"],
    )
    ours = sum(p.numel() for p in build_model(cfg).parameters())
    reference = torchvision.models.detection.maskrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=81
    )
    bn_affine = sum(
        p.numel()
        for m in reference.modules()
        if isinstance(m, nn.BatchNorm2d)
        for p in m.parameters()
    )
    background_box_regression = 4 * (1024 + 1)  # one more class of (dx, dy, dw, dh)
    background_mask_channel = 256 + 1  # torchvision's mask predictor has 81 channels
    expected = (
        sum(p.numel() for p in reference.parameters())
        - bn_affine
        - background_box_regression
        - background_mask_channel
    )
    assert ours == expected


def _boxes_only(inputs):
    for d in inputs:
        d["instances"].remove("gt_masks")
    return inputs


def test_faster_rcnn_trains_on_boxes_and_predicts_no_masks():
    cfg = tiny_cfg()
    cfg.defrost()
    cfg.MODEL.MASK_ON = False
    model = build_model(cfg)
    assert model.roi_heads.mask_head is None
    losses = model(_boxes_only(tiny_inputs()))
    assert set(losses) == {"loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg"}
    sum(losses.values()).backward()
    model.eval()
    with torch.no_grad():
        inst = model(tiny_inputs(train=False))[0]["instances"]
    assert not inst.has("pred_masks") and inst.pred_boxes.tensor.shape[1] == 4


def test_mask_head_without_gt_masks_is_a_clear_error():
    model = build_model(tiny_cfg())
    with pytest.raises(ValueError, match=r"img0\.png.*no instance masks.*MODEL\.MASK_ON False"):
        model(_boxes_only(tiny_inputs()))
