"""Tests of tools/train_net.py beyond training (which tests/engine covers): evaluation only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from panoptic2.checkpoint import Checkpointer
from panoptic2.config import load_config
from panoptic2.data import MetadataCatalog
from panoptic2.data.label_space import LabelSpace
from panoptic2.modeling import build_model

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "shapes" / "panoptic_deeplab_R18_os32.yaml"


def test_eval_only_with_no_training_dataset(tmp_path):
    """An evaluation config with ``DATASETS.TRAIN []`` builds its mappers and model from the
    test dataset's label space, and the checkpoint's label space matches it."""
    overrides = ["DATASETS.TRAIN", "[]", "OUTPUT_DIR", str(tmp_path), "MODEL.DEVICE", "cpu"]
    cfg = load_config(str(CONFIG), overrides)
    torch.manual_seed(0)
    model = build_model(cfg)
    expected = LabelSpace.from_metadata(MetadataCatalog.get("shapes_panoptic_val"))
    assert model.label_space == expected
    Checkpointer(model, str(tmp_path)).save("random")
    stored = torch.load(tmp_path / "random.pth", weights_only=True)["label_space"]
    assert LabelSpace.from_dict(stored) == expected

    cmd = [
        sys.executable,
        str(REPO / "tools" / "train_net.py"),
        "--config-file",
        str(CONFIG),
        "--eval-only",
        *overrides,
        "MODEL.WEIGHTS",
        str(tmp_path / "random.pth"),
        "DATALOADER.NUM_WORKERS",
        "0",
    ]
    proc = subprocess.run(
        cmd, cwd=REPO, capture_output=True, text=True, timeout=600, env=dict(os.environ)
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads(
        (tmp_path / "inference" / "shapes_panoptic_val" / "results.json").read_text()
    )
    assert 0 <= results["panoptic_seg"]["PQ"] <= 100
    assert 0 <= results["sem_seg"]["mIoU"] <= 100


def test_eval_only_dumps_subsets_and_images(tmp_path):
    """TEST.MAX_IMAGES evaluates exactly N images and says so; TEST.WRITE_PREDICTIONS dumps
    evaluate to the same PQ through tools/evaluate_panoptic.py; TEST.VIS_IMAGES logs K
    overlays to TensorBoard."""
    cfg = load_config(str(CONFIG), ["OUTPUT_DIR", str(tmp_path), "MODEL.DEVICE", "cpu"])
    torch.manual_seed(0)
    model = build_model(cfg)
    Checkpointer(model, str(tmp_path)).save("random")
    cmd = [
        sys.executable,
        str(REPO / "tools" / "train_net.py"),
        "--config-file",
        str(CONFIG),
        "--eval-only",
        "OUTPUT_DIR",
        str(tmp_path),
        "MODEL.WEIGHTS",
        str(tmp_path / "random.pth"),
        "MODEL.PANOPTIC_DEEPLAB.CENTER_THRESHOLD",
        "0.01",
        "TEST.MAX_IMAGES",
        "5",
        "TEST.WRITE_PREDICTIONS",
        "True",
        "TEST.VIS_IMAGES",
        "2",
        "DATALOADER.NUM_WORKERS",
        "0",
    ]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "EVALUATED ONLY 5 IMAGES of shapes_panoptic_val" in proc.stdout + proc.stderr
    folder = tmp_path / "inference" / "shapes_panoptic_val"
    results = json.loads((folder / "results.json").read_text())
    assert results["subset"] == {"max_images": 5, "images": 5}

    predictions = json.loads((folder / "panoptic_predictions.json").read_text())
    assert len(predictions["annotations"]) == 5
    assert len(list((folder / "sem_seg_predictions").glob("*.png"))) == 5
    # The same images of the ground truth, evaluated offline from the dumped files.
    meta = MetadataCatalog.get("shapes_panoptic_val")
    gt = json.loads(Path(meta.panoptic_json).read_text())
    kept = {a["image_id"] for a in predictions["annotations"]}
    gt["annotations"] = [a for a in gt["annotations"] if a["image_id"] in kept]
    gt["images"] = [i for i in gt["images"] if i["id"] in kept]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    offline = tmp_path / "offline.json"
    subprocess.run(
        [
            sys.executable,
            str(REPO / "tools" / "evaluate_panoptic.py"),
            "--gt-json",
            str(tmp_path / "gt.json"),
            "--gt-folder",
            meta.panoptic_root,
            "--pred-json",
            str(folder / "panoptic_predictions.json"),
            "--pred-folder",
            str(folder / "panoptic_predictions"),
            "--output",
            str(offline),
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=300,
    )
    offline_pq = 100 * json.loads(offline.read_text())["All"]["pq"]
    assert offline_pq == pytest.approx(results["panoptic_seg"]["PQ"], abs=1e-9)

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path), size_guidance={"images": 0})
    events.Reload()
    assert sorted(events.Tags()["images"]) == ["shapes_panoptic_val/0", "shapes_panoptic_val/1"]
