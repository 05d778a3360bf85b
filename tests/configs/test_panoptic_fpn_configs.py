"""Every Panoptic FPN config loads, builds, and states its recipe's values."""

import glob
import os

import pytest
import torch

import panoptic2.data.datasets  # noqa: F401  (registers the builtin datasets' metadata)
import panoptic2.modeling.backbone.fpn  # noqa: F401  (registers build_resnet_fpn_backbone)
import panoptic2.modeling.heads.semantic_fpn  # noqa: F401  (registers SemSegFPNHead)
import panoptic2.modeling.meta_arch.panoptic_fpn  # noqa: F401  (registers PanopticFPN)
import panoptic2.modeling.proposal_generator.rpn  # noqa: F401  (registers RPN)
import panoptic2.modeling.roi_heads.roi_heads  # noqa: F401  (registers StandardROIHeads)
from panoptic2.config import load_config
from panoptic2.data import MetadataCatalog
from panoptic2.modeling import META_ARCH_REGISTRY
from panoptic2.modeling.meta_arch.panoptic_fpn import PanopticFPN

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = sorted(
    os.path.relpath(p, ROOT)
    for pattern in ("configs/*/panoptic_fpn_*.yaml", "configs/Base-RCNN-FPN.yaml")
    for p in glob.glob(os.path.join(ROOT, pattern))
)


def _load(path: str):
    return load_config(os.path.join(ROOT, path), ["MODEL.DEVICE", "cpu"])


def test_all_expected_configs_exist():
    names = {os.path.basename(p) for p in CONFIGS}
    assert {
        "Base-RCNN-FPN.yaml",
        "panoptic_fpn_R_50_1x.yaml",
        "panoptic_fpn_R_50_3x.yaml",
        "panoptic_fpn_R_101_3x.yaml",
        "panoptic_fpn_R18_1x.yaml",
    } <= names


@pytest.mark.parametrize("path", CONFIGS)
def test_config_builds_on_meta_device(path):
    cfg = _load(path)
    # Building on the meta device allocates nothing, so the R-101 model is cheap.
    with torch.device("meta"):
        model = META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE)(cfg)
    assert (
        model.roi_heads.box_predictor.cls_score.out_features == cfg.MODEL.ROI_HEADS.NUM_CLASSES + 1
    )
    assert model.roi_heads.mask_head is not None
    assert model.backbone.size_divisibility == 32
    if isinstance(model, PanopticFPN):
        meta = MetadataCatalog.get(cfg.DATASETS.TEST[0])
        assert len(meta.thing_ids) == cfg.MODEL.ROI_HEADS.NUM_CLASSES
        assert meta.sem_seg_num_classes == cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES
        assert meta.sem_seg_ignore_label == cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE
        assert cfg.INPUT.DATASET_MAPPER_NAME == "PanopticFPNMapper"
        assert set(meta.evaluators) == {"COCOPanopticEvaluator", "SemSegEvaluator", "COCOEvaluator"}


@pytest.mark.parametrize(
    "name, depth, steps, max_iter",
    [
        ("panoptic_fpn_R_50_1x", 50, [60000, 80000], 90000),
        ("panoptic_fpn_R_50_3x", 50, [210000, 250000], 270000),
        ("panoptic_fpn_R_101_3x", 101, [210000, 250000], 270000),
    ],
)
def test_coco_recipe(name, depth, steps, max_iter):
    cfg = _load(f"configs/coco/{name}.yaml")
    assert cfg.MODEL.META_ARCHITECTURE == "PanopticFPN" and cfg.MODEL.MASK_ON
    assert depth == cfg.MODEL.RESNETS.DEPTH
    assert cfg.MODEL.RESNETS.NORM == "FrozenBN" and cfg.MODEL.RESNETS.STRIDE_IN_1X1
    assert cfg.MODEL.BACKBONE.FREEZE_AT == 2
    assert f"detectron2://ImageNetPretrained/MSRA/R-{depth}.pkl" == cfg.MODEL.WEIGHTS
    assert cfg.DATASETS.TRAIN == ["coco_2017_train_panoptic_separated"]
    assert cfg.DATASETS.TEST == ["coco_2017_val_panoptic_separated"]
    assert (cfg.SOLVER.OPTIMIZER, cfg.SOLVER.BASE_LR, cfg.SOLVER.IMS_PER_BATCH) == ("SGD", 0.02, 16)
    assert (steps, max_iter) == (cfg.SOLVER.STEPS, cfg.SOLVER.MAX_ITER)
    assert cfg.SOLVER.LR_SCHEDULER_NAME == "WarmupMultiStepLR"
    assert (cfg.SOLVER.WARMUP_ITERS, cfg.SOLVER.WARMUP_FACTOR) == (1000, 0.001)
    assert cfg.INPUT.MIN_SIZE_TRAIN == [640, 672, 704, 736, 768, 800]
    assert (cfg.INPUT.MAX_SIZE_TRAIN, cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST) == (
        1333,
        800,
        1333,
    )
    assert cfg.INPUT.FORMAT == "BGR"
    assert (cfg.MODEL.ROI_HEADS.NUM_CLASSES, cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES) == (80, 54)
    assert cfg.MODEL.SEM_SEG_HEAD.LOSS_WEIGHT == 0.5 and cfg.MODEL.SEM_SEG_HEAD.NORM == "GN"
    combine = cfg.MODEL.PANOPTIC_FPN.COMBINE
    assert (
        combine.OVERLAP_THRESH,
        combine.STUFF_AREA_LIMIT,
        combine.INSTANCES_CONFIDENCE_THRESH,
    ) == (
        0.5,
        4096,
        0.5,
    )
