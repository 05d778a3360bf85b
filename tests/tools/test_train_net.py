"""Tests of tools/train_net.py beyond training (which tests/engine covers): evaluation only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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
