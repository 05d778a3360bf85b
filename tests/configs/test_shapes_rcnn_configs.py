"""The shapes Mask R-CNN / Faster R-CNN configs on instance-only data: they load, build, name
the instance datasets and DetectionMapper, and (slow) train and evaluate end to end."""

import os

import pytest
import torch

from panoptic2.config import load_config
from panoptic2.data import MetadataCatalog
from panoptic2.engine import DefaultTrainer
from panoptic2.modeling import META_ARCH_REGISTRY
from panoptic2.modeling.meta_arch.rcnn import GeneralizedRCNN

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHAPES = {
    "configs/shapes/mask_rcnn_R18_FPN.yaml": True,
    "configs/shapes/faster_rcnn_R18_FPN.yaml": False,
}


def _load(path: str, *overrides: str):
    return load_config(os.path.join(ROOT, path), ["MODEL.DEVICE", "cpu", *overrides])


def test_base_config_maps_instance_annotations():
    cfg = _load("configs/Base-RCNN-FPN.yaml")
    assert cfg.INPUT.DATASET_MAPPER_NAME == "DetectionMapper"
    assert cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS


@pytest.mark.parametrize("path, mask_on", SHAPES.items())
def test_shapes_config_builds_on_its_instance_datasets(path, mask_on):
    cfg = _load(path)
    assert cfg.MODEL.MASK_ON is mask_on
    assert (cfg.DATASETS.TRAIN, cfg.DATASETS.TEST) == (
        ["shapes_instances_train"],
        ["shapes_instances_val"],
    )
    assert cfg.INPUT.DATASET_MAPPER_NAME == "DetectionMapper"
    meta = MetadataCatalog.get(cfg.DATASETS.TEST[0])
    assert meta.evaluators == ["COCOEvaluator"]
    assert len(meta.thing_ids) == cfg.MODEL.ROI_HEADS.NUM_CLASSES
    with torch.device("meta"):  # allocates nothing
        model = META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE)(cfg)
    assert type(model) is GeneralizedRCNN
    assert (model.roi_heads.mask_head is not None) is mask_on
    assert model.label_space.thing_ids == (1, 2, 3)


def _train(path: str, tmp_path, iters: int):
    cfg = _load(
        path,
        "OUTPUT_DIR",
        str(tmp_path),
        "SOLVER.MAX_ITER",
        str(iters),
        "SOLVER.IMS_PER_BATCH",
        "2",
        "SOLVER.WARMUP_ITERS",
        "0",
        "SOLVER.BASE_LR",
        "0.002",
        "SOLVER.CHECKPOINT_PERIOD",
        "1000",
        "TEST.EVAL_PERIOD",
        "0",
        "TEST.MAX_IMAGES",
        "2",
        "DATALOADER.NUM_WORKERS",
        "0",
    )
    trainer = DefaultTrainer(cfg)
    trainer.resume_or_load(resume=False)
    results = trainer.train()
    losses = [v for v, _ in trainer.storage.history("total_loss").values()]
    assert len(losses) == iters
    return losses, results


@pytest.mark.slow
def test_mask_rcnn_trains_and_reports_box_and_mask_ap(tmp_path):
    losses, results = _train("configs/shapes/mask_rcnn_R18_FPN.yaml", tmp_path, 10)
    first, last = sum(losses[:3]) / 3, sum(losses[-5:]) / 5
    assert last < 0.8 * first, losses
    assert set(results) - {"subset"} == {"bbox", "segm"}  # "subset": TEST.MAX_IMAGES
    for task in ("bbox", "segm"):
        assert {"AP", "AP50", "AP75", "AP-disk", "AP-square", "AP-triangle"} <= set(results[task])
        assert 0.0 <= results[task]["AP"] <= 100.0


@pytest.mark.slow
def test_faster_rcnn_trains_on_boxes_and_reports_box_ap_only(tmp_path):
    losses, results = _train("configs/shapes/faster_rcnn_R18_FPN.yaml", tmp_path, 4)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert set(results) - {"subset"} == {"bbox"} and 0.0 <= results["bbox"]["AP"] <= 100.0
