"""Tests of SemSegEvaluator: a hand-computed confusion matrix, panoptic and VOC ground truth."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from panoptic2.config import get_cfg
from panoptic2.data import DatasetCatalog, MetadataCatalog
from panoptic2.data.datasets import register_coco_panoptic
from panoptic2.data.datasets.metadata import get_voc_metadata
from panoptic2.data.datasets.shapes import generate_shapes, shapes_metadata
from panoptic2.data.panoptic_label import read_panoptic_label
from panoptic2.evaluation import EVALUATOR_REGISTRY
from panoptic2.evaluation.sem_seg_evaluation import SemSegEvaluator, semantic_metrics


def one_hot(labels: np.ndarray, num_classes: int) -> torch.Tensor:
    """(C, H, W) scores whose argmax is ``labels``."""
    return (
        torch.nn.functional.one_hot(torch.from_numpy(labels), num_classes).permute(2, 0, 1).float()
    )


@pytest.fixture
def metadata_only():
    names = []

    def make(**fields):
        name = f"semseg_test_{len(names)}"
        MetadataCatalog.get(name).set(**fields)
        names.append(name)
        return name

    yield make
    for name in names:
        MetadataCatalog.remove(name)


def test_hand_computed_confusion_matrix(tmp_path, metadata_only):
    gt = np.array([[0, 0, 1, 1], [2, 2, 255, 1]], dtype=np.uint8)
    pred = np.array([[0, 1, 1, 1], [2, 0, 0, 2]])
    Image.fromarray(gt).save(tmp_path / "gt.png")
    name = metadata_only(num_classes=3, ignore_label=255, classes=["a", "b", "c"])
    evaluator = EVALUATOR_REGISTRY.get("SemSegEvaluator")(get_cfg(), name, None)
    inp = {"image_id": 1, "file_name": "x.jpg", "height": 2, "width": 4}
    evaluator.process(
        [{**inp, "sem_seg_file_name": str(tmp_path / "gt.png")}], [{"sem_seg": one_hot(pred, 3)}]
    )
    res = evaluator.evaluate()["sem_seg"]
    # By hand, the 7 valid pixels (gt -> pred): a->a, a->b, b->b, b->b, c->c, c->a, b->c.
    # a: tp 1, gt 2, pred 2 -> IoU 1/3, ACC 1/2;  b: tp 2, gt 3, pred 3 -> IoU 2/4, ACC 2/3;
    # c: tp 1, gt 2, pred 2 -> IoU 1/3, ACC 1/2.
    assert res["IoU-a"] == pytest.approx(100 / 3)
    assert res["IoU-b"] == pytest.approx(50.0)
    assert res["IoU-c"] == pytest.approx(100 / 3)
    assert res["mIoU"] == pytest.approx(100 * (1 / 3 + 1 / 2 + 1 / 3) / 3)
    assert res["fwIoU"] == pytest.approx(100 * (2 / 7 / 3 + 3 / 7 / 2 + 2 / 7 / 3))
    assert res["mACC"] == pytest.approx(100 * (1 / 2 + 2 / 3 + 1 / 2) / 3)
    assert res["pACC"] == pytest.approx(100 * 4 / 7)
    assert res["ACC-b"] == pytest.approx(200 / 3)


def test_classes_without_ground_truth_are_not_averaged():
    confusion = np.array([[3, 1, 0], [0, 0, 0], [0, 2, 2]])
    m = semantic_metrics(confusion)
    assert np.isnan(m["iou"][1]) and m["mIoU"] == pytest.approx((3 / 4 + 2 / 4) / 2)


def test_errors_name_the_image(tmp_path, metadata_only):
    gt = np.array([[0, 7]], dtype=np.uint8)
    Image.fromarray(gt).save(tmp_path / "gt.png")
    name = metadata_only(num_classes=3, ignore_label=255, classes=["a", "b", "c"])
    inp = {
        "image_id": "im9",
        "file_name": "im9.jpg",
        "height": 1,
        "width": 2,
        "sem_seg_file_name": str(tmp_path / "gt.png"),
    }
    evaluator = SemSegEvaluator(get_cfg(), name)
    with pytest.raises(ValueError, match=r"'im9'.*labels \[7\] are outside"):
        evaluator.process([inp], [{"sem_seg": one_hot(np.array([[0, 1]]), 3)}])
    with pytest.raises(ValueError, match=r"'im9'.*\(C=3, H, W\)"):
        evaluator.process([inp], [{"sem_seg": torch.zeros(4, 1, 2)}])
    with pytest.raises(KeyError, match="no 'sem_seg'"):
        evaluator.process([inp], [{}])


@pytest.fixture(scope="module")
def shapes_panoptic(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes_coco_semseg")
    generate_shapes(str(root), "coco", num_train=0, num_val=3, image_size=(64, 80))
    name = "semseg_test_shapes_panoptic"
    ann = root / "annotations"
    register_coco_panoptic(
        name,
        shapes_metadata(),
        str(root / "val2017"),
        str(ann / "panoptic_val2017"),
        str(ann / "panoptic_val2017.json"),
    )
    yield name, DatasetCatalog.get(name)
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def test_panoptic_ground_truth(shapes_panoptic):
    name, dicts = shapes_panoptic
    evaluator = SemSegEvaluator(get_cfg(), name)
    gts, preds = [], []
    for i, d in enumerate(dicts):
        sem = (
            read_panoptic_label(d, (64, 80), label_divisor=256, ignore_label=0, thing_ids=[1, 2, 3])
            // 256
        )
        pred = sem.astype(np.int64).copy()
        pred[(np.arange(64) + i) % 5 == 0, :] = 4  # some rows predicted as class 4
        gts.append(sem)
        preds.append(pred)
        evaluator.process([d], [{"sem_seg": one_hot(pred, 7)}])
    res = evaluator.evaluate()["sem_seg"]
    gt, pred = np.concatenate([g.ravel() for g in gts]), np.concatenate([p.ravel() for p in preds])
    valid = gt != 0  # void of the COCO label space
    ious = []
    for c in range(1, 7):  # independent per-class count
        inter = np.sum((gt == c) & (pred == c) & valid)
        union = np.sum(((gt == c) | (pred == c)) & valid)
        if np.sum((gt == c) & valid):
            ious.append(inter / union)
            assert res[f"IoU-{MetadataCatalog.get(name).classes[c]}"] == pytest.approx(
                100 * inter / union
            )
    assert res["mIoU"] == pytest.approx(100 * np.mean(ious))
    assert res["pACC"] == pytest.approx(100 * np.mean(gt[valid] == pred[valid]))
    assert "IoU-void" not in res


def test_voc_ground_truth_as_prediction(tmp_path):
    generate_shapes(str(tmp_path), "voc", num_train=0, num_val=2, image_size=(48, 64))
    from panoptic2.data.datasets.pascal_voc import load_voc_sem_seg

    name = "semseg_test_voc"
    MetadataCatalog.get(name).set(**get_voc_metadata())
    try:
        dicts = load_voc_sem_seg(str(tmp_path / "VOCdevkit" / "VOC2012"), "val", dataset_name=name)
        evaluator = SemSegEvaluator(get_cfg(), name)
        for d in dicts:
            gt = np.asarray(Image.open(d["sem_seg_file_name"])).astype(np.int64)
            evaluator.process([d], [{"sem_seg": one_hot(np.where(gt == 255, 0, gt), 21)}])
        res = evaluator.evaluate()["sem_seg"]
        assert res["mIoU"] == pytest.approx(100.0) and res["pACC"] == pytest.approx(100.0)
        assert "IoU-background" in res
    finally:
        MetadataCatalog.remove(name)
