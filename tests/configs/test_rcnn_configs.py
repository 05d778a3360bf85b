"""The COCO Mask R-CNN and Faster R-CNN configs load, build, and state Detectron2's recipe."""

import os

import pytest
import torch

from panoptic2.config import load_config
from panoptic2.modeling import META_ARCH_REGISTRY

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# name -> (mask, depth, steps, max_iter), from Detectron2's configs/COCO-InstanceSegmentation
# and configs/COCO-Detection files of the same name.
RECIPES = {
    "mask_rcnn_R_50_FPN_1x": (True, 50, [60000, 80000], 90000),
    "mask_rcnn_R_50_FPN_3x": (True, 50, [210000, 250000], 270000),
    "mask_rcnn_R_101_FPN_3x": (True, 101, [210000, 250000], 270000),
    "faster_rcnn_R_50_FPN_1x": (False, 50, [60000, 80000], 90000),
    "faster_rcnn_R_50_FPN_3x": (False, 50, [210000, 250000], 270000),
    "faster_rcnn_R_101_FPN_3x": (False, 101, [210000, 250000], 270000),
}


def _load(name: str):
    return load_config(
        os.path.join(ROOT, "configs", "coco", f"{name}.yaml"), ["MODEL.DEVICE", "cpu"]
    )


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe(name):
    mask_on, depth, steps, max_iter = RECIPES[name]
    cfg = _load(name)
    family = "COCO-InstanceSegmentation" if mask_on else "COCO-Detection"
    with open(os.path.join(ROOT, "configs", "coco", f"{name}.yaml")) as f:
        assert f"{family}/{name}.yaml" in f.read()  # names the file it reproduces
    assert cfg.MODEL.META_ARCHITECTURE == "GeneralizedRCNN" and mask_on == cfg.MODEL.MASK_ON
    assert depth == cfg.MODEL.RESNETS.DEPTH
    assert f"detectron2://ImageNetPretrained/MSRA/R-{depth}.pkl" == cfg.MODEL.WEIGHTS
    assert cfg.MODEL.RESNETS.NORM == "FrozenBN" and cfg.MODEL.RESNETS.STRIDE_IN_1X1
    assert cfg.MODEL.BACKBONE.FREEZE_AT == 2 and cfg.INPUT.FORMAT == "BGR"
    assert cfg.MODEL.PIXEL_MEAN == [103.53, 116.28, 123.675] and cfg.MODEL.PIXEL_STD == [1, 1, 1]
    assert cfg.MODEL.ROI_HEADS.NUM_CLASSES == 80
    assert (cfg.DATASETS.TRAIN, cfg.DATASETS.TEST) == (["coco_2017_train"], ["coco_2017_val"])
    assert cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS and cfg.DATALOADER.ASPECT_RATIO_GROUPING
    assert cfg.DATALOADER.NUM_WORKERS == 4
    assert (cfg.SOLVER.OPTIMIZER, cfg.SOLVER.BASE_LR, cfg.SOLVER.IMS_PER_BATCH) == ("SGD", 0.02, 16)
    assert (cfg.SOLVER.MOMENTUM, cfg.SOLVER.WEIGHT_DECAY, cfg.SOLVER.WEIGHT_DECAY_NORM) == (
        0.9,
        0.0001,
        0.0,
    )
    assert (steps, max_iter) == (cfg.SOLVER.STEPS, cfg.SOLVER.MAX_ITER)
    assert cfg.SOLVER.LR_SCHEDULER_NAME == "WarmupMultiStepLR" and cfg.SOLVER.GAMMA == 0.1
    assert (cfg.SOLVER.WARMUP_ITERS, cfg.SOLVER.WARMUP_FACTOR) == (1000, 0.001)
    assert cfg.INPUT.MIN_SIZE_TRAIN == [640, 672, 704, 736, 768, 800]
    assert cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING == "choice"
    assert (cfg.INPUT.MAX_SIZE_TRAIN, cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST) == (
        1333,
        800,
        1333,
    )
    rpn = cfg.MODEL.RPN
    assert (rpn.PRE_NMS_TOPK_TRAIN, rpn.PRE_NMS_TOPK_TEST) == (2000, 1000)
    assert (rpn.POST_NMS_TOPK_TRAIN, rpn.POST_NMS_TOPK_TEST) == (1000, 1000)
    assert (cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST, cfg.MODEL.ROI_HEADS.NMS_THRESH_TEST) == (
        0.05,
        0.5,
    )
    assert cfg.TEST.DETECTIONS_PER_IMAGE == 100


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_builds_on_meta_device(name):
    cfg = _load(name)
    with torch.device("meta"):  # allocates nothing, so the R-101 model is cheap
        model = META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE)(cfg)
    assert (model.roi_heads.mask_head is not None) == cfg.MODEL.MASK_ON
    assert model.roi_heads.box_predictor.cls_score.out_features == 81
    assert model.backbone.size_divisibility == 32
    assert len(model.label_space.thing_ids) == 80  # coco_2017_val's metadata
