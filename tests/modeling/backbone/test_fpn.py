"""ResNet-FPN backbone: the Backbone contract, the top-down wiring against a hand-written
reference, P6, frozen stages / frozen BN, norms, parameter count and config errors."""

import math

import pytest
import torch
from torch.nn import functional as F

from panoptic2.config import get_cfg
from panoptic2.layers import FrozenBatchNorm2d
from panoptic2.modeling import BACKBONE_REGISTRY, Backbone, build_backbone
from panoptic2.modeling.backbone.fpn import FPN, build_resnet_fpn_backbone
from panoptic2.modeling.backbone.resnet import ResNet


def _small_cfg():
    cfg = get_cfg()
    cfg.MODEL.BACKBONE.NAME = "build_resnet_fpn_backbone"
    cfg.MODEL.RESNETS.DEPTH = 18
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    cfg.MODEL.FPN.OUT_CHANNELS = 16
    return cfg


@pytest.mark.parametrize("height, width", [(64, 64), (65, 97)])
def test_contract_names_strides_channels(height, width):
    assert "build_resnet_fpn_backbone" in {name for name, _ in BACKBONE_REGISTRY}
    torch.manual_seed(0)
    backbone = build_backbone(_small_cfg()).eval()
    assert isinstance(backbone, Backbone) and isinstance(backbone, FPN)
    shapes = backbone.output_shape()
    assert list(shapes) == ["p2", "p3", "p4", "p5", "p6"]
    assert [s.stride for s in shapes.values()] == [4, 8, 16, 32, 64]
    assert {s.channels for s in shapes.values()} == {16}
    assert backbone.size_divisibility == 32
    with torch.no_grad():
        features = backbone(torch.randn(2, 3, height, width))
    assert list(features) == list(shapes)
    for name, spec in shapes.items():
        expected = (2, 16, math.ceil(height / spec.stride), math.ceil(width / spec.stride))
        assert tuple(features[name].shape) == expected, name


def test_top_down_path_matches_a_hand_written_reference():
    torch.manual_seed(0)
    backbone = build_resnet_fpn_backbone(_small_cfg()).eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        out = backbone(x)
        c = backbone.bottom_up(x)
        fpn = backbone.fpn
        names = ["res2", "res3", "res4", "res5"]
        laterals = [fpn.inner_blocks[i](c[n]) for i, n in enumerate(names)]
        # Top-down: each lateral plus the nearest-upsampled coarser merged map.
        merged = [None] * 4
        merged[3] = laterals[3]
        for i in (2, 1, 0):
            up = F.interpolate(merged[i + 1], size=laterals[i].shape[-2:], mode="nearest")
            merged[i] = laterals[i] + up
        expected = {f"p{i + 2}": fpn.layer_blocks[i](merged[i]) for i in range(4)}
        # P6: stride-2 subsampling (1x1 max pool) of P5.
        expected["p6"] = expected["p5"][..., ::2, ::2]
    for name, value in expected.items():
        torch.testing.assert_close(out[name], value, msg=name)


def test_frozen_stages_and_frozen_bn_standard_recipe():
    cfg = _small_cfg()
    cfg.MODEL.BACKBONE.FREEZE_AT = 2
    cfg.MODEL.RESNETS.NORM = "FrozenBN"
    backbone = build_resnet_fpn_backbone(cfg)
    bottom_up = backbone.bottom_up
    assert isinstance(bottom_up, ResNet)
    assert not any(p.requires_grad for p in bottom_up.stem.parameters())
    assert not any(p.requires_grad for p in bottom_up.res2.parameters())
    assert all(p.requires_grad for p in bottom_up.res3.parameters())
    assert all(p.requires_grad for p in backbone.fpn.parameters())
    norms = [m for m in bottom_up.modules() if "Norm" in type(m).__name__]
    assert norms and all(isinstance(m, FrozenBatchNorm2d) for m in norms)
    # Frozen BN does not update statistics in training mode.
    backbone.train()
    before = bottom_up.res3[0].conv1.norm.running_mean.clone()
    backbone(torch.randn(2, 3, 32, 32) * 5 + 3)
    assert torch.equal(bottom_up.res3[0].conv1.norm.running_mean, before)


def test_stride_in_1x1_bottleneck_reaches_the_fpn():
    cfg = _small_cfg()
    cfg.MODEL.RESNETS.DEPTH = 50
    cfg.MODEL.RESNETS.STRIDE_IN_1X1 = True
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 32
    cfg.MODEL.RESNETS.WIDTH_PER_GROUP = 8
    cfg.MODEL.RESNETS.STEM_OUT_CHANNELS = 16
    backbone = build_resnet_fpn_backbone(cfg).eval()
    assert backbone.bottom_up.res3[0].conv1.stride == (2, 2)
    assert backbone.bottom_up.res3[0].conv2.stride == (1, 1)
    # Laterals take the bottleneck widths 32, 64, 128, 256.
    assert [b[0].in_channels for b in backbone.fpn.inner_blocks] == [32, 64, 128, 256]
    with torch.no_grad():
        features = backbone(torch.randn(1, 3, 64, 64))
    assert tuple(features["p6"].shape) == (1, 16, 1, 1)


def test_norm_gn_removes_conv_biases():
    cfg = _small_cfg()
    cfg.MODEL.FPN.OUT_CHANNELS = 32
    cfg.MODEL.FPN.NORM = "GN"
    backbone = build_resnet_fpn_backbone(cfg)
    for block in (*backbone.fpn.inner_blocks, *backbone.fpn.layer_blocks):
        assert block[0].bias is None
        assert isinstance(block[1], torch.nn.GroupNorm)
    plain = build_resnet_fpn_backbone(_small_cfg())
    assert all(block[0].bias is not None for block in plain.fpn.layer_blocks)


def test_resnet50_fpn_parameter_count():
    cfg = get_cfg()
    cfg.MODEL.RESNETS.DEPTH = 50
    backbone = build_resnet_fpn_backbone(cfg)
    fpn_params = sum(p.numel() for p in backbone.fpn.parameters())
    # Laterals 1x1 (256 + 512 + 1024 + 2048) -> 256 with bias, outputs four 3x3 256 -> 256:
    # the 3,344,384 parameters of Detectron2's R50-FPN neck.
    assert fpn_params == (256 + 512 + 1024 + 2048) * 256 + 4 * 256 + 4 * (256 * 256 * 9 + 256)
    assert fpn_params == 3_344_384


def test_bad_settings_raise():
    cfg = _small_cfg()
    cfg.MODEL.FPN.FUSE_TYPE = "avg"
    with pytest.raises(ValueError, match="fuse_type"):
        build_resnet_fpn_backbone(cfg)
    bottom_up = ResNet(depth=18, res2_out_channels=64, out_features=["res2", "res4"])
    with pytest.raises(ValueError, match="must be outputs"):
        FPN(bottom_up=bottom_up, in_features=["res2", "res3"])
    with pytest.raises(ValueError, match="double in stride"):
        FPN(bottom_up=bottom_up, in_features=["res2", "res4"])
