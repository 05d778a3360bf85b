"""Tests of COCOPanopticEvaluator on the shapes dataset (COCO layout).

Expected numbers come from the in-test panopticapi reference of ``test_panoptic_quality``.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict

import numpy as np
import pytest
import torch

from panoptic2.config import get_cfg
from panoptic2.data import DatasetCatalog, MetadataCatalog
from panoptic2.data.datasets import register_coco_panoptic
from panoptic2.data.datasets.shapes import generate_shapes, shapes_metadata
from panoptic2.data.panoptic_label import read_panoptic_label, read_panoptic_png
from panoptic2.engine.launch import launch
from panoptic2.evaluation import EVALUATOR_REGISTRY
from panoptic2.evaluation.coco_panoptic_evaluation import (
    PREDICTIONS_DIR,
    PREDICTIONS_JSON,
    COCOPanopticEvaluator,
)
from panoptic2.evaluation.panoptic_quality import pq_compute
from panoptic2.utils import comm

from .pq_reference import reference_image_stats, reference_results

NUM_IMAGES = 6


@pytest.fixture(scope="module")
def shapes_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes_coco")
    generate_shapes(str(root), "coco", num_train=0, num_val=NUM_IMAGES, image_size=(64, 80))
    return str(root)


def register(root: str, name: str) -> None:
    """Registers the shapes val split under ``name`` (in this process)."""
    if name in DatasetCatalog:
        return
    ann = os.path.join(root, "annotations")
    register_coco_panoptic(
        name,
        shapes_metadata(),
        os.path.join(root, "val2017"),
        os.path.join(ann, "panoptic_val2017"),
        os.path.join(ann, "panoptic_val2017.json"),
    )


@pytest.fixture(scope="module")
def dataset(shapes_root):
    name = "pq_eval_test_shapes"
    register(shapes_root, name)
    yield name, DatasetCatalog.get(name)
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def make_prediction(d: dict, index: int, perturb: bool) -> dict:
    """A model output for dataset dict ``d``: the ground truth as DeepLab2 labels, void -1,
    optionally shifted with one class changed (deterministic per image)."""
    label = read_panoptic_label(
        d, (d["height"], d["width"]), label_divisor=256, ignore_label=0, thing_ids=[1, 2, 3]
    ).astype(np.int64)
    label[label == 0] = -1
    if perturb:
        label = np.roll(label, (index % 3, 1 + index % 2), axis=(0, 1))
        things = np.unique(label[label // 256 <= 3])
        things = things[things > 0]
        if len(things):  # one instance predicted with the wrong class
            victim = things[index % len(things)]
            label[label == victim] = (victim // 256 % 3 + 1) * 256 + 200
        label[: 2 + index % 3, :5] = 4 * 256  # a stuff blob over part of the corner
    segments = [
        {"id": int(v), "category_id": int(v) // 256, "isthing": int(v) // 256 <= 3}
        for v in np.unique(label)
        if v != -1
    ]
    # Half of the outputs give segments_info, half None (categories from the ids).
    return {"panoptic_seg": (torch.from_numpy(label), segments if index % 2 else None)}


def reference(dicts, perturb):
    stats = defaultdict(lambda: [0.0, 0, 0, 0])
    for i, d in enumerate(dicts):
        gt_ids = read_panoptic_png(d["pan_seg_file_name"]).astype(np.int64)
        label = make_prediction(d, i, perturb)["panoptic_seg"][0].numpy()
        pred_segs = [
            {"id": int(v) + 1, "category_id": int(v) // 256} for v in np.unique(label) if v >= 0
        ]
        reference_image_stats(gt_ids, d["segments_info"], label + 1, pred_segs, stats=stats)
    categories = {c: {"isthing": int(c <= 3)} for c in range(1, 7)}
    return reference_results(stats, categories)


def run(evaluator, dicts, perturb, indices=None):
    evaluator.reset()
    for i in indices if indices is not None else range(len(dicts)):
        evaluator.process([dicts[i]], [make_prediction(dicts[i], i, perturb)])
    return evaluator.evaluate()


def test_ground_truth_as_prediction_is_perfect(dataset):
    name, dicts = dataset
    evaluator = EVALUATOR_REGISTRY.get("COCOPanopticEvaluator")(get_cfg(), name, None)
    assert isinstance(evaluator, COCOPanopticEvaluator)
    res = run(evaluator, dicts, perturb=False)["panoptic_seg"]
    assert set(res) == {"PQ", "SQ", "RQ", "PQ_th", "SQ_th", "RQ_th", "PQ_st", "SQ_st", "RQ_st"}
    assert all(v == pytest.approx(100.0) for v in res.values())


def test_perturbed_prediction_matches_reference(dataset, tmp_path, caplog):
    name, dicts = dataset
    evaluator = COCOPanopticEvaluator(get_cfg(), name, str(tmp_path), write_predictions=True)
    with caplog.at_level("INFO"):
        res = run(evaluator, dicts, perturb=True)["panoptic_seg"]
    expected = reference(dicts, perturb=True)
    assert 20 < res["PQ"] < 95
    for key, group in (("", "All"), ("_th", "Things"), ("_st", "Stuff")):
        for metric in ("pq", "sq", "rq"):
            assert res[metric.upper() + key] == pytest.approx(
                100 * expected[group][metric], abs=1e-7
            )
    assert "Panoptic quality" in caplog.text and "PQ" in caplog.text

    # The written COCO panoptic predictions give the same PQ through the file-based tool.
    pred_json = os.path.join(tmp_path, PREDICTIONS_JSON)
    with open(pred_json) as f:
        written = json.load(f)
    assert len(written["annotations"]) == len(dicts)
    assert {c["id"] for c in written["categories"]} == {1, 2, 3, 101, 102, 103}
    meta = MetadataCatalog.get(name)
    from_files = pq_compute(
        meta.panoptic_json,
        pred_json,
        meta.panoptic_root,
        os.path.join(tmp_path, PREDICTIONS_DIR),
        workers=1,
    )
    assert from_files["All"]["pq"] == pytest.approx(res["PQ"] / 100, abs=1e-9)
    assert from_files["Things"]["sq"] == pytest.approx(res["SQ_th"] / 100, abs=1e-9)


def test_clear_errors_name_the_image_and_dataset(dataset):
    name, dicts = dataset
    evaluator = COCOPanopticEvaluator(get_cfg(), name)
    with pytest.raises(KeyError, match="has no 'panoptic_seg'"):
        evaluator.process([dicts[0]], [{"sem_seg": None}])
    small = {"panoptic_seg": (torch.full((3, 3), -1, dtype=torch.int64), [])}
    with pytest.raises(ValueError, match=rf"image_id {dicts[0]['image_id']!r}.*{name}.*size"):
        evaluator.process([dicts[0]], [small])
    with pytest.raises(KeyError, match="no panoptic ground truth"):
        evaluator.process([{"image_id": 5, "file_name": "x.jpg"}], [small])
    with pytest.raises(ValueError, match="output_dir"):
        COCOPanopticEvaluator(get_cfg(), name, write_predictions=True)


def _distributed_worker(root: str, name: str, out_file: str) -> None:
    register(root, name)
    dicts = DatasetCatalog.get(name)
    evaluator = COCOPanopticEvaluator(get_cfg(), name)
    rank, world = comm.get_rank(), comm.get_world_size()
    res = run(evaluator, dicts, True, indices=range(rank, len(dicts), world))
    if comm.is_main_process():
        with open(out_file, "w") as f:
            json.dump(res, f)
    else:
        assert res == {}


def test_two_gloo_processes_give_the_same_numbers(dataset, shapes_root, tmp_path):
    name, dicts = dataset
    single = run(COCOPanopticEvaluator(get_cfg(), name), dicts, perturb=True)
    out_file = str(tmp_path / "dist.json")
    launch(_distributed_worker, 2, dist_url="auto", args=(shapes_root, name, out_file))
    with open(out_file) as f:
        distributed = json.load(f)
    for key, value in single["panoptic_seg"].items():
        assert distributed["panoptic_seg"][key] == pytest.approx(value, abs=1e-9)
