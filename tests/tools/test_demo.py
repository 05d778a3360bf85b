"""Tests of tools/demo.py: image overlays, an annotated video and the JSON predictions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from panoptic2.checkpoint import Checkpointer
from panoptic2.config import load_config
from panoptic2.data import DatasetCatalog
from panoptic2.data.panoptic_label import read_panoptic_png
from panoptic2.modeling import build_model

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "shapes" / "panoptic_deeplab_R18_os32.yaml"


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo_weights")
    cfg = load_config(str(CONFIG), ["MODEL.DEVICE", "cpu"])
    torch.manual_seed(0)
    Checkpointer(build_model(cfg), str(out)).save("model")
    return out / "model.pth"


def _demo(*args, cwd=REPO):
    cmd = [sys.executable, str(REPO / "tools" / "demo.py"), "--config-file", str(CONFIG), *args]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_three_images_and_their_predictions(tmp_path, weights):
    images = tmp_path / "images"
    images.mkdir()
    dicts = DatasetCatalog.get("shapes_panoptic_val")[:3]
    for d in dicts:
        cv2.imwrite(str(images / Path(d["file_name"]).name), cv2.imread(d["file_name"]))
    out = tmp_path / "out"
    _demo(
        "--input",
        str(images / "*.jpg"),
        "--output",
        str(out),
        "--output-json",
        "DATASETS.TRAIN",
        "[]",
        "DATASETS.TEST",
        "[]",  # the label space comes from the checkpoint
        "MODEL.WEIGHTS",
        str(weights),
    )
    overlays = sorted(out.glob("*.png"))
    assert [p.stem for p in overlays] == sorted(Path(d["file_name"]).stem for d in dicts)
    for path, d in zip(overlays, sorted(dicts, key=lambda d: d["file_name"])):
        overlay = cv2.imread(str(path))
        assert overlay.shape == (d["height"], d["width"], 3)
        assert not np.array_equal(overlay, cv2.imread(d["file_name"]))  # something drawn
    data = json.loads((out / "panoptic_predictions.json").read_text())
    assert len(data["annotations"]) == 3
    assert {c["name"] for c in data["categories"]} >= {"disk", "grass"}
    known = {c["id"] for c in data["categories"]}
    for ann in data["annotations"]:
        ids = read_panoptic_png(str(out / "panoptic" / ann["file_name"]))
        listed = {s["id"] for s in ann["segments_info"]}
        assert set(np.unique(ids).tolist()) - {0} == listed
        for s in ann["segments_info"]:
            assert s["category_id"] in known and s["area"] == int((ids == s["id"]).sum())


def test_ten_frame_video(tmp_path, weights):
    frame = cv2.imread(DatasetCatalog.get("shapes_panoptic_val")[0]["file_name"])
    h, w = frame.shape[:2]
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (w, h))
    for i in range(10):
        writer.write(np.roll(frame, 4 * i, axis=1))
    writer.release()
    out = tmp_path / "annotated.mp4"
    _demo("--video-input", str(video), "--output", str(out), "MODEL.WEIGHTS", str(weights))
    capture = cv2.VideoCapture(str(out))
    frames = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        frames.append(image)
    capture.release()
    assert len(frames) == 10
    assert frames[0].shape == (h, w, 3)
    assert not (tmp_path / "annotated.mp4.partial.mp4").exists()


def test_bad_arguments_are_clear(tmp_path, weights):
    cmd = [
        sys.executable,
        str(REPO / "tools" / "demo.py"),
        "--config-file",
        str(CONFIG),
        "--input",
        str(tmp_path / "nothing-*.jpg"),
        "--output",
        str(tmp_path / "o"),
        "MODEL.WEIGHTS",
        str(weights),
    ]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0 and "matches no file" in proc.stderr
