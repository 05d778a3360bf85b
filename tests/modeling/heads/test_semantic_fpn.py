"""Panoptic FPN's semantic head (panoptic2/modeling/heads/semantic_fpn.py)."""

import pytest
import torch
import torch.nn.functional as F

from panoptic2.config import get_cfg
from panoptic2.layers import ShapeSpec
from panoptic2.modeling import SEM_SEG_HEADS_REGISTRY, build_sem_seg_head
from panoptic2.modeling.heads.semantic_fpn import SemSegFPNHead

SHAPES = {f"p{i}": ShapeSpec(channels=16, stride=2**i) for i in range(2, 7)}


def _head(**kwargs):
    args = dict(in_features=["p2", "p3", "p4", "p5"], num_classes=4, conv_dims=32, norm="GN")
    args.update(kwargs)
    return SemSegFPNHead(SHAPES, **args)


def _features(h=64, w=96):
    torch.manual_seed(0)
    return {f"p{i}": torch.randn(2, 16, h >> i, w >> i) for i in range(2, 7)}


def test_stages_per_level_and_output_size():
    head = _head()
    # p2: 1 conv; p3: conv+up; p4: 2 x (conv+up); p5: 3 x (conv+up).
    convs = [sum(isinstance(m, torch.nn.Conv2d) for m in s) for s in head.scale_heads]
    ups = [sum(isinstance(m, torch.nn.Upsample) for m in s) for s in head.scale_heads]
    assert convs == [1, 1, 2, 3] and ups == [0, 1, 2, 3]
    assert isinstance(head.scale_heads[0][0].norm, torch.nn.GroupNorm)
    logits, losses = head(_features())
    assert logits.shape == (2, 4, 64, 96) and losses == {}


def test_loss_is_weighted_cross_entropy_over_valid_pixels():
    head = _head(loss_weight=0.5, ignore_value=255)
    feats = _features()
    targets = torch.randint(0, 4, (2, 64, 96))
    targets[:, :10] = 255
    logits, losses = head(feats, targets)
    valid = targets != 255
    ref = F.cross_entropy(logits.permute(0, 2, 3, 1)[valid], targets[valid]) * 0.5
    torch.testing.assert_close(losses["loss_sem_seg"], ref)


def test_ignored_pixels_do_not_contribute():
    head = _head()
    logits = torch.randn(1, 4, 8, 8, requires_grad=True)
    targets = torch.full((1, 8, 8), 255)
    loss = head.losses(logits, targets)
    assert float(loss.detach()) == 0 and loss.requires_grad  # all ignored: 0, not NaN
    targets[0, :4] = 1
    head.losses(logits, targets).backward()
    assert logits.grad[..., 4:, :].abs().sum() == 0
    assert logits.grad[..., :4, :].abs().sum() > 0


def test_targets_of_other_size_are_padded_with_ignore():
    head = _head()
    logits = torch.randn(1, 4, 8, 8)
    small = torch.ones(1, 6, 5, dtype=torch.int64)
    ref = F.cross_entropy(logits[:, :, :6, :5], small)
    torch.testing.assert_close(head.losses(logits, small), ref * head.loss_weight)


def test_bad_labels_are_an_error():
    with pytest.raises(ValueError, match="outside"):
        _head().losses(torch.randn(1, 4, 4, 4), torch.full((1, 4, 4), 7))


def test_registered_and_built_from_config():
    assert SEM_SEG_HEADS_REGISTRY.get("SemSegFPNHead") is SemSegFPNHead
    cfg = get_cfg()
    cfg.MODEL.SEM_SEG_HEAD.NAME = "SemSegFPNHead"
    cfg.MODEL.SEM_SEG_HEAD.IN_FEATURES = ["p2", "p3", "p4", "p5"]
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = 54
    cfg.MODEL.SEM_SEG_HEAD.CONVS_DIM = 128
    cfg.MODEL.SEM_SEG_HEAD.NORM = "GN"
    cfg.MODEL.SEM_SEG_HEAD.LOSS_WEIGHT = 0.5
    head = build_sem_seg_head(cfg, SHAPES)
    assert head.predictor.out_channels == 54 and head.loss_weight == 0.5


def test_unknown_feature_is_an_error():
    with pytest.raises(ValueError, match="p9"):
        _head(in_features=["p2", "p9"])
