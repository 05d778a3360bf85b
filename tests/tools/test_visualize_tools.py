"""Tests of tools/visualize_data.py and tools/visualize_json_results.py on shapes."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from panoptic2.data import DatasetCatalog, MetadataCatalog
from panoptic2.data.label_space import LabelSpace
from panoptic2.data.panoptic_label import (
    panoptic_categories,
    read_panoptic_png,
    write_panoptic_prediction,
)

REPO = Path(__file__).resolve().parents[2]
PDL = REPO / "configs" / "shapes" / "panoptic_deeplab_R18_os32.yaml"
FPN = REPO / "configs" / "shapes" / "panoptic_fpn_R18_1x.yaml"


def _tool(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


visualize_data = _tool("visualize_data")
visualize_json_results = _tool("visualize_json_results")


def test_annotation_view(tmp_path):
    assert (
        visualize_data.main(
            [
                "--config-file",
                str(PDL),
                "--source",
                "annotation",
                "--output",
                str(tmp_path),
                "--num",
                "2",
            ]
        )
        == 0
    )
    drawings = sorted(tmp_path.glob("*.png"))
    dicts = DatasetCatalog.get("shapes_panoptic_train")[:2]
    assert [p.stem for p in drawings] == sorted(Path(d["file_name"]).stem for d in dicts)
    for path in drawings:
        d = next(d for d in dicts if Path(d["file_name"]).stem == path.stem)
        drawing = cv2.imread(str(path))
        assert drawing.shape == (d["height"], d["width"], 3)
        assert not np.array_equal(drawing, cv2.imread(d["file_name"]))


@pytest.mark.parametrize("config, panels", [(PDL, 4), (FPN, 3)], ids=["deeplab", "fpn"])
def test_dataloader_view_shows_the_targets(tmp_path, config, panels):
    args = ["--config-file", str(config), "--source", "dataloader", "--output", str(tmp_path)]
    assert visualize_data.main([*args, "--num", "2", "DATALOADER.NUM_WORKERS", "0"]) == 0
    drawings = sorted(tmp_path.glob("*.png"))
    assert len(drawings) == 2
    drawing = cv2.imread(str(drawings[0]))
    # image | (instances) | semantic | (centre heatmap | offsets): the crop is 128 x 160.
    assert drawing.shape[0] == 128 and drawing.shape[1] == panels * 160


def test_offset_and_heatmap_images():
    offset = np.zeros((2, 4, 4), np.float32)
    offset[1, 0, 0] = 3.0  # dx: pointing right -> hue 0 (red)
    offset[0, 0, 1] = 3.0  # dy: pointing down -> hue 90 degrees
    rgb = visualize_data.offset_image(offset, np.ones((4, 4)))
    assert tuple(rgb[0, 0]) == (255, 0, 0)
    assert rgb[0, 1, 1] > rgb[0, 1, 0] and (rgb[1:, 1:] == 0).all()
    heat = visualize_data.heatmap_image(np.array([[0.0, 1.0]]))
    assert (heat[0, 0] < 30).all() and heat[0, 1].sum() > 500


def test_json_results_beside_ground_truth(tmp_path):
    """Ground truth written as a prediction dump draws the same picture on both sides."""
    name = "shapes_panoptic_val"
    space = LabelSpace.from_metadata(MetadataCatalog.get(name))
    folder = tmp_path / "panoptic"
    folder.mkdir()
    annotations = []
    for d in DatasetCatalog.get(name)[:2]:
        ids = read_panoptic_png(d["pan_seg_file_name"]).astype(np.int64)
        ids[ids == 0] = -1
        file_name = Path(d["pan_seg_file_name"]).name
        segments = [s for s in d["segments_info"] if not s["iscrowd"]]
        for s in d["segments_info"]:
            if s["iscrowd"]:
                ids[ids == s["id"]] = -1
        infos = write_panoptic_prediction(str(folder / file_name), ids, segments, space)
        annotations.append(
            {"image_id": d["image_id"], "file_name": file_name, "segments_info": infos}
        )
    pred = tmp_path / "panoptic.json"
    pred.write_text(
        json.dumps({"annotations": annotations, "categories": panoptic_categories(space)})
    )
    out = tmp_path / "out"
    args = ["--input", str(pred), "--dataset", name, "--output", str(out)]
    assert visualize_json_results.main(args) == 0
    drawings = sorted(out.glob("*.png"))
    assert len(drawings) == 2
    drawing = cv2.imread(str(drawings[0]))
    w = drawing.shape[1] // 2
    # Labels and jitter differ by segment id; the stuff colours agree on both sides.
    left, right = drawing[:, :w].astype(int), drawing[:, w:].astype(int)
    assert np.mean(np.abs(left - right) < 8) > 0.5
    instances = [
        {
            "image_id": annotations[0]["image_id"],
            "category_id": 1,
            "bbox": [2, 3, 20, 10],
            "score": 0.9,
        },
        {
            "image_id": annotations[0]["image_id"],
            "category_id": 1,
            "bbox": [2, 3, 20, 10],
            "score": 0.1,
        },
    ]
    results = tmp_path / "instances.json"
    results.write_text(json.dumps(instances))
    assert (
        visualize_json_results.main(
            ["--input", str(results), "--dataset", name, "--output", str(tmp_path / "i")]
        )
        == 0
    )
    assert len(list((tmp_path / "i").glob("*.png"))) == 1
