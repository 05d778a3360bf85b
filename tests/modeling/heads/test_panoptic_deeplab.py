import pytest
import torch

from panoptic2.config import get_cfg
from panoptic2.layers import ShapeSpec
from panoptic2.layers.separable_conv import DepthwiseSeparableConv2d
from panoptic2.modeling.heads import INS_EMBED_HEADS_REGISTRY, SEM_SEG_HEADS_REGISTRY
from panoptic2.modeling.heads.panoptic_deeplab import (
    PanopticDeepLabInsEmbedHead,
    PanopticDeepLabSemSegHead,
)

SHAPES = {
    "res2": ShapeSpec(channels=16, stride=4),
    "res3": ShapeSpec(channels=24, stride=8),
    "res5": ShapeSpec(channels=32, stride=16),
}


def _cfg(depthwise=False):
    cfg = get_cfg()
    for head in (cfg.MODEL.SEM_SEG_HEAD, cfg.MODEL.INS_EMBED_HEAD):
        head.ASPP_CHANNELS, head.CONVS_DIM, head.HEAD_CHANNELS = 32, 32, 32
        head.ASPP_DILATIONS = [1, 2, 3]
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = 5
    cfg.MODEL.PANOPTIC_DEEPLAB.USE_DEPTHWISE_SEPARABLE_CONV = depthwise
    return cfg


def _features(n=2, h=64, w=48):
    return {k: torch.randn(n, s.channels, h // s.stride, w // s.stride) for k, s in SHAPES.items()}


def test_registered():
    assert SEM_SEG_HEADS_REGISTRY.get("PanopticDeepLabSemSegHead") is PanopticDeepLabSemSegHead
    assert (
        INS_EMBED_HEADS_REGISTRY.get("PanopticDeepLabInsEmbedHead") is PanopticDeepLabInsEmbedHead
    )


@pytest.mark.parametrize("depthwise", [False, True])
def test_semantic_head_shapes_stride_and_loss(depthwise):
    head = PanopticDeepLabSemSegHead(_cfg(depthwise), SHAPES)
    # Published low-level projections of the semantic branch: res2 -> 32, res3 -> 64.
    assert head.decoder.decoder["res2"]["project_conv"].out_channels == 32
    assert head.decoder.decoder["res3"]["project_conv"].out_channels == 64
    feats = _features()
    assert head.layers(feats).shape == (2, 5, 16, 12)  # decoder stride 4
    head.eval()
    logits, losses = head(feats)
    assert logits.shape == (2, 5, 64, 48) and losses == {}
    head.train()
    targets = torch.randint(0, 5, (2, 64, 48))
    _, losses = head(feats, targets, torch.ones(2, 64, 48))
    assert set(losses) == {"loss_sem_seg"} and losses["loss_sem_seg"] > 0


@pytest.mark.parametrize("depthwise", [False, True])
def test_instance_head_shapes_offsets_scaled_and_losses(depthwise):
    head = PanopticDeepLabInsEmbedHead(_cfg(depthwise), SHAPES)
    assert head.decoder.decoder["res2"]["project_conv"].out_channels == 16
    assert head.decoder.decoder["res3"]["project_conv"].out_channels == 32
    feats = _features()
    head.eval()
    center, offset, losses = head(feats)
    assert center.shape == (2, 1, 64, 48) and offset.shape == (2, 2, 64, 48) and losses == {}
    # Offsets predicted at stride 4 are multiplied by 4 after upsampling.
    _, small = head.layers(feats)
    up = torch.nn.functional.interpolate(
        small, scale_factor=4, mode="bilinear", align_corners=False
    )
    torch.testing.assert_close(offset, up * 4)
    head.train()
    w = torch.ones(2, 64, 48)
    _, _, losses = head(feats, torch.rand(2, 1, 64, 48), w, torch.randn(2, 2, 64, 48), w)
    assert set(losses) == {"loss_center", "loss_offset"}
    with pytest.raises(ValueError, match="targets"):
        head(feats)


def test_loss_weights_from_config():
    cfg = _cfg()
    cfg.MODEL.SEM_SEG_HEAD.LOSS_WEIGHT = 0.0
    cfg.MODEL.SEM_SEG_HEAD.LOSS_TYPE = "cross_entropy"
    head = PanopticDeepLabSemSegHead(cfg, SHAPES)
    assert head.loss.top_k_percent_pixels == 1.0
    _, losses = head.train()(_features(), torch.randint(0, 5, (2, 64, 48)))
    assert float(losses["loss_sem_seg"]) == 0.0
    ins = PanopticDeepLabInsEmbedHead(_cfg(), SHAPES)
    assert (ins.center_loss_weight, ins.offset_loss_weight) == (200.0, 0.01)


def _tower_kind(tower):
    if isinstance(tower, DepthwiseSeparableConv2d):
        assert tower.depthwise.kernel_size == (5, 5)
        return "separable"
    assert [conv.kernel_size for conv in tower] == [(3, 3), (3, 3)]
    return "two 3x3"


@pytest.mark.parametrize(
    ("depthwise", "center_option", "center", "offset"),
    [
        (False, None, "two 3x3", "two 3x3"),
        (True, None, "separable", "separable"),
        # Detectron2's depthwise-separable models: the center tower stays two 3x3 convs.
        (True, False, "two 3x3", "separable"),
        (False, True, "separable", "two 3x3"),
    ],
)
def test_center_tower_kind(depthwise, center_option, center, offset):
    cfg = _cfg(depthwise)
    cfg.MODEL.INS_EMBED_HEAD.CENTER_HEAD_USE_DEPTHWISE_SEPARABLE_CONV = center_option
    head = PanopticDeepLabInsEmbedHead(cfg, SHAPES)
    assert (_tower_kind(head.center_head), _tower_kind(head.offset_head)) == (center, offset)
    fuse = head.decoder.decoder["res2"]["fuse_conv"]
    assert isinstance(fuse, DepthwiseSeparableConv2d) == depthwise
    center_map, offset_map, _ = head.eval()(_features())
    assert center_map.shape == (2, 1, 64, 48) and offset_map.shape == (2, 2, 64, 48)


def test_center_tower_option_must_be_a_bool_or_none():
    cfg = _cfg()
    cfg.MODEL.INS_EMBED_HEAD.CENTER_HEAD_USE_DEPTHWISE_SEPARABLE_CONV = "no"
    with pytest.raises(TypeError, match="center_head_depthwise_separable_conv"):
        PanopticDeepLabInsEmbedHead(cfg, SHAPES)


def test_classifier_without_an_output_for_the_ignore_class():
    cfg = _cfg()
    cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE = 0
    cfg.MODEL.SEM_SEG_HEAD.PREDICT_IGNORE_CLASS = False
    head = PanopticDeepLabSemSegHead(cfg, SHAPES).eval()
    assert head.predictor.out_channels == 4  # classes 1..4; 0 is void
    feats = _features()
    with torch.no_grad():
        predicted = head.predictor(head.head(head.decoder(feats)))
        logits = head.layers(feats)
        full, _ = head(feats)
    assert logits.shape == (2, 5, 16, 12) and full.shape == (2, 5, 64, 48)
    assert torch.equal(logits[:, 1:], predicted)
    assert torch.all(logits[:, 0] == -1e4)
    # The void class never wins and its softmax probability is exactly 0.
    assert torch.all(full.softmax(dim=1)[:, 0] == 0)
    torch.testing.assert_close(full.softmax(dim=1)[:, 1:], full[:, 1:].softmax(dim=1))
    head.train()
    targets = torch.randint(0, 5, (2, 64, 48))
    _, losses = head(feats, targets, torch.ones(2, 64, 48))
    assert torch.isfinite(losses["loss_sem_seg"]) and losses["loss_sem_seg"] > 0


def test_classifier_without_ignore_class_needs_the_ignore_value_among_the_classes():
    cfg = _cfg()
    cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE = 255
    cfg.MODEL.SEM_SEG_HEAD.PREDICT_IGNORE_CLASS = False
    with pytest.raises(ValueError, match="predict_ignore_class"):
        PanopticDeepLabSemSegHead(cfg, SHAPES)
