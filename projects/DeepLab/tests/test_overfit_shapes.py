"""A tiny DeepLabV3+ overfits one shapes VOC batch on CPU, read through the real VOC path:
generated VOC folders -> ``load_voc_sem_seg`` -> ``SemanticSegmentationMapper`` -> model.
"""

import pytest
import torch

from panoptic2.config import get_cfg
from panoptic2.data.datasets import get_voc_metadata, load_voc_sem_seg
from panoptic2.data.datasets.shapes import generate_shapes
from panoptic2.data.mappers import SemanticSegmentationMapper
from panoptic2.modeling import build_model
from projects.DeepLab import deeplab  # noqa: F401  (registers the heads, meta-arch, keys)

STEPS = 30


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes_voc")
    generate_shapes(str(root), "voc", num_train=2, num_val=0, image_size=(64, 80))
    meta = get_voc_metadata()
    dicts = load_voc_sem_seg(
        str(root / "VOCdevkit" / "VOC2012"), "train", dataset_name="tiny_shapes_voc", meta=meta
    )
    mapper = SemanticSegmentationMapper(is_train=True, augmentations=[], image_format="RGB")
    return [mapper(d) for d in dicts]


def _tiny_cfg():
    cfg = get_cfg()
    cfg.MODEL.META_ARCHITECTURE = "SemanticSegmentor"
    cfg.MODEL.DEVICE = "cpu"
    # MobileNetV3-Small at half width, output stride 16: seconds on a shared CPU.
    cfg.MODEL.BACKBONE.NAME = "build_mobilenetv3_backbone"
    cfg.MODEL.MOBILENET.VARIANT = "small"
    cfg.MODEL.MOBILENET.WIDTH_MULTIPLIER = 0.5
    cfg.MODEL.MOBILENET.OUTPUT_STRIDE = 16
    cfg.MODEL.MOBILENET.OUT_FEATURES = ["res2", "res5"]
    cfg.MODEL.SEM_SEG_HEAD.NAME = "DeepLabV3PlusHead"
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = 21
    cfg.MODEL.DEEPLAB.ASPP_CHANNELS = 32
    cfg.MODEL.DEEPLAB.ASPP_DILATIONS = [1, 2, 3]
    cfg.MODEL.DEEPLAB.ASPP_DROPOUT = 0.0
    cfg.MODEL.DEEPLAB.DECODER_CHANNELS = 32
    cfg.MODEL.DEEPLAB.PROJECT_CHANNELS = [16]
    return cfg


def test_tiny_model_overfits_one_batch(batch):
    labels = torch.stack([b["sem_seg"] for b in batch])
    # The generated VOC labels hold background, VOC thing classes and 255.
    assert set(labels.unique().tolist()) >= {0, 255} and len(labels.unique()) >= 3

    torch.manual_seed(0)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    model = build_model(_tiny_cfg()).train()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(STEPS):
        loss = model(batch)["loss_sem_seg"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
