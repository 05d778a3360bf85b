"""COCOEvaluator on the shapes dataset in COCO layout (instances JSON through pycocotools)."""

import contextlib
import io
import json
import os
import uuid

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from panoptic2.config import get_cfg
from panoptic2.data import DatasetCatalog, MetadataCatalog
from panoptic2.data.datasets.shapes import generate_shapes, shapes_metadata
from panoptic2.evaluation import EVALUATOR_REGISTRY
from panoptic2.evaluation.coco_evaluation import COCOEvaluator
from panoptic2.structures import Boxes, Instances


@pytest.fixture(scope="module")
def shapes_coco(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("shapes_coco"))
    generate_shapes(root, "coco", num_train=0, num_val=4, image_size=(96, 128))
    json_file = os.path.join(root, "annotations", "instances_val2017.json")
    name = f"_test_coco_eval_{uuid.uuid4().hex[:8]}"
    MetadataCatalog.get(name).set(**shapes_metadata(), json_file=json_file)
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(json_file)
    return name, coco


def _pairs(coco: COCO, drop_every: int = 0) -> list[tuple[dict, dict]]:
    """Model outputs equal to the non-crowd ground truth (optionally dropping some)."""
    to_contiguous = shapes_metadata()["thing_dataset_id_to_contiguous_id"]
    pairs = []
    k = 0
    for image_id in sorted(coco.imgs):
        img = coco.imgs[image_id]
        masks, boxes, classes = [], [], []
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=[image_id], iscrowd=False)):
            k += 1
            if drop_every and k % drop_every == 0:
                continue
            masks.append(coco.annToMask(ann).astype(bool))
            x, y, w, h = ann["bbox"]
            boxes.append([x, y, x + w, y + h])
            classes.append(to_contiguous[ann["category_id"]])
        n = len(masks)
        instances = Instances(
            (img["height"], img["width"]),
            pred_masks=torch.from_numpy(np.stack(masks))
            if n
            else torch.zeros(0, img["height"], img["width"], dtype=torch.bool),
            pred_boxes=Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)),
            pred_classes=torch.tensor(classes, dtype=torch.int64),
            scores=torch.linspace(1.0, 0.5, n) if n else torch.zeros(0),
        )
        pairs.append(({"image_id": image_id}, {"instances": instances}))
    return pairs


def _run(evaluator, pairs):
    evaluator.reset()
    for k in range(0, len(pairs), 2):
        chunk = pairs[k : k + 2]
        evaluator.process([p[0] for p in chunk], [p[1] for p in chunk])
    return evaluator.evaluate()


def test_registered():
    assert "COCOEvaluator" in EVALUATOR_REGISTRY


def test_ground_truth_gives_ap_100(shapes_coco, tmp_path):
    name, coco = shapes_coco
    res = _run(COCOEvaluator(get_cfg(), name, str(tmp_path)), _pairs(coco))
    for task in ("bbox", "segm"):
        for metric in ("AP", "AP50", "AP75"):
            assert res[task][metric] == pytest.approx(100.0), (task, metric)
        for cat in ("disk", "square", "triangle"):
            assert res[task][f"AP-{cat}"] == pytest.approx(100.0)
    assert os.path.isfile(tmp_path / "coco_instances_results.json")


def test_partial_predictions_match_direct_cocoeval(shapes_coco, tmp_path):
    name, coco = shapes_coco
    res = _run(
        COCOEvaluator(get_cfg(), name, str(tmp_path), tasks=("segm",)), _pairs(coco, drop_every=3)
    )
    assert set(res) == {"segm"}
    with open(tmp_path / "coco_instances_results.json") as f:
        dets = json.load(f)
    for d in dets:
        d.pop("bbox")
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(coco, coco.loadRes(dets), "segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert res["segm"]["AP"] == pytest.approx(100 * ev.stats[0], abs=1e-9)
    assert res["segm"]["AP50"] == pytest.approx(100 * ev.stats[1], abs=1e-9)
    assert res["segm"]["AP"] < 100.0


def test_dataset_without_json_is_converted(tmp_path):
    """Instance dicts with no COCO file: converted ground truth, predictions = GT -> 100."""
    from pycocotools import mask as mask_util

    name = f"_test_coco_dicts_{uuid.uuid4().hex[:8]}"
    rle = mask_util.encode(np.asfortranarray(np.pad(np.ones((20, 30), np.uint8), 10)))
    rle["counts"] = rle["counts"].decode("ascii")
    dicts = [
        {
            "file_name": "a.png",
            "image_id": "a",
            "height": 40,
            "width": 50,
            "annotations": [
                {
                    "bbox": [10, 10, 30, 20],
                    "bbox_mode": "XYWH_ABS",
                    "category_id": 2,
                    "segmentation": rle,
                    "iscrowd": 0,
                }
            ],
        }
    ]
    DatasetCatalog.register(name, lambda: dicts)
    MetadataCatalog.get(name).set(
        thing_classes=["x", "y"], thing_dataset_id_to_contiguous_id={7: 1, 9: 2}
    )
    mask = torch.from_numpy(mask_util.decode(rle).astype(bool))[None]
    outputs = {
        "instances": Instances(
            tuple(mask.shape[1:]),
            pred_masks=mask,
            pred_boxes=Boxes(torch.tensor([[10.0, 10.0, 40.0, 30.0]])),
            pred_classes=torch.tensor([2]),
            scores=torch.tensor([0.9]),
        )
    }
    ev = COCOEvaluator(get_cfg(), name, str(tmp_path))
    ev.reset()
    ev.process([{"image_id": "a"}], [outputs])
    res = ev.evaluate()
    assert res["bbox"]["AP"] == pytest.approx(100.0)
    assert res["segm"]["AP-y"] == pytest.approx(100.0)
    with open(tmp_path / f"{name}_coco_format.json") as f:
        assert json.load(f)["annotations"][0]["category_id"] == 9


def _box_only_outputs(coco: COCO) -> list[tuple[dict, dict]]:
    """The ground-truth boxes as predictions of a box-only model (no pred_masks field)."""
    pairs = []
    for inp, out in _pairs(coco):
        inst = out["instances"]
        inst.remove("pred_masks")
        pairs.append((inp, {"instances": inst}))
    return pairs


def test_box_only_model_gets_box_ap_only(shapes_coco, tmp_path, caplog):
    name, coco = shapes_coco
    with caplog.at_level("INFO", logger="panoptic2.evaluation.coco_evaluation"):
        res = _run(COCOEvaluator(get_cfg(), name, str(tmp_path)), _box_only_outputs(coco))
    assert set(res) == {"bbox"} and res["bbox"]["AP"] == pytest.approx(100.0)
    assert "box AP only" in caplog.text
    # The results carry the dataset's category ids (shapes: 1, 2, 3 are also contiguous; the
    # mapping itself is checked by test_results_use_dataset_category_ids).
    with open(tmp_path / "coco_instances_results.json") as f:
        assert {d["category_id"] for d in json.load(f)} <= set(coco.cats)
    # Asking for mask AP of a box-only model is an error, not a silent skip.
    with pytest.raises(ValueError, match="'segm' was asked for.*no pred_masks"):
        _run(
            COCOEvaluator(get_cfg(), name, str(tmp_path), tasks=("segm",)), _box_only_outputs(coco)
        )


def test_mask_model_without_detections_still_gets_segm(shapes_coco, tmp_path):
    name, coco = shapes_coco
    empty = [
        (
            inp,
            {
                "instances": Instances(
                    out["instances"].image_size,
                    pred_masks=torch.zeros(0, *out["instances"].image_size, dtype=torch.bool),
                    pred_boxes=Boxes(torch.zeros(0, 4)),
                    pred_classes=torch.zeros(0, dtype=torch.int64),
                    scores=torch.zeros(0),
                )
            },
        )
        for inp, out in _pairs(coco)
    ]
    res = _run(COCOEvaluator(get_cfg(), name, str(tmp_path)), empty)
    assert set(res) == {"bbox", "segm"} and res["segm"]["AP"] == 0.0


def test_results_use_dataset_category_ids_and_box_only_ground_truth(tmp_path):
    """Detectron2-style 0-based contiguous ids {7: 0, 9: 1}; box-only dicts converted."""
    name = f"_test_coco_boxes_{uuid.uuid4().hex[:8]}"
    dicts = [
        {
            "file_name": "a.png",
            "image_id": 1,
            "height": 40,
            "width": 50,
            "annotations": [
                {"bbox": [10, 10, 30, 20], "bbox_mode": "XYWH_ABS", "category_id": 1},
                {"bbox": [0, 0, 5, 5], "bbox_mode": "XYXY_ABS", "category_id": 0},
            ],
        }
    ]
    DatasetCatalog.register(name, lambda: dicts)
    MetadataCatalog.get(name).set(
        thing_classes=["x", "y"], thing_dataset_id_to_contiguous_id={7: 0, 9: 1}
    )
    try:
        outputs = {
            "instances": Instances(
                (40, 50),
                pred_boxes=Boxes(torch.tensor([[10.0, 10.0, 40.0, 30.0], [0.0, 0.0, 5.0, 5.0]])),
                pred_classes=torch.tensor([1, 0]),
                scores=torch.tensor([0.9, 0.8]),
            )
        }
        ev = COCOEvaluator(get_cfg(), name, str(tmp_path))
        ev.reset()
        ev.process([{"image_id": 1}], [outputs])
        res = ev.evaluate()
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    assert set(res) == {"bbox"}
    assert res["bbox"]["AP-x"] == pytest.approx(100.0) and res["bbox"]["AP-y"] == pytest.approx(
        100.0
    )
    with open(tmp_path / "coco_instances_results.json") as f:
        assert [(d["category_id"], d["bbox"]) for d in json.load(f)] == [
            (9, [10.0, 10.0, 30.0, 20.0]),
            (7, [0.0, 0.0, 5.0, 5.0]),
        ]
    with open(tmp_path / f"{name}_coco_format.json") as f:
        gt = json.load(f)["annotations"]
    assert [(a["category_id"], a["area"]) for a in gt] == [(9, 600.0), (7, 25.0)]
    assert all("segmentation" not in a for a in gt)
