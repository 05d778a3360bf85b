"""Tests of projects/DeepLab/deeplab/semantic_seg.py: the meta-arch."""

import pytest
import torch
from torch.nn import functional as F

from panoptic2.config import get_cfg
from panoptic2.modeling import META_ARCH_REGISTRY, build_model
from projects.DeepLab.deeplab import SemanticSegmentor


def _tiny_cfg():
    cfg = get_cfg()
    cfg.MODEL.META_ARCHITECTURE = "SemanticSegmentor"
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.BACKBONE.NAME = "build_resnet_backbone"
    cfg.MODEL.RESNETS.DEPTH = 18
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res2", "res5"]
    cfg.MODEL.RESNETS.RES5_DILATION = 2
    cfg.MODEL.RESNETS.RES5_MULTI_GRID = [1, 1]
    cfg.MODEL.SEM_SEG_HEAD.NAME = "DeepLabV3PlusHead"
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = 4
    cfg.MODEL.DEEPLAB.ASPP_CHANNELS = 32
    cfg.MODEL.DEEPLAB.DECODER_CHANNELS = 32
    cfg.MODEL.DEEPLAB.PROJECT_CHANNELS = [16]
    return cfg


def test_registered_and_built_from_config():
    assert META_ARCH_REGISTRY.get("SemanticSegmentor") is SemanticSegmentor
    model = build_model(_tiny_cfg())
    assert isinstance(model, SemanticSegmentor)
    assert model.size_divisibility == 16  # the largest backbone stride at OS16


def test_inference_outputs_at_original_size():
    torch.manual_seed(0)
    model = build_model(_tiny_cfg()).eval()
    inputs = [
        # A test-resized image (50x70) whose original size is 100x140, and one unresized.
        {
            "image": torch.randint(0, 256, (3, 50, 70), dtype=torch.uint8),
            "height": 100,
            "width": 140,
        },
        {"image": torch.randint(0, 256, (3, 37, 45), dtype=torch.uint8)},
    ]
    with torch.no_grad():
        outputs = model(inputs)
        # The reference for image 0: the padded (64x80) logits of the head, cropped to the
        # image and resized to the original size.
        x = (inputs[0]["image"].float() - model.pixel_mean) / model.pixel_std
        padded = F.pad(x, (0, 80 - 70, 0, 64 - 50))[None]
        logits, _ = model.sem_seg_head(model.backbone(padded))
        ref = F.interpolate(logits[:, :, :50, :70], size=(100, 140), mode="bilinear")[0]
    assert outputs[0]["sem_seg"].shape == (4, 100, 140)
    assert outputs[1]["sem_seg"].shape == (4, 37, 45)
    assert outputs[0]["sem_seg"].dtype == torch.float32
    torch.testing.assert_close(outputs[0]["sem_seg"], ref)


def test_training_loss_is_cross_entropy_of_upsampled_logits():
    torch.manual_seed(0)
    model = build_model(_tiny_cfg()).train()
    image = torch.randint(0, 256, (3, 32, 48), dtype=torch.uint8)
    target = torch.randint(0, 4, (32, 48))
    target[:4] = 255
    losses = model([{"image": image, "sem_seg": target}])
    assert set(losses) == {"loss_sem_seg"}
    # Reference: recompute the logits with the same (train-mode) modules, no dropout.
    model.sem_seg_head.decoder.decoder["res5"]["project_conv"].dropout = 0.0
    torch.manual_seed(0)
    losses = model([{"image": image, "sem_seg": target}])
    x = (image.float() - model.pixel_mean) / model.pixel_std
    logits = model.sem_seg_head.layers(model.backbone(x[None]))
    logits = F.interpolate(logits, size=(32, 48), mode="bilinear", align_corners=False)
    ref = F.cross_entropy(logits, target[None], ignore_index=255)
    torch.testing.assert_close(losses["loss_sem_seg"], ref)


def test_training_without_targets_names_the_image():
    model = build_model(_tiny_cfg()).train()
    with pytest.raises(KeyError, match="a.png"):
        model([{"image": torch.zeros(3, 32, 32, dtype=torch.uint8), "file_name": "a.png"}])
