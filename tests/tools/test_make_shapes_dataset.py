"""Tests of tools/make_shapes_dataset.py (run as a script, as users do)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
from PIL import Image

from panoptic2.data.datasets.shapes import generate_shapes

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "tools", "make_shapes_dataset.py")


def test_cli_writes_voc_layout_like_the_api(tmp_path):
    out = tmp_path / "cli"
    cmd = [sys.executable, SCRIPT, "--output", str(out), "--layout", "voc"]
    cmd += ["--num-train", "2", "--num-val", "1", "--seed", "3", "--image-size", "64", "80"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    root = out / "VOCdevkit" / "VOC2012"
    sets = root / "ImageSets" / "Segmentation"
    names = (sets / "train.txt").read_text().split() + (sets / "val.txt").read_text().split()
    assert len(names) == 3
    for name in names:
        label = Image.open(root / "SegmentationClass" / f"{name}.png")
        assert label.mode == "P" and label.size == (80, 64)
        assert (root / "JPEGImages" / f"{name}.jpg").is_file()
    # Same bytes as the Python API with the same arguments.
    ref = tmp_path / "api"
    generate_shapes(str(ref), "voc", num_train=2, num_val=1, seed=3, image_size=(64, 80))
    ref_label = ref / "VOCdevkit" / "VOC2012" / "SegmentationClass" / f"{names[0]}.png"
    assert ref_label.read_bytes() == (root / "SegmentationClass" / f"{names[0]}.png").read_bytes()
    assert np.asarray(Image.open(ref_label)).max() == 255


def test_cli_rejects_unknown_layout(tmp_path):
    cmd = [sys.executable, SCRIPT, "--output", str(tmp_path), "--layout", "kitti"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "invalid choice" in result.stderr
