"""Tests of panoptic2/engine/predictor.py: DefaultPredictor against the model and the loader."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from panoptic2.checkpoint import Checkpointer
from panoptic2.config import load_config
from panoptic2.data import DatasetCatalog, build_test_loader
from panoptic2.data.label_space import LabelSpace
from panoptic2.engine import DefaultPredictor
from panoptic2.modeling import build_model

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "shapes" / "panoptic_deeplab_R18_os32.yaml"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A randomly initialised shapes Panoptic-DeepLab saved with its label space."""
    out = tmp_path_factory.mktemp("predictor")
    cfg = load_config(str(CONFIG), ["MODEL.DEVICE", "cpu", "OUTPUT_DIR", str(out)])
    torch.manual_seed(0)
    model = build_model(cfg)
    Checkpointer(model, str(out)).save("model")
    return cfg, out / "model.pth", model.label_space


def _predictor(cfg, weights, *overrides):
    cfg = cfg.clone()
    cfg.defrost()
    cfg.merge_from_list(["MODEL.WEIGHTS", str(weights), *overrides])
    return DefaultPredictor(cfg)


def test_predictor_equals_the_model_on_the_loader_input(checkpoint):
    cfg, weights, _ = checkpoint
    predictor = _predictor(cfg, weights, "INPUT.MIN_SIZE_TEST", "96", "INPUT.MAX_SIZE_TEST", "200")
    loader_cfg = predictor.cfg.clone()
    loader = build_test_loader(loader_cfg, "shapes_panoptic_val")
    (inputs,) = [batch for _, batch in zip(range(1), loader)]
    with torch.no_grad():
        expected = predictor.model(inputs)[0]
    bgr = cv2.imread(inputs[0]["file_name"])
    got = predictor(bgr)
    assert inputs[0]["image"].shape[-2:] == (96, 120)  # the test resize ran in both paths
    assert torch.equal(got["sem_seg"], expected["sem_seg"])
    assert torch.equal(got["panoptic_seg"][0], expected["panoptic_seg"][0])
    assert got["panoptic_seg"][1] == expected["panoptic_seg"][1]
    # RGB input through input_format="RGB" gives the same result.
    rgb_predictor = DefaultPredictor(predictor.cfg, input_format="RGB")
    assert torch.equal(rgb_predictor(bgr[:, :, ::-1].copy())["sem_seg"], got["sem_seg"])
    # A list runs as one batch, each output at its own original size.
    small = cv2.resize(bgr, (80, 64))
    batch = predictor([bgr, small])
    assert batch[0]["sem_seg"].shape[-2:] == bgr.shape[:2]
    assert batch[1]["sem_seg"].shape[-2:] == (64, 80)


def test_predictor_from_a_checkpoint_alone(checkpoint):
    """No dataset in the config: the label space comes from the checkpoint."""
    cfg, weights, space = checkpoint
    predictor = _predictor(cfg, weights, "DATASETS.TRAIN", "[]", "DATASETS.TEST", "[]")
    assert predictor.model.label_space == space
    assert isinstance(space, LabelSpace) and space.classes[1:4] == ("disk", "square", "triangle")
    image = cv2.imread(DatasetCatalog.get("shapes_panoptic_val")[0]["file_name"])
    out = predictor(image)
    ids, segments = out["panoptic_seg"]
    assert ids.shape == image.shape[:2]
    assert all(0 <= s["category_id"] < space.num_classes for s in segments)


def test_clear_errors_for_wrong_images(checkpoint):
    cfg, weights, _ = checkpoint
    predictor = _predictor(cfg, weights)
    gray = np.zeros((20, 30), np.uint8)
    with pytest.raises(ValueError, match=r"grayscale \(20, 30\).*COLOR_GRAY2BGR"):
        predictor(gray)
    with pytest.raises(ValueError, match=r"4 channels.*COLOR_BGRA2BGR"):
        predictor(np.zeros((20, 30, 4), np.uint8))
    with pytest.raises(ValueError, match=r"must be uint8.*got float32"):
        predictor(np.zeros((20, 30, 3), np.float32))
    with pytest.raises(ValueError, match=r"image 1 of the batch must have shape \(H, W, 3\)"):
        predictor([np.zeros((20, 30, 3), np.uint8), np.zeros((20, 30, 3, 1), np.uint8)])
    with pytest.raises(TypeError, match=r"the image is None: cv2.imread returns None"):
        predictor(None)
    with pytest.raises(ValueError, match="input_format"):
        DefaultPredictor(predictor.cfg, input_format="YUV")
